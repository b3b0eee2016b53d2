"""`anomaly-distill deploy` through a restart of a real Prefect server (PostgreSQL): it keeps serving, the schedules
come back active and the next drift check runs; an outage past --outage-seconds ends it with exit code 3.

The deploy process gets PREFECT_CLIENT_MAX_RETRIES=0: Prefect's client retries a refused call for about a minute
(2 + 4 + ... + 32 s) before the runner counts one failed poll, which makes the runner's own tolerance several
minutes. Without retries the runner gives up seconds into the outage, so the outage these tests make is longer than
what the runner bridges by itself, and the test stays short.
"""

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.conftest import DEMO, require
from tests.integration.conftest import free_port

pytestmark = pytest.mark.slow

DEPLOYMENTS = (
    "drift-monitoring/drift-check",
    "training-pipeline/nightly-retrain",
    "batch-scoring/batch-score",
    "promote-model/promote-model",
)
TERMINAL_OR_RUNNING = {"RUNNING", "COMPLETED", "FAILED"}  # a drift check with no champion may fail: it still ran


@pytest.fixture
def prefect_server(tmp_path):
    from infra import servers as infra

    require(
        subprocess.run(["pg_isready", "-h", "127.0.0.1", "-q"]).returncode == 0,
        "PostgreSQL is not running on 127.0.0.1:5432 (.ci/run starts it)",
    )
    settings = infra.Settings.with_new_secrets(
        prefect_db=f"ad_test_restart_{uuid.uuid4().hex[:8]}", prefect_port=free_port(), state=tmp_path / "state"
    )
    infra.start(settings, "prefect")
    try:
        yield settings
    finally:
        infra.stop(settings, "prefect")
        infra.drop_database(settings, settings.prefect_db)


@pytest.fixture
def api(prefect_server):
    """A Prefect client of the test's server, from this process."""
    from prefect.client.orchestration import get_client
    from prefect.settings import (
        PREFECT_API_AUTH_STRING,
        PREFECT_API_URL,
        PREFECT_CLIENT_MAX_RETRIES,
        temporary_settings,
    )

    settings = {
        PREFECT_API_URL: prefect_server.prefect_api,
        PREFECT_API_AUTH_STRING: prefect_server.prefect_auth,
        PREFECT_CLIENT_MAX_RETRIES: 0,
    }
    with temporary_settings(settings), get_client(sync_client=True) as client:
        yield client


def start_deploy(server, tmp_path: Path, *extra: str) -> subprocess.Popen:
    env = {
        **os.environ,
        "PREFECT_API_URL": server.prefect_api,
        "PREFECT_API_AUTH_STRING": server.prefect_auth,
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
        "PREFECT_RUNNER_POLL_FREQUENCY": "1",
        "PREFECT_CLIENT_MAX_RETRIES": "0",
    }
    command = [str(Path(sys.executable).parent / "anomaly-distill"), "deploy", "--data", str(DEMO)]
    command += ["--label-column", "label", "--model-name", f"restart-{uuid.uuid4().hex[:6]}", *extra]
    return subprocess.Popen(
        command,
        cwd=tmp_path,
        env=env,
        stdout=open(tmp_path / "deploy.out", "wb"),
        stderr=open(tmp_path / "deploy.err", "wb"),
    )


def wait_for(condition, what: str, timeout: float = 150):
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        assert time.monotonic() < deadline, f"{what} within {timeout:.0f} s"
        time.sleep(1)
    return result


def deployments(api) -> dict | None:
    """All four deployments by name, once all are applied (promote-model is the last)."""
    try:
        return {name: api.read_deployment_by_name(name) for name in DEPLOYMENTS}
    except Exception:  # not applied yet, or the server is still starting
        return None


def reapplied(api, since: float) -> dict | None:
    served = deployments(api)
    return served if served and all(d.updated.timestamp() > since for d in served.values()) else None


def stopped_or_waiting(process: subprocess.Popen, tmp_path: Path) -> bool:
    return process.poll() is not None or "lost the Prefect API" in (tmp_path / "deploy.err").read_text()


def test_deploy_keeps_serving_across_a_prefect_server_restart(prefect_server, api, tmp_path):
    from infra import servers as infra

    deploy = start_deploy(prefect_server, tmp_path, "--drift-interval", "20")
    try:
        wait_for(lambda: deployments(api), "the deployments are applied")
        infra.stop(prefect_server, "prefect")
        wait_for(lambda: stopped_or_waiting(deploy, tmp_path), "the runner gives up on the stopped server")
        # Taken before the start: deploy may re-apply within the moment between the server answering and the next
        # line, and a stopped server takes no update, so anything updated after this is a re-apply after the restart.
        restarted = time.time()
        infra.start(prefect_server, "prefect")  # same port, same database
        assert deploy.poll() is None, (tmp_path / "deploy.err").read_text()[-3000:]
        wait_for(lambda: "is back" in (tmp_path / "deploy.err").read_text(), "deploy notices the API is back")

        served = wait_for(lambda: reapplied(api, restarted), "deploy applies its deployments again")
        for name, deployment in served.items():
            assert not deployment.paused and all(schedule.active for schedule in deployment.schedules), name
        drift_check = served["drift-monitoring/drift-check"].id
        run = wait_for(lambda: run_after(api, drift_check, restarted), "a drift check runs after the restart")
        assert run.state.type.value in TERMINAL_OR_RUNNING
        deploy.terminate()
        assert deploy.wait(60) == 0  # SIGTERM still stops it cleanly
    finally:
        deploy.kill()
        deploy.wait(60)


def test_deploy_exits_3_when_the_prefect_api_stays_away_longer_than_the_limit(prefect_server, api, tmp_path):
    from infra import servers as infra

    deploy = start_deploy(prefect_server, tmp_path, "--outage-seconds", "5")
    try:
        wait_for(lambda: deployments(api), "the deployments are applied")
        infra.stop(prefect_server, "prefect")
        assert deploy.wait(150) == 3
        last = (tmp_path / "deploy.err").read_text().strip().splitlines()[-1]
        assert last.startswith(f"error: the Prefect API at {prefect_server.prefect_api} did not answer"), last
        assert "for 5 s" in last
    finally:
        deploy.kill()
        deploy.wait(60)


def run_after(api, deployment_id, since: float):
    """A run of the deployment that the runner started after `since` (not one left over from before the outage)."""
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    runs = api.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])))
    return next(
        (
            run
            for run in runs
            if run.start_time and run.start_time.timestamp() > since and run.state.type.value in TERMINAL_OR_RUNNING
        ),
        None,
    )
