"""infra/prefect.yaml for real: `prefect deploy` to a process work pool on a real Prefect server, a
`prefect worker` picks up a UI-style run and the pipeline registers a model on the real MLflow server."""

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.conftest import prefect_client_of

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def prefect_cli(args: list[str], env: dict, cwd: Path, timeout: float = 300) -> str:
    done = subprocess.run(
        [str(BIN / "prefect"), "--no-prompt", *args], env=env, cwd=cwd, timeout=timeout, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout + done.stderr


def test_prefect_yaml_deploys_to_a_process_pool_and_a_worker_runs_it(servers, thyroid_csv, tmp_path, monkeypatch):
    from prefect.deployments import run_deployment

    from flows.training import TrainingParameters
    from stores import registry

    env = {
        **os.environ,
        **servers.client_env(),
        "ANOMALY_DISTILL_HOME": str(REPO),
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
    }
    prefect_cli(["work-pool", "create", "anomaly-distill", "--type", "process"], env, REPO)
    deployed = prefect_cli(["deploy", "--all", "--prefect-file", "infra/prefect.yaml"], env, REPO)
    for name in ("nightly-retrain", "drift-check", "batch-score", "promote-model"):
        assert name in deployed
    prefect_cli(["deployment", "schedule", "pause", "--all"], env, REPO)  # only the run started below is due

    params = TrainingParameters(
        data_path=str(thyroid_csv), model_name="pool-test", engine={"distill": {"epochs": 20}}
    ).model_dump()
    with prefect_client_of(servers):
        flow_run = run_deployment("training-pipeline/nightly-retrain", parameters={"params": params}, timeout=0)
        prefect_cli(["worker", "start", "--pool", "anomaly-distill", "--run-once"], env, tmp_path, timeout=600)
        state = asyncio.run(_state(flow_run.id))
    assert state.is_completed(), state
    monkeypatch.setenv("MLFLOW_TRACKING_URI", servers.mlflow_uri)
    assert str(registry.version_by_alias("pool-test", registry.CHAMPION).version) == "1"


async def _state(flow_run_id):
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        return (await client.read_flow_run(flow_run_id)).state
