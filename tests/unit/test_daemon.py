"""`anomaly-distill daemon`: what it agrees to run, and what a command does when it cannot use it."""

import io

import pytest

from flows import daemon
from flows.cli import main


@pytest.fixture
def running(tmp_path, monkeypatch):
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:1/api")
    monkeypatch.delenv(daemon.DAEMON_ENV, raising=False)
    server = daemon.Daemon(str(tmp_path / "d.sock"), main)
    yield server
    server.server_close()


def request(**changes) -> dict:
    import os

    return (
        {"argv": ["train", "--data", "x.csv"], "cwd": "/", "root": str(daemon.ROOT)}
        | {"settings": daemon.run_settings(os.environ)}
        | changes
    )


def test_the_daemon_runs_train_of_its_own_checkout_with_its_own_settings_only(running, monkeypatch):
    assert running.decline_reason(request()) is None
    assert "runs `train` only" in running.decline_reason(request(argv=["serve-api"]))
    assert "runs the checkout at" in running.decline_reason(request(root="/elsewhere"))
    other = request()["settings"] | {"MLFLOW_TRACKING_URI": "sqlite:///other.db"}
    assert running.decline_reason(request(settings=other)) == "settings differ: ['MLFLOW_TRACKING_URI']"
    monkeypatch.setattr("tasks.registration.code_digest", lambda: "changed")
    assert "the code changed since it started" in running.decline_reason(request())


def test_settings_that_decide_a_run_are_compared_and_the_rest_not():
    environ = {"PREFECT_HOME": "/p", "MLFLOW_TRACKING_URI": "x", "HOME": "/root", daemon.DAEMON_ENV: "/s"}
    assert daemon.run_settings(environ) == {"PREFECT_HOME": "/p", "MLFLOW_TRACKING_URI": "x"}


def test_without_a_daemon_at_the_path_the_command_runs_here(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(daemon.DAEMON_ENV, str(tmp_path / "nobody.sock"))
    assert daemon.forward_train(["train"]) is None
    assert f"note: no daemon at {tmp_path / 'nobody.sock'}" in capsys.readouterr().err


def test_a_daemon_needs_running_servers(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    assert main(["daemon", "--socket", str(tmp_path / "d.sock")]) == 2
    assert "set PREFECT_API_URL" in capsys.readouterr().err


def frames(*pairs: tuple[bytes, bytes]) -> io.BytesIO:
    return io.BytesIO(b"".join(kind + len(payload).to_bytes(4, "big") + payload for kind, payload in pairs))


def test_the_command_prints_the_runs_output_and_exits_with_its_status(capsys):
    replies = frames((daemon.OUT, b"Registered m version 1\n"), (daemon.ERR, b"log line\n"), (daemon.EXIT, b"0"))
    assert daemon._relay(replies, "/s") == 0
    printed = capsys.readouterr()
    assert printed.out == "Registered m version 1\n" and printed.err == "log line\n"


def test_a_daemon_that_stops_mid_run_is_an_error_that_says_to_rerun(capsys):
    assert daemon._relay(frames((daemon.ERR, b"log line\n")), "/s") == 3
    assert "the daemon at /s stopped during the run. Re-run the same command" in capsys.readouterr().err
