"""MLflow I/O: where to track, runs, params, metrics, datasets, artifacts and the student model.

Runs are addressed by id through the client rather than MLflow's thread-local "active run", because Prefect
may run tasks on worker threads.
"""

import getpass
import json
import os
import subprocess
import tempfile
from contextlib import suppress
from importlib.metadata import version
from pathlib import Path

import mlflow
import pandas as pd
from mlflow.entities import DatasetInput, InputTag, Metric, Param, RunTag
from mlflow.models import infer_signature
from mlflow.models.signature import ModelSignature
from mlflow.types.schema import AnyType, ColSpec, Schema
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from stores.mlflow_client import (  # noqa: F401 (re-exported: tasks call tracking.client() and friends)
    DEFAULT_DB,
    client,
    load_json_artifact,
    load_parquet_artifact,
    tracking_uri,
)


def warm_up() -> None:
    """Opens a sqlite tracking store (imports its SQLAlchemy layer; creates or upgrades the file on a first run,
    ~1.5 s together): the CLI does it while the embedded Prefect API starts, which on a first run is still
    creating its own database. Errors are left to the run, which reports them where they belong."""
    if tracking_uri().startswith("sqlite:"):  # a server's store costs nothing to open, and may be down
        with suppress(Exception):
            mlflow_client = client()
            mlflow_client.search_experiments(max_results=1)
            mlflow_client.search_registered_models(max_results=1)


EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}  # the UI opens on runs, not GenAI traces


def experiment_id(name: str) -> str:
    mlflow_client = client()
    existing = mlflow_client.get_experiment_by_name(name)
    if existing is not None:
        if existing.tags.get("mlflow.experimentKind") is None:
            mlflow_client.set_experiment_tag(existing.experiment_id, *next(iter(EXPERIMENT_KIND.items())))
        return existing.experiment_id
    location = None
    uri = tracking_uri()
    if uri.startswith("sqlite:///"):  # keep artifacts beside the database, not in whatever cwd a worker has
        location = (Path(uri.removeprefix("sqlite:///")).parent / "mlartifacts").as_uri()
    return mlflow_client.create_experiment(name, artifact_location=location, tags=EXPERIMENT_KIND)


def prefect_tags() -> dict[str, str]:
    """The Prefect flow run this MLflow run belongs to (id, and its page when the UI's address is known)."""
    # Prefect only inside a run: CLI commands that read runs import this module without it
    from prefect.context import FlowRunContext
    from prefect.settings import PREFECT_UI_URL

    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        return {}
    flow_run_id = str(context.flow_run.id)
    tags = {"prefect.flow_run_id": flow_run_id, "prefect.flow_run_name": context.flow_run.name}
    if PREFECT_UI_URL.value():
        tags["prefect.flow_run_url"] = f"{PREFECT_UI_URL.value()}/runs/flow-run/{flow_run_id}"
    return tags


# MLflow 3.17's UI opens an experiment on its GenAI view (traces, token usage) unless the URL says otherwise: the
# browser's remembered choice (local storage, GenAI in a fresh profile) outranks the experiment's kind tag.
RUNS_VIEW = "?workflowType=machine_learning"


def prefect_link_line() -> str:
    """A Markdown line linking the Prefect flow run (MLflow renders a run's description as Markdown)."""
    tags = prefect_tags()
    url = tags.get("prefect.flow_run_url")
    if url is None:
        return f"Prefect flow run `{tags['prefect.flow_run_name']}`\n\n" if tags else ""
    return f"**Prefect flow run:** [{tags['prefect.flow_run_name']}]({url})\n\n"


def source_tags(git: str) -> dict[str, str]:
    """What MLflow shows as a run's Source and User (`client.create_run` sets neither, unlike `mlflow.start_run`):
    the Prefect flow, or the CLI command; the tracking login, else the operating-system user."""
    # Prefect only inside a run: CLI commands that read runs import this module without it
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    flow = context.flow.name if context is not None and context.flow is not None else None
    user = os.environ.get("MLFLOW_TRACKING_USERNAME") or getpass.getuser()
    tags = {"mlflow.source.type": "JOB", "mlflow.source.name": f"prefect flow {flow}" if flow else "anomaly-distill"}
    return tags | {"mlflow.user": user} | ({"mlflow.source.git.commit": git} if git else {})


def ui_url(run_id: str | None = None, model: tuple[str, str] | None = None) -> str | None:
    """The MLflow UI page of a run or of a model version, when tracking is a server (a sqlite file has no UI)."""
    uri = ui_base()
    if uri is None:
        return None
    if model is not None:
        return f"{uri.rstrip('/')}/#/models/{model[0]}/versions/{model[1]}"
    return experiment_url(uri, client().get_run(run_id).info.experiment_id, run_id)


def ui_base() -> str | None:
    """The MLflow UI's address when tracking is a server; None for a sqlite file."""
    uri = tracking_uri()
    return uri if uri.startswith(("http://", "https://")) else None


def experiment_url(ui: str, experiment: str, run_id: str | None = None) -> str:
    """An experiment's runs table (or one run's page) in the MLflow UI at `ui`, opened on the runs, not traces."""
    return f"{ui.rstrip('/')}/#/experiments/{experiment}/runs{f'/{run_id}' if run_id else ''}{RUNS_VIEW}"


def rename_run(run_id: str, name: str) -> None:
    client().update_run(run_id, name=name)


def start_run(experiment: str, name: str, tags: dict | None = None) -> str:
    """A new top-level run, or the run `mlflow run` (MLflow Projects) created for us, named by MLFLOW_RUN_ID."""
    project_run = os.environ.get("MLFLOW_RUN_ID")  # its source tags are MLflow Projects' own: kept
    source = {} if project_run else source_tags((tags or {}).get("git_commit", ""))
    tags = {key: str(value) for key, value in {**source, **prefect_tags(), **(tags or {})}.items()}  # strings only
    if project_run:
        set_tags(project_run, tags)
        return project_run
    return client().create_run(experiment_id(experiment), run_name=name, tags=tags).info.run_id


def start_child_run(parent_id: str, name: str) -> str:
    mlflow_client = client()
    parent = mlflow_client.get_run(parent_id)
    experiment, tags = parent.info.experiment_id, parent.data.tags
    same_source = {key: value for key, value in tags.items() if key.startswith(("mlflow.source.", "mlflow.user"))}
    tags = {MLFLOW_PARENT_RUN_ID: parent_id, **same_source, **prefect_tags()}
    return mlflow_client.create_run(experiment, run_name=name, tags=tags).info.run_id


def end_run(run_id: str, status: str = "FINISHED") -> None:
    client().set_terminated(run_id, status)


def _flatten(prefix: str, value) -> dict[str, str]:
    if isinstance(value, dict):
        return {k: v for key, item in value.items() for k, v in _flatten(f"{prefix}{key}.", item).items()}
    return {prefix.rstrip("."): json.dumps(value) if isinstance(value, list) else str(value)}


def log_params(run_id: str, params: dict) -> None:
    flat = _flatten("", params)
    client().log_batch(run_id, params=[Param(k, v[:6000]) for k, v in flat.items()])


def log_metrics(run_id: str, metrics: dict[str, float], step: int = 0) -> None:
    stamp = int(pd.Timestamp.now().timestamp() * 1000)
    client().log_batch(run_id, metrics=[Metric(k, float(v), stamp, step) for k, v in metrics.items()])


def log_history(run_id: str, history: list[dict]) -> None:
    """One metric point per epoch, so the loss curves plot in the MLflow UI."""
    stamp = int(pd.Timestamp.now().timestamp() * 1000)
    points = [Metric(k, float(v), stamp, int(h["epoch"])) for h in history for k, v in h.items() if k != "epoch"]
    for start in range(0, len(points), 1000):
        client().log_batch(run_id, metrics=points[start : start + 1000])


def set_tags(run_id: str, tags: dict[str, str]) -> None:
    client().log_batch(run_id, tags=[RunTag(key, str(value)) for key, value in tags.items()])  # one request


def get_run(run_id: str):
    return client().get_run(run_id)


def log_text(run_id: str, text: str, name: str) -> None:
    client().log_text(run_id, text, name)


def log_file(run_id: str, path: Path, artifact_path: str | None = None) -> None:
    client().log_artifact(run_id, str(path), artifact_path)


def log_json(run_id: str, payload, name: str, artifact_path: str | None = None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_text(json.dumps(payload, indent=2, default=str))
        log_file(run_id, path, artifact_path)


def log_dataset(run_id: str, frame: pd.DataFrame, source: str, label_column: str | None, digest: str) -> str:
    """Logs the training data as an MLflow dataset with our digest (not MLflow's own, a third number)."""
    dataset = mlflow.data.from_pandas(frame, source=source, name=Path(source).name, targets=label_column, digest=digest)
    context = InputTag(key="mlflow.data.context", value="training")
    client().log_inputs(run_id, datasets=[DatasetInput(dataset._to_mlflow_entity(), tags=[context])])
    return dataset.digest


def git_commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, cwd=Path(__file__).parent
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def log_detector_model(
    run_id: str,
    files: tuple[Path, Path],
    columns: list[str],
    example_and_output: tuple[pd.DataFrame, pd.DataFrame],
    threshold: float,
    name: str,
):
    """Logs the pyfunc from code (tasks/pyfunc_model.py) with the detector's state and contract (`files`) as
    artifacts, named `name`.

    The input schema names every column the model reads, typed `any` and optional: MLflow's own check would refuse
    integers for float columns and a missing column before the contract's check (run by the pyfunc), which casts
    integers and names every problem at once. The contract in the model card gives the types."""
    example, output = example_and_output
    inferred = infer_signature(example, output, params={"threshold": float(threshold), "explain": 0})
    inputs = Schema([ColSpec(AnyType(), column, required=False) for column in columns])
    signature = ModelSignature(inputs=inputs, outputs=inferred.outputs, params=inferred.params)
    detector_file, contract_file = files
    with mlflow.start_run(run_id=run_id):
        return mlflow.pyfunc.log_model(
            name=name,
            python_model=str(Path(__file__).with_name("pyfunc_model.py")),
            artifacts={"detector": str(detector_file), "contract": str(contract_file)},
            signature=signature,
            input_example=example,
            pip_requirements=_requirements(),
        )


def _requirements() -> list[str]:
    """Pinned explicitly: MLflow's own inference imports the model in a subprocess (several seconds a run)."""
    # onnxruntime scores int8 students; pillow reads images for image models
    names = ("torch", "numpy", "pandas", "mlflow", "onnxruntime", "pillow")
    return [f"{name}=={version(name).split('+')[0]}" for name in names]
