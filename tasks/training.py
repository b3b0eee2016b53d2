"""Prefect tasks of the training pipeline: each calls the engine and does the I/O (MLflow, GX, artifacts)."""

import hashlib
import json
import pickle
import re
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from anomaly_distill import pipeline
from anomaly_distill.config import EngineConfig, GateConfig
from anomaly_distill.contract import SeriesContract, TabularContract, contract_json
from anomaly_distill.data import (
    UNLABELLED,
    DataError,
    Table,
    check_labels,
    frame_digest,
    read_frame,
    sample_file,
    table_from_frame,
)
from anomaly_distill.detector import save_detector, size_bytes
from anomaly_distill.gate import Verdict, absolute_checks, decide, held
from anomaly_distill.metrics import detection_metrics, event_metrics, has_both_classes, labelled_count, rows_per_second
from anomaly_distill.model_card import ModelCard, render_model_card
from anomaly_distill.segments import Segmented, segment_tables
from stores.registry import CONTRACT_FILE, REFERENCE_FILE
from tasks import plots, registry, tracking
from tasks.validation import ValidationFailed, derive_contract, validate_frame

ONNX_NAME = {"tabular": "detector.onnx", "timeseries": "detector.onnx", "image": "detector.onnx"}
ONNX_NAME["segmented"] = "detector"  # a folder: one graph per segment
DATA_DIGEST = "data_digest"  # one digest of the data: card, parameter and MLflow dataset
REFERENCE_LABEL = "label"  # the true label in the reference snapshot, when training had labels


def _outage(task, task_run, state) -> bool:
    """Retry when a server did not answer; bad data or a missing version fails at once."""
    return not isinstance(state.result(raise_on_failure=False), (DataError, LookupError))


# Tracking/registry I/O is retried (a server restarting); the compute tasks are cached instead.
IO_RETRIES = {"retries": 2, "retry_delay_seconds": 3, "retry_condition_fn": _outage}


def digest_of(*parts) -> str:
    return hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()[:24]


def _teacher_key(config: EngineConfig, digest: str) -> str:
    return digest_of(
        "teacher",
        digest,
        config.seed,
        config.test_fraction,
        config.contamination,
        config.student.squash,
        config.teacher.model_dump_json(),
    )


@task(cache_policy=NO_CACHE)
def load_data(path: str) -> pd.DataFrame:
    return read_frame(path)


@task(cache_policy=NO_CACHE)
def load_training_rows(path: str, max_rows: int, seed: int, run_id: str, text_columns: tuple) -> pd.DataFrame:
    """The training table, or a uniform sample of `max_rows` rows when the file has more (streamed, so memory holds
    the sample): missing, infinite or text cells anywhere in a sampled file fail here, before any training."""
    if Path(path).suffix.lower() not in (".csv", ".parquet", ".pq"):
        return read_frame(path)
    frame, profile = sample_file(path, max_rows, seed)
    tracking.log_params(run_id, {"file_rows": profile.rows, "rows_sampled": len(frame)})
    frame.attrs[DATA_DIGEST] = profile.digest  # the whole file's, read by log_training_data
    problems = profile.problems(skip=text_columns) if profile.sampled < profile.rows else []
    if problems:
        tracking.set_tags(run_id, {"validation": "failed"})
        raise ValidationFailed([f"whole file ({profile.rows:,} rows): {problem}" for problem in problems])
    return frame


@task(cache_policy=NO_CACHE, **IO_RETRIES)
def reference_contract(model_name: str) -> TabularContract | SeriesContract | None:
    """The data contract saved with the current champion, or None on a first run."""
    champion = registry.version_by_alias(model_name, registry.CHAMPION)
    return None if champion is None else registry.load_contract(champion.run_id)


@task(cache_policy=NO_CACHE, **IO_RETRIES)
def validate_data(
    frame: pd.DataFrame,
    label_column: str | None,
    contract: TabularContract | None,
    run_id: str,
    check_ranges: bool = True,
    segment_column: str | None = None,
) -> TabularContract:
    """Great Expectations gate; raises ValidationFailed (listing every failed expectation) before any training.

    Returns the contract of the new model: derived from its own training data.
    """
    if isinstance(contract, SeriesContract):
        raise ValidationFailed(
            [
                f"the champion is a time-series model (columns {contract.input_columns}); "
                "train a table under another model name"
            ]
        )
    report = validate_frame(frame, label_column, contract, check_ranges)
    tracking.log_json(run_id, report.result, "ge_result.json", "validation")
    create_markdown_artifact(report.markdown(), key="data-validation", description="Great Expectations result")
    if not report.success:
        tracking.set_tags(run_id, {"validation": "failed"})
        raise ValidationFailed(report.failures)
    return derive_contract(frame, label_column, segment_column)


@task(cache_policy=NO_CACHE, **IO_RETRIES)
def log_training_data(
    run_id: str, frame: pd.DataFrame, source: str, label_column: str | None, segment_column: str | None = None
) -> str:
    """The data's one digest (the whole file's when it was streamed, else the rows') as the MLflow dataset's digest
    and the `data_digest` parameter the model card shows; returns the digest of the rows and labels trained on,
    part of the teacher's cache key."""
    table = table_from_frame(frame, label_column, segment_column)
    rows_digest = frame_digest(table.scoring_frame(), table.labels)
    shown = frame.attrs.get(DATA_DIGEST) or rows_digest
    tracking.log_dataset(run_id, frame, source, label_column, shown)
    tracking.log_params(run_id, {DATA_DIGEST: shown})
    return rows_digest


@task(cache_key_fn=lambda ctx, p: _teacher_key(p["config"], p["digest"]), persist_result=True)
def train_teacher(train: Table, config: EngineConfig, digest: str) -> pipeline.TrainedTeacher:
    return pipeline.train_teacher(train, config, cluster_map())


def cluster_map():
    """On a Dask worker (flow run with the Dask task runner), fan the ensemble members out over the cluster."""
    try:
        from distributed import get_worker, worker_client

        get_worker()
    except (ImportError, ValueError):
        return map

    def dask_map(fn, items):
        with worker_client() as dask:
            return dask.gather(dask.map(fn, list(items), pure=False))

    return dask_map


@task(cache_key_fn=lambda ctx, p: digest_of("segment", _teacher_key(p["config"], p["digest"])), persist_result=True)
def train_segment(train: Table, config: EngineConfig, digest: str) -> tuple[pipeline.TrainedTeacher, pipeline.Student]:
    return pipeline.train_segment(train, config, cluster_map())


def train_per_segment(train: Table, config: EngineConfig, min_rows: int) -> tuple[Segmented, Segmented]:
    """One teacher + student per segment, submitted together: they run in parallel on the task runner (Dask)."""
    tables = segment_tables(train, min_rows)
    futures = {
        name: train_segment.submit(table, config, frame_digest(table.scoring_frame(), table.labels))
        for name, table in tables.items()
    }
    results = {name: future.result() for name, future in futures.items()}
    column = train.segments.name
    return (
        Segmented(column, {name: pair[0] for name, pair in results.items()}),
        Segmented(column, {name: pair[1] for name, pair in results.items()}),
    )


@task(
    cache_key_fn=lambda ctx, p: digest_of(
        _teacher_key(p["config"], p["digest"]), p["config"].distill.model_dump_json()
    ),
    persist_result=True,
)
def generate_soft_labels(
    trained: pipeline.TrainedTeacher, train: Table, config: EngineConfig, digest: str
) -> pd.DataFrame:
    return pipeline.generate_soft_labels(trained, train, config)


@task(cache_policy=NO_CACHE, **IO_RETRIES)
def record_run(run_id: str, params: dict | None = None, tags: dict | None = None, metrics: dict | None = None):
    """Params, tags or metrics the flow sets between stages: retried like every other tracking call, so a
    tracking server that restarts mid-run costs a retry, not the run."""
    if params:
        tracking.log_params(run_id, params)
    if tags:
        tracking.set_tags(run_id, tags)
    if metrics:
        tracking.log_metrics(run_id, metrics)


@task(cache_policy=NO_CACHE, **IO_RETRIES)
def log_teacher(run_id: str, trained: pipeline.TrainedTeacher, config: EngineConfig, cached: bool) -> None:
    size = len(pickle.dumps(trained))
    tracking.log_params(run_id, {"teacher": config.teacher.model_dump(), "seed": config.seed})
    tracking.log_metrics(run_id, {"params": trained.teacher.n_params, "size_bytes": size})
    tracking.set_tags(run_id, {"from_cache": cached})
    summary = {
        "kind": config.teacher.kind,
        "class": type(trained.teacher).__name__,
        "parameters": trained.teacher.n_params,
        "pickled_bytes": size,
        "threshold": trained.threshold,
        "from_cache": cached,
        "settings": config.teacher.model_dump(),
    }
    tracking.log_json(run_id, summary, "teacher.json")


@task(cache_policy=NO_CACHE, **IO_RETRIES)
def log_soft_labels(run_id: str, soft_labels: pd.DataFrame) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "soft_labels.parquet"
        soft_labels.to_parquet(path)
        tracking.log_file(run_id, path)


@task(cache_policy=NO_CACHE)
def distill_student(
    soft_labels: pd.DataFrame, trained: pipeline.TrainedTeacher, train: Table, config: EngineConfig
) -> pipeline.Student:
    return pipeline.distill_student(soft_labels, trained, train, config)


@task(cache_policy=NO_CACHE, **IO_RETRIES)
def log_student(run_id: str, student: pipeline.Student, config: EngineConfig) -> None:
    tracking.log_params(
        run_id,
        {
            "student": config.student.model_dump(),
            "distill": config.distill.model_dump(),
            "contamination": config.contamination,
            "seed": config.seed,
        },
    )
    tracking.log_history(run_id, student.history)
    tracking.log_metrics(run_id, {"threshold": student.threshold, "epochs_run": len(student.history)})
    before = getattr(student, "compressed_from", None)
    if before:
        tracking.log_metrics(run_id, {f"uncompressed_{key}": value for key, value in before.items()})


@task(cache_policy=NO_CACHE, **IO_RETRIES)
def evaluate(
    student: pipeline.Student,
    trained: pipeline.TrainedTeacher,
    test: Table,
    run_ids: list[str],
    detector=None,
    test_stamps=None,
) -> dict:
    """Held-out metrics of teacher and student (alarm events too, for a series: `test_stamps`), the detector's
    size and single-thread speed, plus plots. `student` scores the held-out rows; `detector` is what ships."""
    scores = pipeline.held_out_scores(student, trained, test)
    result = pipeline.evaluate(student, trained, test, scores)
    metrics = {**result["student"], **size_and_speed(detector or student, test.features)}
    if test_stamps is not None and has_both_classes(test.labels):
        metrics.update(event_metrics(test.labels, scores[1], test_stamps, student.threshold))
    flat = {
        k: v
        for k, v in {**metrics, **{f"teacher_{k}": v for k, v in result["teacher"].items()}}.items()
        if np.isfinite(v)
    }  # no alarm in a labelled window: no delay to log
    for run_id in run_ids:
        tracking.log_metrics(run_id, flat)
    _log_plots(run_ids[0], *scores, test.labels)
    return metrics


def size_and_speed(detector, features: pd.DataFrame) -> dict:
    """Saved size and parameter count (every member of a per-segment model) and single-thread rows/s of the
    network on its own input rows (held-out rows, tiled to 20k)."""
    rows = np.resize(features.to_numpy(dtype=np.float32), (max(len(features), 20_000), features.shape[1]))
    return {
        "size_bytes": size_bytes(detector),
        "params": detector.n_params,
        "rows_per_second": rows_per_second(detector.model.score, rows),
    }


def _log_plots(run_id: str, teacher_scores, student_scores, labels) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        files = [plots.score_plot(teacher_scores, student_scores, labels, Path(tmp))]
        if has_both_classes(labels):
            files += plots.curve_plots(labels, teacher_scores, student_scores, Path(tmp))
        for path in files:
            tracking.log_file(run_id, path, "plots")


CHAMPION_ATTEMPTS = 3  # loading/scoring the champion: transient artifact-store errors get two more tries


class ChampionUnavailable(RuntimeError):
    """The champion could not be loaded or scored: the gate cannot compare, so it does not promote."""


def version_metrics(model_name: str, version: str, rows) -> dict:
    """A registered version's AUROC and AUPRC on the gate rows (none: one class there); raises ChampionUnavailable."""
    for attempt in range(1, CHAMPION_ATTEMPTS + 1):
        try:
            scores, labels = _version_scores(model_name, registry.get_version(model_name, version), rows)
            break
        except registry.RegistryUnreachable:
            raise
        except Exception as error:
            if attempt == CHAMPION_ATTEMPTS or isinstance(error, DataError):  # refused rows: a retry cannot help
                raise ChampionUnavailable(
                    f"champion v{version} could not be loaded or scored on the gate rows "
                    f"({'after ' + str(attempt) + ' attempts, ' if attempt > 1 else ''}{type(error).__name__}: "
                    f"{str(error)[:300]})"
                ) from error
            time.sleep(2 * attempt)
    return {"version": str(version), **ranking_metrics(labels, scores)}


def ranking_metrics(labels, scores) -> dict:
    """AUROC and AUPRC on the labelled rows; none when they do not hold both classes."""
    if not has_both_classes(labels):
        return {}
    metrics = detection_metrics(labels, scores, float("inf"))
    return {"auroc": metrics["auroc"], "auprc": metrics["auprc"]}


def _version_scores(model_name: str, version, rows) -> tuple[np.ndarray, np.ndarray | None]:
    import mlflow.pyfunc

    # Not the alias: it may move. No requirement check: scanning every installed package's metadata takes ~0.4 s,
    # and a champion that cannot load or score here fails the gate closed anyway.
    model = mlflow.pyfunc.load_model(f"models:/{model_name}/{version.version}", suppress_warnings=True)
    if hasattr(rows, "champion_scores"):  # a series: scored by timestamp with the champion's own window
        return rows.champion_scores(model, registry.load_contract(version.run_id))
    return model.predict(rows.scoring_frame())["score"].to_numpy(), rows.labels


def labelled_reference(champion, rows) -> Table | str:
    """The champion's reference snapshot (its training rows) as gate rows, or why it cannot be (tables only)."""
    if not isinstance(rows, Table):
        return "comparing on the champion's reference snapshot is available for tables only"
    snapshot = tracking.load_parquet_artifact(champion.run_id, REFERENCE_FILE)
    labels = check_labels(snapshot[REFERENCE_LABEL]) if REFERENCE_LABEL in snapshot.columns else None
    if not has_both_classes(labels):
        return f"champion v{champion.version}'s reference snapshot has no labels of both classes either"
    columns = list(rows.scoring_frame().columns)
    if not set(columns) <= set(snapshot.columns):
        return f"champion v{champion.version}'s reference snapshot has other columns"
    return Table(snapshot[columns], labels)


def gate_verdict(challenger: dict, model_name: str, rows, config: GateConfig, student=None) -> Verdict:
    """Challenger against the champion and the best champion since a person's choice, on the same rows. Fails
    closed: a champion that cannot be scored means no promotion; an unreadable registry stops the run."""
    champion = registry.version_by_alias(model_name, registry.CHAMPION)  # RegistryUnreachable is not "none"
    if champion is None:
        return decide(challenger, None, config)
    evidence = "the held-out rows"
    if "auroc" not in challenger and config.unlabelled != "fidelity_only":
        if config.unlabelled == "hold":
            return held(challenger, config, str(champion.version), "no labels in this run (gate.unlabelled: hold)")
        reference = labelled_reference(champion, rows)
        if isinstance(reference, str):
            return held(challenger, config, str(champion.version), f"no labels in this run, and {reference}")
        challenger = {**challenger, **_candidate_metrics(student, reference)}
        rows = reference
        evidence = (
            f"champion v{champion.version}'s labelled reference snapshot ({labelled_rows(reference.labels)} of "
            "its training rows, as this run's held-out rows lack labels of both classes; the champion learnt from "
            "them, so they favour it)"
        )
    elif "auroc" in challenger and isinstance(rows, Table):
        evidence = f"the held-out rows ({labelled_rows(rows.labels)})"
    return _compared(challenger, model_name, champion, rows, config, evidence)


def _candidate_metrics(student, rows: Table) -> dict:
    return ranking_metrics(rows.labels, student.predict(rows.scoring_frame())["score"].to_numpy())


def labelled_rows(labels) -> str:
    """How many labelled rows a comparison rests on, e.g. "412 labelled of 1,130: 12 anomalies"."""
    labels = np.asarray(labels)
    return f"{labelled_count(labels):,} labelled of {len(labels):,}: {int((labels == 1).sum()):,} anomalies"


def _compared(challenger, model_name, champion, rows, config, evidence) -> Verdict:
    best = registry.best_champion(model_name)
    try:
        measured = {str(champion.version): version_metrics(model_name, str(champion.version), rows)}
        if best is not None and best not in measured:
            measured[best] = version_metrics(model_name, best, rows)
    except ChampionUnavailable as error:
        checks = [text for _, text in absolute_checks(challenger, config)]
        return Verdict(False, [*checks, f"FAIL: {error}; not promoting without the comparison"], str(champion.version))
    champion_metrics = measured[str(champion.version)]
    return decide(challenger, champion_metrics, config, measured.get(best), evidence)


@task(cache_policy=NO_CACHE, **IO_RETRIES)
def gate(challenger: dict, model_name: str, rows, config: GateConfig, student=None) -> Verdict:
    return gate_verdict(challenger, model_name, rows, config, student)


def person_decision(model_name: str, version: str, started_at: datetime) -> str | None:
    """Why a person's decision (or an earlier replacement) forbids this run's promotion, or None."""
    demoted = registry.get_version(model_name, version).tags.get(registry.DEMOTED_TAG)
    if demoted:
        return f"v{version} was {demoted}; it becomes champion again only by a person (anomaly-distill promote)"
    champion = registry.version_by_alias(model_name, registry.CHAMPION)
    is_champion = champion is not None and str(champion.version) == version
    if not is_champion and version in registry.champion_history(model_name):
        return (
            f"v{version} was champion before and was replaced; a run never brings back an earlier champion "
            "(a person can: anomaly-distill promote)"
        )
    by, when = registry.last_move(model_name)
    if by == registry.PERSON and when is not None and when > started_at:
        return (
            f"a person moved the champion at {when:%Y-%m-%d %H:%M:%S} UTC, after this run started "
            f"({started_at:%H:%M:%S} UTC); a run does not overturn a later decision of a person"
        )
    return None


@task(cache_policy=NO_CACHE, **IO_RETRIES)
def promote(
    model_name: str,
    version: str,
    verdict: Verdict,
    challenger: dict,
    rows,
    config: GateConfig,
    started_at: datetime,
    student=None,
) -> tuple[str | None, Verdict]:
    """Gate-then-promote, atomic with respect to the champion: under the champion lock, a champion that moved
    since the gate is gated against again, and a person's decision (a demotion, a later promotion) stands.
    Returns (previous champion if it moved, the final verdict), which is published and tagged on the version."""
    previous = None
    if verdict.promote:
        with registry.champion_lock(model_name):
            verdict, previous = _promote_locked(
                model_name, version, verdict, challenger, rows, config, started_at, student
            )
    registry.set_version_tags(
        model_name, version, {"gate": verdict.outcome, "gate_reasons": "\n".join(verdict.reasons)}
    )  # a reused version gets this run's verdict
    return previous, verdict


def _promote_locked(model_name, version, verdict, challenger, rows, config, started_at, student):
    registry.notice_outside_moves(model_name)
    refusal = person_decision(model_name, version, started_at)
    if refusal:
        return verdict.refused(refusal), None
    current = registry.version_by_alias(model_name, registry.CHAMPION)
    current = None if current is None else str(current.version)
    if current != verdict.champion_version:
        moved = f"note: the champion moved from v{verdict.champion_version} to v{current} during this run; gated again"
        verdict = gate_verdict(challenger, model_name, rows, config, student)
        verdict.reasons.append(moved)
        if not verdict.promote:
            return verdict, None
    reason = "gate passed: " + "; ".join(verdict.reasons)
    return verdict, registry.move_champion(model_name, version, reason, registry.PIPELINE, verdict.new_best)


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
    contract: dict,
    training_key: str,
):
    """Logs the pyfunc (+ ONNX, contract, reference snapshot) in the student run; registers it as `challenger`.

    `example` is what the model scores (rows, or a short history for a series model); `reference` the training
    data as the model saw it, for drift monitoring. Idempotent: a re-run with the same training key (e.g. after
    a server outage) reuses the version it made."""
    existing = registry.version_by_training_key(model_name, training_key)
    if existing is not None:
        print(f"version {existing.version} was already registered from the same data, parameters and code: reused")
        return existing
    with tempfile.TemporaryDirectory() as tmp:
        detector_file = save_detector(student, Path(tmp) / "detector.pt")
        if student.kind in ONNX_NAME:  # an online series model has no fixed graph (it learns as it scores)
            tracking.log_file(run_id, student.export_onnx(Path(tmp) / ONNX_NAME[student.kind]), "onnx")
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
    return ["path", "image"] if contract.kind == "image" else contract.input_columns  # an image: file path or bytes


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
    from importlib.metadata import version

    return ",".join(f"{name}=={version(name)}" for name in MODEL_LIBRARIES)


def file_digest(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]
