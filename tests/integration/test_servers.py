"""Production mode for real: Prefect server + MLflow server on PostgreSQL (127.0.0.1:5432), deployments served,
runs triggered through the Prefect API exactly as the UI's Run button does."""

import asyncio
import contextvars
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from contextlib import closing
from pathlib import Path

import pytest

from tests.conftest import DEMO
from tests.integration.conftest import prefect_client_of
from tests.integration.ui import SCREENSHOTS, browser, expect

pytestmark = pytest.mark.slow

NAME = "srv-test"


@pytest.fixture(scope="module")
def deployed(servers, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("deploy")
    data = workdir / "thyroid.csv"
    shutil.copy(DEMO, data)
    env = {
        **os.environ,
        **servers.client_env(),
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
        with prefect_client_of(servers):
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

    # _sync: Playwright's sync API runs an event loop in this thread, which would make this return a coroutine
    # poll_interval: Prefect's default of 5 s added 2.5 s on average to each of these runs
    flow_run = run_deployment(deployment, parameters={"params": params}, timeout=600, poll_interval=1, _sync=True)
    assert flow_run.state.is_completed(), flow_run.state
    return flow_run


def champion() -> str:
    from stores import registry

    return str(registry.version_by_alias(NAME, registry.CHAMPION).version)


def test_both_servers_refuse_requests_without_credentials_and_store_nothing(servers):
    import requests

    mlflow_api = f"{servers.mlflow_uri}/api/2.0/mlflow"
    admin = (servers.mlflow_admin, servers.mlflow_admin_password)
    for auth in (None, (servers.mlflow_admin, "wrong-password")):
        refused = requests.post(f"{mlflow_api}/experiments/create", json={"name": "intruder"}, auth=auth, timeout=30)
        assert refused.status_code == 401, refused.text
    lookup = requests.get(f"{mlflow_api}/experiments/get-by-name", params={"experiment_name": "intruder"}, auth=admin)
    assert lookup.status_code == 404 and "RESOURCE_DOES_NOT_EXIST" in lookup.text  # nothing was created

    user, password = servers.prefect_auth.split(":", 1)
    for auth in (None, (user, "wrong-password")):
        refused = requests.post(f"{servers.prefect_api}/flows/", json={"name": "intruder"}, auth=auth, timeout=30)
        assert refused.status_code == 401, refused.text
    flows = requests.post(f"{servers.prefect_api}/flows/filter", json={}, auth=(user, password), timeout=30)
    assert flows.status_code == 200 and "intruder" not in [flow["name"] for flow in flows.json()]

    for health in (f"{servers.mlflow_uri}/health", f"{servers.prefect_api}/health"):  # probes need no login
        assert requests.get(health, timeout=30).status_code == 200


def test_the_mlflow_server_runs_no_idle_job_consumers(servers):
    """MLflow's job runner (huey consumers for GenAI features) is off: it polled at ~0.45 of a core when idle."""
    commands = _command_lines_of_group(int((servers.state / "mlflow.pid").read_text()))
    assert any("mlflow" in command for command in commands), commands  # the server's own processes are found
    assert not [command for command in commands if "huey" in command], commands


def _command_lines_of_group(group: int) -> list[str]:
    commands = []
    for process in Path("/proc").iterdir():
        if not process.name.isdigit():
            continue
        try:
            fields = (process / "stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == group:  # stat's fifth field (third after the name) is the process group
                commands.append((process / "cmdline").read_bytes().replace(b"\0", b" ").decode())
        except (FileNotFoundError, ProcessLookupError):  # the process ended while it was read
            continue
    return commands


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


def test_deployments_say_what_they_do_and_do_not_depend_on_where_deploy_ran(deployed):
    from prefect.client.orchestration import get_client

    async def read(name):
        async with get_client() as client:
            return await client.read_deployment_by_name(name)

    nightly = asyncio.run(read("training-pipeline/nightly-retrain"))
    assert nightly.entrypoint == "flows.training.training_pipeline"
    assert "'0 2 * * *' (UTC)" in nightly.description and "drift event" in nightly.description
    for name in ("drift-monitoring/drift-check", "batch-scoring/batch-score", "promote-model/promote-model"):
        deployment = asyncio.run(read(name))
        assert deployment.description and deployment.description != "None"
        assert not deployment.entrypoint.endswith(".py") and ":" not in deployment.entrypoint


def retrain_runs_on(folder: Path) -> list:
    """nightly-retrain runs whose training table is a drift run's table in `folder`."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter

    async def read():
        async with get_client() as client:
            deployment = await client.read_deployment_by_name("training-pipeline/nightly-retrain")
            runs = await client.read_flow_runs(deployment_filter=DeploymentFilter(id={"any_": [deployment.id]}))
            return [r for r in runs if str(r.parameters["params"].get("data_path", "")).startswith(str(folder))]

    return asyncio.run(read())


def test_drift_run_triggers_a_retrain_on_the_live_rows_that_never_revives_an_old_champion(deployed, tmp_path):
    """The bug: the event ran nightly-retrain with its fixed parameters (the old file, no live rows), which reused
    version 1 and made it champion again. Now the drift run's own retraining table travels in the event."""
    import pandas as pd
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL

    from stores import registry
    from tasks.tracking import tracking_uri as tracking

    if registry.version_by_alias(NAME, registry.CHAMPION) is None:
        run("training-pipeline/nightly-retrain", {"data_path": str(deployed), "model_name": NAME})
    champion_before = champion()
    rows = pd.read_csv(deployed).drop(columns=["label"]).sample(1500, random_state=1)
    rows.assign(f1=rows["f1"] * 3 + 0.05, f4=rows["f4"] + 0.3).to_csv(tmp_path / "shifted.csv", index=False)
    store = str(tmp_path / "store")
    score = f"score --data {tmp_path / 'shifted.csv'} --model-name {NAME} --live-store {store}".split()
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking()}
    env.update(PREFECT_API_URL=PREFECT_API_URL.value(), PREFECT_API_AUTH_STRING=PREFECT_API_AUTH_STRING.value())
    subprocess.run([sys.executable, "-m", "flows.cli", *score], env=env, check=True, timeout=300)

    drift_params = {"model_name": NAME, "live_store": store, "retrain_dir": str(tmp_path / "retraining")}
    run("drift-monitoring/drift-check", drift_params)
    deadline = time.time() + 60
    while not (triggered := retrain_runs_on(tmp_path / "retraining")):
        assert time.time() < deadline, "the drift event created no nightly-retrain run on the live rows"
        time.sleep(1)
    assert len(triggered) == 1
    params = triggered[0].parameters["params"]
    assert params["holdout_column"] == "_live_row" and params["check_ranges"] is False
    assert pd.read_parquet(params["data_path"])["_live_row"].sum() == len(rows)
    deadline = time.time() + 300
    while not (state := _flow_run_state(triggered[0].id)).is_final():
        assert time.time() < deadline, "the triggered retrain did not finish"
        time.sleep(2)
    assert state.is_completed(), state
    versions = [v.version for v in registry.client().search_model_versions(f"name='{NAME}'")]
    newest = str(max(map(int, versions)))
    promoted = f"v{newest}: gate passed, promoted to champion" in (state.message or "")
    assert promoted or "registered as challenger only" in state.message, state.message  # the run said which
    assert champion() == (newest if promoted else champion_before)  # and `champion` points where it said
    assert registry.get_version(NAME, newest).tags[registry.TRAINING_KEY_TAG]  # a new version, not a reused one
    assert registry.get_version(NAME, newest).run_id != registry.get_version(NAME, champion_before).run_id

    drift_run = registry.client().search_runs(
        [registry.client().get_experiment_by_name(f"{NAME}-monitoring").experiment_id],
        f"tags.kind = 'drift' and tags.model_name = '{NAME}'",
    )[0]
    report = registry.client().download_artifacts(drift_run.info.run_id, "drift_report.html", str(tmp_path))
    with browser() as page:
        page.goto(Path(report).as_uri())
        headline = page.get_by_text("Dataset Drift is detected (anomaly-distill rule", exact=False).first
        expect(headline).to_be_visible(timeout=30_000)  # the project's verdict, in the report a user opens
        page.screenshot(path=str(SCREENSHOTS / "drift-report-headline.png"))


def _flow_run_state(flow_run_id):
    from prefect.client.orchestration import get_client

    async def read():
        async with get_client() as client:
            return (await client.read_flow_run(flow_run_id)).state

    return asyncio.run(read())


def test_simultaneous_promotions_are_serialised(deployed):
    """Two promotions at the same instant must end as if one ran after the other: the history then names both
    earlier champions, so two rollbacks retrace the steps (unserialised, both read champion 1 and one is lost)."""
    from stores import registry
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

    # each thread in a copy of this context: the servers' Prefect settings are context variables, and a thread
    # without them would start a temporary Prefect API of its own for the lock (and time out under load)
    threads = [
        threading.Thread(target=contextvars.copy_context().run, args=(promote, v)) for v in (str(second), str(third))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    final = champion()
    other = ({str(second), str(third)} - {final}).pop()
    assert registry.champion_history(NAME) == before + [str(first.version), other]


def flow_run_ids(model_name: str, flow: str) -> set[str]:
    """Runs of `flow` whose parameters name `model_name`."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter

    with get_client(sync_client=True) as prefect:  # sync: Playwright's sync API runs an event loop in this thread
        runs = prefect.read_flow_runs(flow_filter=FlowFilter(name={"any_": [flow]}))
        return {str(r.id) for r in runs if r.parameters.get("params", {}).get("model_name") == model_name}


def wait_for_browser_run(model_name: str, flow: str = "training-pipeline", before=frozenset(), seconds=60) -> str:
    """Id of the one run of `flow` for `model_name` the browser form created (runs in `before` existed already)."""
    deadline = time.time() + seconds
    while not (runs := flow_run_ids(model_name, flow) - set(before)):
        assert time.time() < deadline, f"no flow run with model_name={model_name} after the form was submitted"
        time.sleep(1)
    assert len(runs) == 1, f"the form created {len(runs)} runs"
    return runs.pop()


@pytest.fixture
def page(servers):
    """A page logged in to both servers as a user is: Prefect's login form, MLflow's HTTP basic-auth prompt."""
    with browser(servers) as opened:
        opened.goto(servers.prefect_api.removesuffix("/api"))
        opened.get_by_role("textbox").first.fill(servers.prefect_auth)
        opened.keyboard.press("Enter")
        expect(opened.get_by_text("Dashboard").first).to_be_visible(timeout=30_000)
        yield opened


def open_custom_run(page, servers, deployment: str) -> None:
    page.goto(f"{servers.prefect_api.removesuffix('/api')}/deployments")
    page.get_by_role("link", name=deployment).first.click()
    page.get_by_role("button", name="Run", exact=True).click()
    page.get_by_text("Custom run").click()


def form_field(scope, label: str):
    """The form property labelled `label` inside `scope` (a page or a section of the form)."""
    page = getattr(scope, "page", scope)  # a `has=` locator is matched inside each candidate: built from the page
    return scope.locator(".schema-form-property", has=page.get_by_text(f"{label} (Optional)", exact=True)).last


def field_labels(scope) -> list[str]:
    return [
        text.removesuffix(" (Optional)") for text in scope.locator(".schema-form-property__label").all_inner_texts()
    ]


def wait_until_completed(page, servers, flow_run_id: str) -> None:
    page.goto(f"{servers.prefect_api.removesuffix('/api')}/runs/flow-run/{flow_run_id}")
    run_state = page.locator(".page-heading-flow-run__meta .state-badge")  # the run's own badge, not a task's
    expect(run_state).not_to_have_text(re.compile("Scheduled|Pending|Submitting|Running"), timeout=240_000)
    assert run_state.inner_text().strip() == "Completed", f"the run ended {run_state.inner_text()}: {_why(flow_run_id)}"


def _why(flow_run_id: str) -> str:
    """The run's state message and parameters: what a failed browser-submitted run was given and why it failed."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as prefect:
        run = prefect.read_flow_run(flow_run_id)
        return f"{run.state.message} (parameters {run.parameters})"


def test_browser_custom_run_form_is_in_order_modality_specific_and_the_run_links_to_mlflow(servers, deployed, page):
    from flows.cli import tracking_ui
    from flows.training import TrainingParameters
    from tasks.tracking import client

    open_custom_run(page, servers, "nightly-retrain")
    expect(page.get_by_text("Data Path (Optional)", exact=True)).to_be_visible()
    page.screenshot(path=str(SCREENSHOTS / "custom-run-form.png"), full_page=True)
    expect(page.get_by_text("Promotion gate thresholds.").first).to_be_visible()  # nested sections keep their help
    expect(page.get_by_text("Weight of the soft (teacher) loss", exact=False).first).to_be_visible()
    titles = [name.replace("_", " ").title() for name in TrainingParameters.model_fields]
    shown = [label for label in field_labels(page) if label in titles]
    assert shown[: len(titles)] == titles  # declaration order, although PostgreSQL reorders the schema's keys

    modality = form_field(page, "Modality")
    assert field_labels(modality)[1:] == ["Kind"]  # tabular: no time-series field
    modality.get_by_role("button", name="Images").click()  # issue 17: the image settings in the same form
    expect(form_field(modality, "Teacher")).to_be_visible()
    assert {"Size", "Channels", "Weights", "Student Widths", "Reduction"} <= set(field_labels(modality))
    modality.screenshot(path=str(SCREENSHOTS / "modality-images.png"))
    modality.get_by_role("button", name="Tabular").click()  # back to Tabular: the run below must be tabular
    modality.get_by_role("button", name="Time series").click()
    expect(form_field(modality, "Window")).to_be_visible()
    assert {"Timestamp Column", "Labels Path", "Window", "Stride"} <= set(field_labels(modality))
    modality.screenshot(path=str(SCREENSHOTS / "modality-time-series.png"))
    modality.get_by_role("button", name="Tabular").click()
    expect(form_field(modality, "Window")).to_have_count(0)

    for label in ("Label Column", "Dask Address", "Segment Column", "Holdout Column"):  # empty = not set
        field = form_field(page, label)
        assert field.locator(".p-button-group").count() == 0, f"{label} has a type toggle"
        assert field.locator("input, textarea").count() == 1
    assert form_field(page, "Dask Address").locator("textarea, input").first.input_value() == ""

    form_field(page, "Model Name").locator("input, textarea").first.fill("srv-browser")
    distill = form_field(page, "Distill")
    form_field(distill, "Epochs").locator("input").first.fill("22")
    kind = form_field(form_field(page, "Teacher"), "Kind")  # a dropdown with its default
    assert kind.locator(".p-select").count() == 1 and kind.locator(".p-select-button__value").inner_text() == "ensemble"
    compress = form_field(form_field(page, "Student"), "Compress")  # issue 16: none | int8 | prune
    assert compress.locator(".p-select-button__value").inner_text() == "none"
    page.get_by_role("button", name="Submit").click()
    expect(page.get_by_text("scheduled to start now").first).to_be_visible()
    flow_run_id = wait_for_browser_run("srv-browser")
    wait_until_completed(page, servers, flow_run_id)

    page.get_by_role("tab", name="Artifacts").or_(page.get_by_text("Artifacts", exact=True)).first.click()
    for key in ("mlflow-run", "model-version", "mlflow-experiment", "metrics", "gate-verdict"):  # the flow run's
        expect(page.get_by_text(key, exact=True).first).to_be_visible()
    page.screenshot(path=str(SCREENSHOTS / "flow-run-artifacts.png"), full_page=True)
    version = client().get_model_version_by_alias("srv-browser", "champion")
    run = client().get_run(version.run_id)
    assert run.data.tags["prefect.flow_run_id"] == flow_run_id and run.info.run_name == "train-srv-browser-v1"
    assert run.data.params["engine.distill.epochs"] == "22" and run.data.params["dask_address"] == ""

    login = {"username": servers.mlflow_admin, "password": servers.mlflow_admin_password}
    profile = page.context.browser.new_context(viewport={"width": 1400, "height": 1000}, http_credentials=login)
    with closing(profile):  # a new profile: nothing remembered of an earlier choice of view
        fresh = profile.new_page()
        fresh.goto(tracking_ui(servers.mlflow_uri, run.info.experiment_id))  # the link the CLI prints
        expect(fresh.get_by_text("train-srv-browser-v1").first).to_be_visible(timeout=30_000)
        expect(fresh.get_by_text("Model registry").first).to_be_visible()  # the model-training sidebar
        for genai in ("Judges", "Prompts", "Evaluation runs"):  # the GenAI sidebar, opened without ?workflowType
            expect(fresh.get_by_text(genai, exact=True)).to_have_count(0)
        fresh.screenshot(path=str(SCREENSHOTS / "experiment-landing.png"))
    page.goto(f"{servers.mlflow_uri}/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}")
    expect(page.get_by_text("train-srv-browser-v1").first).to_be_visible(timeout=30_000)
    expect(page.get_by_text("srv-browser").nth(1)).to_be_visible()
    page.screenshot(path=str(SCREENSHOTS / "mlflow-parent-run.png"), full_page=True)
    page.goto(f"{servers.mlflow_uri}/#/models/srv-browser/versions/1")
    expect(page.get_by_text("Model card: srv-browser v1")).to_be_visible(timeout=30_000)  # the card, rendered
    for heading in ("Intended use", "Metrics on held-out rows", "Gate verdict: PROMOTE", "Known limitations"):
        expect(page.get_by_text(heading, exact=True)).to_be_visible()
    page.screenshot(path=str(SCREENSHOTS / "model-version-card.png"), full_page=True)


SHORT_FORMS = {"train-table": "Tabular", "train-series": "Time series", "train-images": "Images"}


def open_short_form(page, servers, flow: str) -> None:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as prefect:
        deployment = prefect.read_deployment_by_name(f"{flow}/train")
    page.goto(f"{servers.prefect_api.removesuffix('/api')}/deployments/deployment/{deployment.id}")
    page.get_by_role("button", name="Run", exact=True).click()
    page.get_by_text("Custom run").click()
    expect(page.get_by_text("Advanced (Optional)", exact=True).first).to_be_visible()


def test_browser_each_job_has_a_short_form_and_the_table_one_trains(servers, deployed, page):
    """Data, label and model name first; at most 12 fields before Advanced; no toggles, duplicates or internals."""
    for flow, kind in SHORT_FORMS.items():
        open_short_form(page, servers, flow)
        labels = field_labels(page)
        first = labels[labels.index("Data Path") : labels.index("Advanced")]  # the form's fields, in order
        assert labels.index("Data Path") <= 1 and "Model Name" in first and len(first) <= 12, (flow, labels)
        assert len(first) == len(set(first)), first
        assert not {"Sequence", "Member Hints", "Synthetic", "Modality"} & set(labels), (flow, labels)
        assert page.locator(".schema-form-property .p-button-group").count() == 0, f"{flow}: a type toggle"
        if kind == "Images":
            assert "Engine" not in labels and labels.count("Seed") == 1 and labels.count("Contamination") == 1
        page.screenshot(path=str(SCREENSHOTS / f"form-{flow}.png"), full_page=True)
    earlier = flow_run_ids("srv-short", "train-table")
    open_short_form(page, servers, "train-table")
    form_field(page, "Model Name").locator("input, textarea").first.fill("srv-short")
    form_field(form_field(page, "Distill"), "Epochs").locator("input").first.fill("20")
    page.get_by_role("button", name="Submit").click()
    flow_run_id = wait_for_browser_run("srv-short", "train-table", earlier)
    wait_until_completed(page, servers, flow_run_id)
    assert _why(flow_run_id).startswith("srv-short v1: gate passed, promoted to champion")  # the state message


def promote_form_choices() -> list[str]:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as prefect:
        schema = prefect.read_deployment_by_name("promote-model/promote-model").parameter_openapi_schema
    return schema["definitions"]["PromotionParameters"]["properties"]["version"]["enum"]


def test_browser_promote_form_offers_the_versions_and_a_champion_moved_in_mlflow_is_rolled_back(
    servers, deployed, page, tmp_path
):
    from stores import registry

    while len(registry.version_choices(NAME)) < 3:  # "", then at least two versions
        seed = len(registry.version_choices(NAME))
        run(
            "training-pipeline/nightly-retrain",
            {"data_path": str(deployed), "model_name": NAME, "engine": {"seed": seed}},
        )
    # the form's choices as refreshed at the last registration by a run (copies made straight through MLflow's
    # API, as another test does, appear at the next one)
    choices = promote_form_choices()
    assert choices[0] == "" and set(choices[1:]) <= set(registry.version_choices(NAME))
    newest, older = choices[1], choices[2]
    open_custom_run(page, servers, "promote-model")
    version_field = form_field(page, "Version")
    expect(version_field.locator(".p-select")).to_have_count(1)  # a choice, not free text
    version_field.locator("button.p-select-button__control").focus()
    for key in ("Enter", "ArrowDown", "ArrowDown", "Enter"):  # open, "" (empty), the newest version, choose
        page.keyboard.press(key)
        page.wait_for_timeout(300)
    expect(version_field.locator(".p-select-button__value")).to_have_text(newest)
    page.screenshot(path=str(SCREENSHOTS / "promote-form.png"), full_page=True)
    earlier_runs = flow_run_ids(NAME, "promote-model")  # the ui-style test's runs, when it ran before
    page.get_by_role("button", name="Submit").click()
    wait_until_completed(page, servers, wait_for_browser_run(NAME, "promote-model", earlier_runs))
    assert champion() == newest

    page.goto(f"{servers.mlflow_uri}/#/models/{NAME}/versions/{older}")  # a person moves the alias in MLflow's UI
    expect(page.get_by_text(f"Version {older}").first).to_be_visible(timeout=30_000)
    aliases = page.get_by_role("button", name="Add")
    (aliases.first if aliases.count() else page.get_by_role("button", name="Edit aliases").first).click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_role("combobox").first.fill(registry.CHAMPION)
    page.keyboard.press("Enter")
    dialog.get_by_role("button", name="Save aliases").click()
    expect(dialog).to_have_count(0)
    page.screenshot(path=str(SCREENSHOTS / "mlflow-alias-moved.png"), full_page=True)
    assert champion() == older

    env = {**os.environ, **servers.client_env()}
    rollback = subprocess.run(
        [sys.executable, "-m", "flows.cli", "rollback", "--model-name", NAME],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert rollback.returncode == 0, rollback.stdout + rollback.stderr
    assert champion() == newest  # back to where the person moved it from


def _train_in_background(servers, data, model: str, workdir) -> subprocess.Popen:
    env = {
        **os.environ,
        **servers.client_env(),
        # the pipeline's own task retries are what is under test, not the clients' back-offs (Prefect's would
        # add 2 + 4 s to every call to a dead API, 1 min in all here)
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
        "PREFECT_CLIENT_MAX_RETRIES": "0",
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


# Last in the module: killing the Prefect server also ends the `deploy` runner (its poller gives up after three
# failed polls and pauses the deployments), so no deployment runs after this test.
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
        infra.start(servers, server)
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


def test_train_through_the_daemon_runs_there_and_what_it_would_run_differently_runs_here(
    servers, tmp_path, monkeypatch
):
    from flows.daemon import DAEMON_ENV

    shutil.copy(DEMO, tmp_path / "thyroid.csv")
    (tmp_path / "bad.csv").write_text("a,b,label\n1.0,x,0\n2.0,3.0,1\n")
    env = {**os.environ, **servers.client_env(), "PREFECT_HOME": str(tmp_path / "prefect-home")}
    env.pop(DAEMON_ENV, None)
    socket_path = tmp_path / "daemon.sock"
    command = [sys.executable, "-m", "flows.cli"]
    log = open(tmp_path / "daemon.log", "wb")
    daemon = subprocess.Popen([*command, "daemon", "--socket", str(socket_path)], cwd=tmp_path, env=env, stdout=log)
    try:
        deadline = time.time() + 180
        while not socket_path.exists():
            assert daemon.poll() is None and time.time() < deadline, (tmp_path / "daemon.log").read_text()[-3000:]
            time.sleep(0.2)
        assert socket_path.stat().st_mode & 0o777 == 0o600
        client = {**env, DAEMON_ENV: str(socket_path)}

        def train(data: str, name: str = "by-daemon", **settings) -> subprocess.CompletedProcess:
            args = [*command, "train", "--data", data, "--label-column", "label", "--model-name", name]
            return subprocess.run(args, cwd=tmp_path, env={**client, **settings}, capture_output=True, text=True)

        done = train("thyroid.csv")  # a path relative to the command's folder, not the daemon's
        assert done.returncode == 0, done.stderr[-3000:]
        assert "run by the anomaly-distill daemon" in done.stderr and "Registered by-daemon version 1" in done.stdout
        refused = train("bad.csv", "by-daemon-bad")
        assert refused.returncode == 2 and "run by the anomaly-distill daemon" in refused.stderr
        assert "column='b'): dtype str is not numeric" in refused.stderr and "Traceback" not in refused.stderr
        elsewhere = train("missing.csv", MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'other.db'}")
        assert "declined (settings differ: ['MLFLOW_TRACKING_URI']); running here" in elsewhere.stderr
        assert "run by the anomaly-distill daemon" not in elsewhere.stderr and elsewhere.returncode == 2
    finally:
        daemon.terminate()
        daemon.wait(60)
    from stores import registry

    monkeypatch.setenv("MLFLOW_TRACKING_URI", servers.mlflow_uri)
    assert registry.get_version("by-daemon", 1)
    assert not registry.client().search_registered_models("name='by-daemon-bad'")  # the refused run left nothing
