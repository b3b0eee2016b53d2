"""What keeps `anomaly-distill` quick to start and to exit (issue 15's overhead work)."""

import os
import subprocess
import sys
import time

import pytest


def python(code: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120)


def test_the_cli_module_imports_no_heavy_library():
    """The embedded Prefect API starts as soon as the command begins only if the CLI module itself is light."""
    heavy = ["torch", "pandas", "sklearn", "mlflow", "prefect", "great_expectations"]
    done = python(f"import sys, flows.cli; print([m for m in {heavy!r} if m in sys.modules])")
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stderr


@pytest.mark.parametrize("args, code", [(["--help"], 0), (["--no-such-option"], 2), (["score"], 2)])
def test_the_console_entry_keeps_the_exit_status(args, code):
    done = python("import sys; from flows.cli import console; sys.argv[1:] = sys.argv[1:]; console()", *args)
    assert done.returncode == code, done.stderr


def test_an_uncaught_error_still_exits_1_with_its_traceback():
    done = python("import flows.cli; flows.cli.main = lambda: 1 / 0; flows.cli.console()")
    assert done.returncode == 1 and "ZeroDivisionError" in done.stderr


def test_no_early_api_against_a_server_in_the_environment(monkeypatch):
    from flows.embedded_api import start_embedded_api

    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:9/api")
    assert start_embedded_api() is None


def test_an_early_api_is_stopped_unused_where_a_profile_names_a_server(monkeypatch):
    from prefect.settings import PREFECT_API_URL, get_current_settings, temporary_settings

    from flows.embedded_api import start_embedded_api

    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    api = start_embedded_api()
    with temporary_settings({PREFECT_API_URL: "http://127.0.0.1:9/api"}):  # as a profile would set it
        with api.connect():  # the profile's server keeps its heartbeats
            assert get_current_settings().flows.heartbeat_frequency is not None
    assert api.process.wait(timeout=30) is not None and "PREFECT_API_URL" not in os.environ


def test_the_early_api_serves_the_command_and_stops_when_it_exits(tmp_path):
    """A command that adopts the early API talks to it as to a server, its flows without heartbeats (nothing
    watches a server that stops with the command); at exit the server is gone."""
    code = (
        "import os, sys; from flows.embedded_api import flow_settings, start_embedded_api; "
        "api = start_embedded_api(); from prefect import flow; "
        "from prefect.settings import get_current_settings as settings; "
        "probe = flow(lambda: (os.environ['PREFECT_API_URL'], settings().flows.heartbeat_frequency), name='probe')\n"
        "with flow_settings(api): url, heartbeat = probe()\n"
        "assert heartbeat is None, heartbeat; assert settings().flows.heartbeat_frequency is not None; "
        "print(url, api.process.pid)"
    )
    env = {**os.environ, "PREFECT_HOME": str(tmp_path)}
    env.pop("PREFECT_API_URL", None)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    url, pid = done.stdout.split()[-2:]
    assert url.startswith("http://127.0.0.1:") and url.endswith("/api")
    assert "View at" not in done.stderr  # it serves no UI
    deadline = time.monotonic() + 10
    while _alive(int(pid)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(int(pid))


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ", 1)[1][0] != "Z"
    except FileNotFoundError:
        return False


def test_the_tracking_warm_up_creates_a_sqlite_store_and_leaves_errors_to_the_run(tmp_path, monkeypatch):
    import sqlite3

    from tasks import tracking

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    tracking.warm_up()
    with sqlite3.connect(tmp_path / "mlflow.db") as db:
        tables = {name for (name,) in db.execute("select name from sqlite_master where type = 'table'")}
    assert {"experiments", "runs", "registered_models", "model_versions"} <= tables

    (tmp_path / "a-file").write_text("")  # a store that cannot be created: the run will say so, not the warm-up
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'a-file' / 'mlflow.db'}")
    tracking.warm_up()


def test_the_tracking_warm_up_leaves_a_server_alone(monkeypatch):
    from tasks import tracking

    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")  # no request: the server may be down
    monkeypatch.setattr(tracking, "client", lambda: pytest.fail("the warm-up talked to a tracking server"))
    tracking.warm_up()
