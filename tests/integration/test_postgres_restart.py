"""PostgreSQL restarted under both servers (Prefect and MLflow, neither restarted) while a training run is mid-way:
the run absorbs it (exit 0) or stops with a one-line reason naming the server (exit 3, never a traceback), and
the same command run again completes with exactly one new model version and one champion."""

import os
import shutil
import subprocess
import sys
import time
import uuid

import pytest

from tests.conftest import DEMO
from tests.integration.conftest import prefect_client_of

pytestmark = pytest.mark.slow


def postgres_ready(settings) -> bool:
    command = ["pg_isready", "-q", "-h", settings.pg_host, "-p", str(settings.pg_port)]
    return subprocess.run(command).returncode == 0


def restart_command(port: int) -> list[str]:
    """The Debian cluster serving `port` (any version), or the service where pg_lsclusters is not installed."""
    if shutil.which("pg_lsclusters") and shutil.which("pg_ctlcluster"):
        listing = subprocess.run(["pg_lsclusters", "--no-header"], capture_output=True, text=True).stdout
        for line in listing.splitlines():
            version, cluster, cluster_port, *_ = line.split()
            if cluster_port == str(port):
                return ["pg_ctlcluster", version, cluster, "restart"]
    return ["service", "postgresql", "restart"]


def wait_for_postgres(settings, timeout: float = 120) -> None:
    """PostgreSQL answering again (started if it is down): later tests need it whatever happened here."""
    begun = time.time()
    started = False
    while not postgres_ready(settings):
        if not started and time.time() > begun + 15:  # not back by itself (a restart that failed): start it
            subprocess.run([*restart_command(settings.pg_port)[:-1], "start"], capture_output=True)
            started = True
        assert time.time() < begun + timeout, "PostgreSQL did not come back"
        time.sleep(0.5)


def wait_for_student_run(since_ms: int, process: subprocess.Popen, timeout: float = 300) -> bool:
    """True once the run's `student` child run exists (teacher trained, distillation under way); False if the run
    ended first."""
    from tasks.tracking import client

    deadline = time.time() + timeout
    query = f"attributes.run_name = 'student' and attributes.start_time >= {since_ms}"
    while process.poll() is None:
        experiment = client().get_experiment_by_name("anomaly-distill")
        if experiment and client().search_runs([experiment.experiment_id], query):
            return True
        assert time.time() < deadline, "the run never reached its student step"
        time.sleep(0.2)
    return False


def training_runs(model_name: str) -> list:
    """The Prefect runs of the training flow for `model_name`, oldest first."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter

    with get_client(sync_client=True) as prefect:
        runs = prefect.read_flow_runs(flow_filter=FlowFilter(name={"any_": ["training-pipeline"]}))
    mine = [r for r in runs if r.parameters.get("params", {}).get("model_name") == model_name]
    return sorted(mine, key=lambda r: r.created)


def test_postgres_restart_mid_run_then_rerun_is_exact(servers, tmp_path, monkeypatch):
    from stores import registry
    from tasks.tracking import client

    monkeypatch.setenv("MLFLOW_TRACKING_URI", servers.mlflow_uri)  # this process's checks
    name = f"pg-restart-{uuid.uuid4().hex[:6]}"
    data = tmp_path / "thyroid.csv"
    shutil.copy(DEMO, data)
    (tmp_path / "first.yaml").write_text("engine: {distill: {epochs: 20}}\n")
    (tmp_path / "second.yaml").write_text("engine: {seed: 1, distill: {epochs: 20}}\n")
    env = {**os.environ, **servers.client_env()}

    def train(config: str) -> subprocess.Popen:
        command = [sys.executable, "-m", "flows.cli", "train", "--data", str(data), "--label-column", "label"]
        command += ["--model-name", name, "--config", str(tmp_path / config)]
        return subprocess.Popen(
            command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )

    first = train("first.yaml")
    out = first.communicate(timeout=600)[0]
    assert first.returncode == 0, out

    since_ms = int(time.time() * 1000)
    interrupted = train("second.yaml")
    restarted = False
    try:
        if wait_for_student_run(since_ms, interrupted):  # the run goes on meanwhile: teacher done, student under way
            restart = subprocess.run(restart_command(servers.pg_port), capture_output=True, text=True)
            assert restart.returncode == 0, restart.stdout + restart.stderr
            restarted = True
        out = interrupted.communicate(timeout=600)[0]
    finally:
        if interrupted.poll() is None:
            interrupted.kill()
        wait_for_postgres(servers)
    assert restarted, "the run ended before its student step: PostgreSQL was not restarted mid-run"
    print(f"the run across the restart exited {interrupted.returncode}:\n{out[-3000:]}")
    assert interrupted.returncode in (0, 3), out
    assert "Traceback" not in out, out
    if interrupted.returncode == 3:
        errors = [line for line in out.splitlines() if line.startswith("error:")]
        assert len(errors) == 1, out
        assert "did not answer" in errors[0] and "re-run the same command" in errors[0], errors[0]
        assert "Prefect API" in errors[0] or "MLflow" in errors[0], errors[0]

    rerun = train("second.yaml")
    out = rerun.communicate(timeout=600)[0]
    assert rerun.returncode == 0, out

    versions = client().search_model_versions(f"name='{name}'")
    keys = [v.tags.get(registry.TRAINING_KEY_TAG) for v in versions]
    assert len(versions) == 2 and None not in keys and len(set(keys)) == 2, keys  # first run's and this one's
    seeds = sorted(client().get_run(v.run_id).data.tags.get("seed") for v in versions)
    assert seeds == ["0", "1"], seeds
    holders = [v.version for v in versions if "champion" in client().get_model_version(name, v.version).aliases]
    assert len(holders) == 1, holders
    champion = str(holders[0])
    assert str(registry.version_by_alias(name, registry.CHAMPION).version) == champion
    assert registry.champion_history(name) == ([] if champion == "1" else ["1"]), registry.champion_history(name)
    assert client().get_registered_model(name).tags.get(registry.MOVED_TO_TAG) == champion

    with prefect_client_of(servers):
        runs = training_runs(name)
    assert len(runs) == 3, [(r.name, r.state_type) for r in runs]
    assert runs[-1].state is not None and runs[-1].state.is_completed(), runs[-1].state
