"""Production mode for real: Prefect server + MLflow server on PostgreSQL (127.0.0.1:5432), deployments served,
runs triggered through the Prefect API exactly as the UI's Run button does."""

import asyncio
import importlib.util
import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from tests.conftest import DEMO, require

pytestmark = pytest.mark.slow

NAME = "srv-test"


@pytest.fixture(scope="module")
def deployed(servers, tmp_path_factory):
    from prefect.settings import PREFECT_API_URL, temporary_settings

    workdir = tmp_path_factory.mktemp("deploy")
    data = workdir / "thyroid.csv"
    shutil.copy(DEMO, data)
    env = {
        **os.environ,
        "PREFECT_API_URL": servers.prefect_api,
        "MLFLOW_TRACKING_URI": servers.mlflow_uri,
        "PREFECT_RUNNER_POLL_FREQUENCY": "1",
    }
    runner = subprocess.Popen(
        [sys.executable, "-m", "flows.cli", *f"deploy --data {data} --label-column label --model-name {NAME}".split()]
        + ["--drift-interval", "86400"],
        cwd=workdir,
        env=env,
        stdout=open(workdir / "deploy.log", "wb"),
        stderr=subprocess.STDOUT,
    )
    os.environ["MLFLOW_TRACKING_URI"] = servers.mlflow_uri
    try:
        with temporary_settings({PREFECT_API_URL: servers.prefect_api}):
            _wait_for_deployments()
            yield data
    finally:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
        runner.terminate()
        runner.wait(30)


def _wait_for_deployments(timeout: float = 120) -> None:
    from prefect.client.orchestration import get_client

    async def ready():
        async with get_client() as client:
            try:
                await client.read_deployment_by_name("promote-model/promote-model")
                return True
            except Exception:
                return False

    deadline = time.time() + timeout
    while not asyncio.run(ready()):
        assert time.time() < deadline, "deployments never appeared"
        time.sleep(1)


def run(deployment: str, params: dict):
    from prefect.deployments import run_deployment

    flow_run = run_deployment(deployment, parameters={"params": params}, timeout=600)
    assert flow_run.state.is_completed(), flow_run.state
    return flow_run


def champion() -> str:
    from tasks import registry

    return str(registry.version_by_alias(NAME, registry.CHAMPION).version)


def retrain_runs() -> int:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter

    async def count():
        async with get_client() as client:
            deployment = await client.read_deployment_by_name("training-pipeline/nightly-retrain")
            return len(await client.read_flow_runs(deployment_filter=DeploymentFilter(id={"any_": [deployment.id]})))

    return asyncio.run(count())


def test_ui_style_runs_train_promote_and_roll_back(deployed):
    from flows.training import TrainingParameters

    params = TrainingParameters(
        data_path=str(deployed), model_name=NAME, engine={"distill": {"epochs": 20}}
    ).model_dump()
    run("training-pipeline/nightly-retrain", params)
    assert champion() == "1"
    params["engine"]["distill"]["epochs"] = 21
    run("training-pipeline/nightly-retrain", params)
    assert champion() == "2"
    run("promote-model/promote-model", {"model_name": NAME, "action": "rollback"})
    assert champion() == "1"
    run("promote-model/promote-model", {"model_name": NAME, "action": "promote", "version": "2"})
    assert champion() == "2"


def test_drift_event_triggers_a_retrain_run(servers, deployed):
    before = retrain_runs()
    # Emitted from a fresh process: this one's event worker may still be bound to another test's temporary API.
    script = (
        "from prefect.events import emit_event\nfrom prefect.events.worker import EventsWorker\n"
        "emit_event(event='anomaly_distill.drift.detected', "
        f"resource={{'prefect.resource.id': 'anomaly-distill.model.{NAME}'}}, payload={{'drift_share': 0.5}})\n"
        "EventsWorker.drain_all()\n"
    )
    subprocess.run(
        [sys.executable, "-c", script],
        env={**os.environ, "PREFECT_API_URL": servers.prefect_api},
        check=True,
        timeout=120,
    )
    deadline = time.time() + 60
    while retrain_runs() == before:
        assert time.time() < deadline, "the drift event created no nightly-retrain run"
        time.sleep(1)


def test_simultaneous_promotions_are_serialised(deployed):
    """Two promotions at the same instant must end as if one ran after the other: the history then names both
    earlier champions, so two rollbacks retrace the steps (unserialised, both read champion 1 and one is lost)."""
    from tasks import registry
    from tasks.tracking import client

    if registry.version_by_alias(NAME, registry.CHAMPION) is None:
        run("training-pipeline/nightly-retrain", {"data_path": str(deployed), "model_name": NAME})
    first = registry.version_by_alias(NAME, registry.CHAMPION)
    second, third = (  # two more versions (copies): which model it is does not matter here
        client().copy_model_version(f"models:/{NAME}/{first.version}", NAME).version for _ in range(2)
    )
    before = registry.champion_history(NAME)
    barrier = threading.Barrier(2)

    def promote(version):
        barrier.wait()
        registry.promote(NAME, version, "concurrent test")

    threads = [threading.Thread(target=promote, args=(v,)) for v in (str(second), str(third))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    final = champion()
    other = ({str(second), str(third)} - {final}).pop()
    assert registry.champion_history(NAME) == before + [str(first.version), other]


def _train_in_background(servers, data, model: str, workdir) -> subprocess.Popen:
    env = {
        **os.environ,
        "PREFECT_API_URL": servers.prefect_api,
        "MLFLOW_TRACKING_URI": servers.mlflow_uri,
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",  # the pipeline's own task retries are what is under test
        "PREFECT_CLIENT_MAX_RETRIES": "2",
    }
    (workdir / "train.yaml").write_text(f"experiment: {model}\n")
    argv = f"train --data {data} --label-column label --model-name {model} --config train.yaml".split()
    return subprocess.Popen(
        [sys.executable, "-m", "flows.cli", *argv],
        cwd=workdir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _wait_for_run(name: str, experiment: str, timeout: float = 180) -> None:
    from tasks.tracking import client

    deadline = time.time() + timeout
    while True:
        found = client().get_experiment_by_name(experiment)
        if found and client().search_runs([found.experiment_id], f"attributes.run_name = '{name}'"):
            return
        assert time.time() < deadline, f"no {name!r} run appeared"
        time.sleep(0.2)


@pytest.mark.parametrize("server", ["mlflow", "prefect"])
def test_server_killed_mid_run_fails_clearly_and_rerun_makes_one_version(servers, deployed, tmp_path, server):
    from infra import servers as infra
    from tasks.tracking import client

    model = f"kill-{server}"
    training = _train_in_background(servers, deployed, model, tmp_path)
    _wait_for_run("student", model)  # teacher trained, student distilling

    infra.kill(servers, server)
    try:
        output, _ = training.communicate(timeout=300)
    finally:
        (infra.start_mlflow if server == "mlflow" else infra.start_prefect)(servers)
    print(output[-3000:])
    assert training.returncode == 3, output[-3000:]
    expected = "MLflow tracking server" if server == "mlflow" else "Prefect API"
    assert f"error: the {expected}" in output and "re-run the same command" in output
    if server == "mlflow":
        assert "Retry 1/2" in output  # the tracking task was retried before the run gave up

    rerun = _train_in_background(servers, deployed, model, tmp_path)
    output, _ = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, output[-3000:]
    assert [v.version for v in client().search_model_versions(f"name='{model}'")] == ["1"]
    assert str(client().get_model_version_by_alias(model, "champion").version) == "1"


CHROMIUM = "/usr/bin/chromium"  # Debian's package; .ci/run installs it
SCREENSHOTS = Path(__file__).resolve().parents[2] / "outputs" / "browser"  # the test's output folder (gitignored)
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]  # no calls home: this machine has no way out


def wait_for_browser_run(model_name: str, seconds: float = 60) -> str:
    """Id of the nightly-retrain run whose parameters name `model_name` (created from the browser form)."""
    from prefect.client.orchestration import get_client

    def find():  # the sync client: Playwright's sync API already runs an event loop in this thread
        with get_client(sync_client=True) as prefect:
            return [
                r for r in prefect.read_flow_runs() if r.parameters.get("params", {}).get("model_name") == model_name
            ]

    deadline = time.time() + seconds
    while not (runs := find()):
        assert time.time() < deadline, f"no flow run with model_name={model_name} after the form was submitted"
        time.sleep(1)
    assert len(runs) == 1, f"the form created {len(runs)} runs"
    return str(runs[0].id)


def test_browser_fills_the_deployment_form_and_the_run_completes(servers, deployed):
    require(os.path.exists(CHROMIUM), f"Chromium not installed at {CHROMIUM} (apt-get install chromium; .ci/run does)")
    require(importlib.util.find_spec("playwright") is not None, "playwright not installed (pip install playwright)")
    import playwright.sync_api as playwright
    from prefect.client.orchestration import get_client

    from tasks.tracking import client

    with playwright.sync_playwright() as browser_driver:
        browser = browser_driver.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(f"{servers.prefect_api.removesuffix('/api')}/deployments")
        page.get_by_role("link", name="nightly-retrain").first.click()
        page.get_by_role("button", name="Run", exact=True).click()
        page.get_by_text("Custom run").click()

        def form_field(label: str):
            prop = page.locator(".schema-form-property", has=page.get_by_text(label, exact=True)).last
            return prop.locator("input, textarea").first

        form_field("Model Name (Optional)").fill("srv-browser")
        distill = page.locator(".schema-form-property", has=page.get_by_text("Distill (Optional)", exact=True)).last
        distill.locator(".schema-form-property", has=page.get_by_text("Epochs (Optional)", exact=True)).last.locator(
            "input"
        ).first.fill("22")
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / "custom-run-form.png"), full_page=True)
        # the nested engine section keeps its descriptions and its dropdowns
        playwright.expect(page.get_by_text("Promotion gate thresholds.").first).to_be_visible()
        playwright.expect(page.get_by_text("Weight of the soft (teacher) loss", exact=False).first).to_be_visible()
        kind = page.locator(".schema-form-property", has=page.get_by_text("Kind (Optional)", exact=True)).last
        (SCREENSHOTS / "kind-field.html").write_text(kind.inner_html())
        assert (
            kind.locator(".p-select").count() == 1
            and kind.locator(".p-select-button__value").inner_text() == "ensemble"
        )
        page.get_by_role("button", name="Submit").click()
        playwright.expect(page.get_by_text("scheduled to start now").first).to_be_visible()
        # Open the run the form created (found through the API: the run list refreshes on a timer, slow under load)
        flow_run_id = wait_for_browser_run("srv-browser")
        page.goto(f"{servers.prefect_api.removesuffix('/api')}/runs/flow-run/{flow_run_id}")
        run_state = page.locator(".page-heading-flow-run__meta .state-badge")  # the run's own badge, not a task's
        playwright.expect(run_state).to_have_text("Completed", timeout=240_000)
        browser.close()

    async def read_run():
        async with get_client() as prefect:
            return await prefect.read_flow_run(uuid.UUID(flow_run_id))

    flow_run = asyncio.run(read_run())
    assert flow_run.state.is_completed()
    assert (
        flow_run.parameters["params"]["engine"]["distill"]["epochs"] == 22
        and flow_run.parameters["params"]["model_name"] == "srv-browser"
    )
    assert str(client().get_model_version_by_alias("srv-browser", "champion").version) == "1"
