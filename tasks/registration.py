"""Training stage 7: the model version, its card, the run links, and the training key that reuses it."""

import hashlib
import json
import re
import tempfile
from datetime import datetime, timezone
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from anomaly_distill.contract import AnyContract, contract_json
from anomaly_distill.data import (
    UNLABELLED,
    Table,
)
from anomaly_distill.detector import check_contract_fits, save_detector
from anomaly_distill.gate import Verdict
from anomaly_distill.model_card import ModelCard, render_model_card
from anomaly_distill.tabular import pipeline
from stores import registry
from stores.registry import CONTRACT_FILE, REFERENCE_FILE
from tasks import tracking
from tasks.common import DATA_DIGEST, IO_RETRIES, REFERENCE_LABEL, digest_of


def reuse_note(version) -> str:
    return (
        f"note: v{version.version} reused — run {version.run_id} registered it from the same data, parameters and "
        "code; no new version was made"
    )


@task(cache_policy=NO_CACHE, **IO_RETRIES)
def link_runs(
    model_name: str, version: str, run_id: str, verdict: Verdict, metrics: dict, reused: bool, card: str
) -> None:
    """Each side names the other: the MLflow run and version name the Prefect run (tags, and a link on top of the
    run's description); the version's description (and the run's note) is its model card. The Prefect side's
    links are artifacts of the flow run (tasks/run_page.py)."""
    gate = verdict.outcome
    run_tags = {"model_version": version, "gate": gate, "reused_version": reused}
    note = tracking.prefect_link_line() + card  # the run page's description, Markdown: the link is clickable
    tracking.set_tags(run_id, run_tags | {"mlflow.note.content": note})
    tracking.rename_run(run_id, f"train-{model_name}-v{version}{' (reused)' if reused else ''}")
    registry.describe_version(model_name, version, card)
    registry.set_version_tags(model_name, version, tracking.prefect_tags())


@task(cache_policy=NO_CACHE, **IO_RETRIES)
def model_card(facts: dict, verdict: Verdict, metrics: dict, run_id: str) -> str:
    """The version's model card (Markdown), logged as the run's `model_card.md`; `facts` are the flow's, the
    rest comes from what the run logged (rows of the file, teacher and its held-out metrics)."""
    run = tracking.get_run(run_id)
    logged, teacher_metrics = run.data.params, run.data.metrics
    card = ModelCard(
        **{**facts, "data_digest": logged.get(DATA_DIGEST, facts["data_digest"])},
        run_id=run_id,
        created=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        data_rows=int(logged.get("file_rows", facts["rows_used"])),
        teacher={
            "kind": run.data.tags.get("teacher_kind", logged.get("engine.teacher.kind")),
            "detectors": _listed(logged.get("engine.teacher.detectors")),
            **{k.removeprefix("teacher_"): v for k, v in teacher_metrics.items() if k.startswith("teacher_")},
        },
        metrics=metrics,
        champion_version=verdict.champion_version,
        champion_metrics=verdict.champion_metrics,
        promoted=verdict.promote,
        reasons=verdict.reasons,
        git_commit=run.data.tags.get("git_commit", ""),
    )
    text = render_model_card(card)
    tracking.log_text(run_id, text, "model_card.md")
    return text


def _listed(logged: str | None) -> list[str]:
    """A list parameter as `tracking.log_params` logged it (JSON)."""
    return json.loads(logged) if logged else []


def reference_snapshot(student: pipeline.Student, train: Table, seed: int, max_rows: int = 20_000) -> pd.DataFrame:
    """Training rows as the model saw them (features, score, flag): the reference for drift monitoring."""
    rows = train.take(np.sort(np.random.default_rng(seed).permutation(len(train))[:max_rows]))
    snapshot = pd.concat([rows.scoring_frame(), student.predict(rows.scoring_frame())], axis=1)
    return snapshot if rows.labels is None else snapshot.assign(**{REFERENCE_LABEL: label_cells(rows.labels)})


def label_cells(labels: np.ndarray) -> pd.arrays.IntegerArray:
    """Labels as a file holds them: 0, 1, or an empty cell for a row nobody reviewed."""
    return pd.array(np.where(labels == UNLABELLED, None, labels), dtype="Int8")


@task(cache_policy=NO_CACHE, **IO_RETRIES)
def register(
    student,
    example: pd.DataFrame,
    reference: pd.DataFrame,
    model_name: str,
    run_id: str,
    verdict: Verdict,
    contract: AnyContract,
    training_key: str,
):
    """Logs the pyfunc (+ ONNX, contract, reference snapshot) in the student run; registers it as `challenger`.

    `example` is what the model scores (rows, or a short history for a series model); `reference` the training
    data as the model saw it, for drift monitoring. Idempotent: a re-run with the same training key (e.g. after
    a server outage) reuses the version it made."""
    check_contract_fits(student, contract)
    existing = registry.version_by_training_key(model_name, training_key)
    if existing is not None:
        print(f"version {existing.version} was already registered from the same data, parameters and code: reused")
        return existing
    with tempfile.TemporaryDirectory() as tmp:
        detector_file = save_detector(student, Path(tmp) / "detector.pt")
        if student.onnx_name:
            tracking.log_file(run_id, student.export_onnx(Path(tmp) / student.onnx_name), "onnx")
        contract_file = Path(tmp) / CONTRACT_FILE
        contract_file.write_text(contract_json(contract))
        tracking.log_file(run_id, contract_file)
        reference.to_parquet(Path(tmp) / REFERENCE_FILE)
        tracking.log_file(run_id, Path(tmp) / REFERENCE_FILE)
        info = tracking.log_detector_model(
            run_id,
            (detector_file, contract_file),
            input_columns(contract),
            (example, student.predict(example)),
            student.threshold,
            logged_model_name(model_name, student.kind),
        )
    tags = {
        "gate": verdict.outcome,
        "gate_reasons": "\n".join(verdict.reasons),
        registry.TRAINING_KEY_TAG: training_key,
    }
    return registry.register(info.model_uri, info.model_id, model_name, run_id, tags)


def input_columns(contract) -> list[str]:
    """What the registered model reads: the features (and segment), the timestamp and values, or an image."""
    return contract.schema_columns


def logged_model_name(model_name: str, kind: str) -> str:
    """The Logged Model's name in MLflow's Models tab: whose student, of which kind (not `model` for all)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", f"{model_name}-{kind}-student")


@task(cache_policy=NO_CACHE)
def refresh_promote_form(model_name: str) -> None:
    """Cosmetic (the promote form's version list): a failure is logged, never fails the run."""
    try:
        registry.refresh_version_choices(model_name)
    except Exception as error:  # noqa: BLE001 - any failure here must not undo a registered, gated version
        print(f"warning: the promote form's version list was not refreshed: {error}")


MODEL_LIBRARIES = ("torch", "numpy", "pandas", "scipy", "scikit-learn", "pyod")  # their versions shape a model


SOURCE_PACKAGES = ("anomaly_distill", "tasks", "flows")


def training_key(digest: str, params_json: str, labels_path: str | None = None) -> str:
    """Same key, same model: data, parameters, the label file's content, the code as it is (committed or not,
    in a checkout or installed) and the versions of the libraries that compute the model."""
    labels = file_digest(labels_path) if labels_path else None
    return digest_of("model", digest, params_json, labels, code_digest(), library_versions())


def code_digest(root: Path | None = None) -> str:
    root = root or Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for package in SOURCE_PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            digest.update(path.relative_to(root).as_posix().encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def library_versions() -> str:
    return ",".join(f"{name}=={version(name)}" for name in MODEL_LIBRARIES)


def file_digest(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]
