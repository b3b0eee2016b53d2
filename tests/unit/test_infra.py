"""The production servers never start open: without their secrets `infra.servers start` refuses (exit 2)."""

from infra import servers

SECRETS = ("MLFLOW_AUTH_ADMIN_PASSWORD", "MLFLOW_FLASK_SERVER_SECRET_KEY", "PREFECT_SERVER_API_AUTH_STRING")


def test_start_without_secrets_refuses_and_names_what_is_missing(monkeypatch, capsys, tmp_path):
    for name in SECRETS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ANOMALY_DISTILL_STATE", str(tmp_path))
    assert servers.main(["start"]) == 2
    error = capsys.readouterr().err
    assert all(name in error for name in SECRETS)
    assert not list(tmp_path.iterdir())  # nothing started, no pid file


def test_prefect_auth_string_must_name_a_user(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("MLFLOW_AUTH_ADMIN_PASSWORD", "a-long-password")
    monkeypatch.setenv("MLFLOW_FLASK_SERVER_SECRET_KEY", "key")
    monkeypatch.setenv("PREFECT_SERVER_API_AUTH_STRING", "no-user-part")
    monkeypatch.setenv("ANOMALY_DISTILL_STATE", str(tmp_path))
    assert servers.main(["start"]) == 2
    assert "user:password" in capsys.readouterr().err


def test_client_environment_carries_both_logins():
    settings = servers.Settings.with_new_secrets()
    env = settings.client_env()
    assert env["PREFECT_API_AUTH_STRING"] == settings.prefect_auth and ":" in settings.prefect_auth
    assert env["MLFLOW_TRACKING_PASSWORD"] == settings.mlflow_admin_password != ""
    assert settings.with_new_secrets().mlflow_admin_password != settings.mlflow_admin_password


def test_mlflow_job_runner_is_off_unless_the_environment_turns_it_on():
    assert servers.mlflow_job_execution({}) == "false"
    assert servers.mlflow_job_execution({"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "true"}) == "true"
