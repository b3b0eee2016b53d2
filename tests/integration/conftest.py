"""Real Prefect (test harness: a temporary local API) and a real MLflow sqlite store in a temp dir; or real
Prefect + MLflow servers on PostgreSQL (the `servers` fixture, one pair per test module)."""

import os
import shutil
import socket
import sqlite3
import subprocess
import threading
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import pytest
from prefect.settings import PREFECT_LOCAL_STORAGE_PATH, temporary_settings
from prefect.testing.utilities import prefect_test_harness

from tests.conftest import DEMO, require


@pytest.fixture(scope="session")
def prefect_api():
    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session", autouse=True)
def no_pause_between_retries():
    """In this process the I/O tasks retry exactly as in production, with no 3 s pause between attempts: a retry
    is under test, its wait is not (subprocesses, e.g. the killed-server test, keep the real pause)."""
    import importlib
    import pkgutil

    from prefect import Task

    import tasks

    with pytest.MonkeyPatch.context() as patch:
        for module in pkgutil.iter_modules(tasks.__path__):
            for value in vars(importlib.import_module(f"tasks.{module.name}")).values():
                if isinstance(value, Task) and value.retries:
                    patch.setattr(value, "retry_delay_seconds", 0)
        yield


def _prefect_console_to_current_stderr() -> None:
    """Prefect's console handler keeps the stderr of the moment logging was set up; when that was a test's
    capture (closed after it), later tests' log lines would fail. Point it at this test's stderr."""
    import logging
    import sys

    for name in ("", "prefect", "prefect.flow_runs", "prefect.task_runs"):
        for handler in logging.getLogger(name).handlers:
            if hasattr(handler, "console"):
                handler.console.file = sys.stderr


@pytest.fixture(scope="session")
def empty_mlflow_store(tmp_path_factory):
    """A new, empty MLflow sqlite store, made once per session: a store's first open runs MLflow's schema
    migrations (1–2 s of CPU each time), so each workspace starts from a relocated copy of this one."""
    from mlflow.tracking import MlflowClient

    root = tmp_path_factory.mktemp("empty-mlflow-store")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        MlflowClient(f"sqlite:///{root / 'mlflow.db'}").search_experiments()
    return root


@pytest.fixture
def workspace(tmp_path, monkeypatch, prefect_api, empty_mlflow_store):
    _prefect_console_to_current_stderr()
    relocate_workspace(empty_mlflow_store, tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.chdir(tmp_path)
    with temporary_settings({PREFECT_LOCAL_STORAGE_PATH: tmp_path / "prefect-results"}):
        yield tmp_path


@pytest.fixture
def thyroid_csv(tmp_path):
    """The bundled demo set (ADBench thyroid, CSV with a label column), copied into the test's folder."""
    out = tmp_path / "thyroid.csv"
    shutil.copy(DEMO, out)
    return out


LIVE_MODEL = "thyroid-live"


def _train_champion(data_path) -> None:
    from flows.training import TrainingParameters, training_pipeline

    params = TrainingParameters(
        data_path=str(data_path), label_column="label", model_name=LIVE_MODEL, engine={"distill": {"epochs": 20}}
    )
    training_pipeline(params)


def workspace_template(tmp_path_factory, name: str, train) -> Path:
    """A workspace in which `train(data_path)` ran once through the real flow (MLflow sqlite store, artifacts,
    Prefect results); tests get relocated copies of it instead of training again."""
    root = tmp_path_factory.mktemp(name)
    shutil.copy(DEMO, root / "thyroid.csv")
    _prefect_console_to_current_stderr()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
        patch.chdir(root)
        with temporary_settings({PREFECT_LOCAL_STORAGE_PATH: root / "prefect-results"}):
            train(root / "thyroid.csv")
    return root


@pytest.fixture(scope="session")
def champion_template(tmp_path_factory, prefect_api):
    """One champion trained through the real flow, once per session; tests get a relocated copy of its stores."""
    return workspace_template(tmp_path_factory, "champion-template", _train_champion)


def relocate_workspace(source: Path, target: Path) -> None:
    """Copy a workspace (MLflow sqlite store, artifacts, Prefect results) and rewrite the absolute paths that
    MLflow recorded (artifact locations, model sources, the data path) from `source` to `target`."""
    shutil.copytree(source, target, dirs_exist_ok=True)
    old, new = str(source), str(target)
    with sqlite3.connect(target / "mlflow.db") as db:
        tables = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for table in tables:
            for column in db.execute(f'PRAGMA table_info("{table}")').fetchall():
                name, kind = column[1], (column[2] or "").upper()
                if any(text in kind for text in ("CHAR", "TEXT", "CLOB")):
                    db.execute(f'UPDATE "{table}" SET "{name}" = replace("{name}", ?, ?)', (old, new))
    for path in target.rglob("*"):
        if path.is_file() and (path.suffix in {".json", ".md", ".yaml", ".txt"} or path.name == "MLmodel"):
            text = path.read_text()
            if old in text:
                path.write_text(text.replace(old, new))


@pytest.fixture
def champion(workspace, thyroid_csv, champion_template):
    """A registered champion trained on thyroid (the session's one, relocated into this test's workspace);
    returns the held-out rows (with labels) as "live" traffic."""
    from anomaly_distill.data import load_table
    from anomaly_distill.tabular import pipeline
    from flows.training import TrainingParameters

    relocate_workspace(champion_template, workspace)
    params = TrainingParameters(data_path=str(thyroid_csv), label_column="label", model_name=LIVE_MODEL)
    _, test = pipeline.split(load_table(thyroid_csv, "label"), params.engine)
    return test


@contextmanager
def served_in_thread(app):
    """The app on uvicorn in a thread on a free localhost port, with an httpx client of it."""
    import httpx
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 60
    while not server.started and time.time() < deadline:
        time.sleep(0.1)
    assert server.started, "service did not start"
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            yield client
    finally:
        server.should_exit = True
        thread.join(10)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


MLFLOW_LOGIN = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")


def prefect_client_of(servers):
    """Settings that make this process's Prefect client talk to the servers' API, logged in."""
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

    return temporary_settings({PREFECT_API_URL: servers.prefect_api, PREFECT_API_AUTH_STRING: servers.prefect_auth})


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    from infra import servers as infra

    require(
        shutil.which("psql") is not None and subprocess.run(["pg_isready", "-h", "127.0.0.1", "-q"]).returncode == 0,
        "PostgreSQL is not running on 127.0.0.1:5432 (.ci/run starts it)",
    )
    suffix = uuid.uuid4().hex[:8]
    settings = infra.Settings.with_new_secrets(
        prefect_db=f"ad_test_prefect_{suffix}",
        mlflow_db=f"ad_test_mlflow_{suffix}",
        prefect_port=free_port(),
        mlflow_port=free_port(),
        state=tmp_path_factory.mktemp("state"),
    )
    saved = {name: os.environ.get(name) for name in MLFLOW_LOGIN}
    try:
        infra.start(settings, "prefect", "mlflow")
        os.environ.update({name: settings.client_env()[name] for name in MLFLOW_LOGIN})  # this process's client
        yield settings
    finally:
        for name, value in saved.items():
            os.environ.pop(name, None) if value is None else os.environ.update({name: value})
        for name in ("prefect", "mlflow"):
            infra.stop(settings, name)
        for database in settings.databases:
            infra.drop_database(settings, database)
