"""training-pipeline: validate → teacher → soft labels → student → evaluate → gate → register → promote."""

import time
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Literal

import numpy as np
import pandas as pd
from prefect import flow, get_run_logger
from prefect.states import Completed
from pydantic import ConfigDict, Field, field_validator, model_validator

from anomaly_distill import pipeline, series_pipeline
from anomaly_distill.compress import compression_summary, hidden_widths
from anomaly_distill.config import EngineConfig, GateConfig, ImageConfig, OptionalText, SeriesConfig, StrictModel
from anomaly_distill.data import DataError, Table, table_from_frame
from anomaly_distill.timeseries import chronological_split
from flows.image_training import distill_images, prepare_images
from flows.runners import RunnerKind, with_runner
from flows.stages import Distilled, Prepared
from stores.live_store import live_store_url
from tasks import common, drift, evaluation, fitting, gating, inputs, registration, run_page, tracking
from tasks import online_series as online
from tasks import series as ts
from tasks.drift import LABEL
from tasks.live_rows import live_rows


class TabularInput(StrictModel):
    model_config = ConfigDict(title="Tabular")

    kind: Literal["tabular"] = Field("tabular", description="One row per event; every column but the label a feature.")


class SeriesInput(StrictModel):
    model_config = ConfigDict(title="Time series")

    kind: Literal["timeseries"] = Field("timeseries", description="A timestamp column plus value columns.")
    timestamp_column: str = Field("timestamp", description="The timestamp column.")
    labels_path: OptionalText = Field(
        None, description="NAB-style label-window JSON (evaluation and teacher choice); empty: none."
    )
    series: SeriesConfig = Field(default_factory=SeriesConfig, description="Windows and splits.")


# Where the files are or how the run is spread does not change the model (the label file's content does, apart)
KEY_EXCLUDES = {
    "task_runner": True,
    "dask_address": True,
    "data_path": True,
    "live_store": True,
    "modality": {"labels_path"},
}
SERIES_KEYS = ("timestamp_column", "labels_path", "series")
TABLE_ONLY = ("segment_column", "min_segment_rows", "holdout_column", "live_window", "live_store")
NOT_APPLIED = {  # settings a modality's runs never read: not logged as their parameters
    "timeseries": TABLE_ONLY + ("max_rows_in_memory", "check_ranges"),
    "image": TABLE_ONLY
    + ("engine", "label_column", "max_rows_in_memory", "check_ranges", "task_runner", "dask_address"),
}  # top-level keys before they moved under `modality`


class ImageInput(StrictModel):
    model_config = ConfigDict(title="Images")

    kind: Literal["image"] = Field(
        "image", description="A folder (good/ = normal, other subfolders = defects) or a CSV manifest path,label."
    )
    # The default is written into the schema too: the Prefect form picks the branch a value shares most keys with,
    # and a bare {"kind": "image"} would be shown (and kept) as Tabular.
    image: ImageConfig = Field(
        default_factory=ImageConfig,
        description="Image size, teacher, student.",
        json_schema_extra=lambda schema: schema.update(default=ImageConfig().model_dump(mode="json")),
    )


class TrainingParameters(StrictModel):
    data_path: str = Field("data/demo/thyroid.csv", description="CSV, Parquet or .npz file with the training table.")
    label_column: OptionalText = Field(
        "label", description="Column with 1 = anomaly, 0 = normal. Leave empty for unlabelled data."
    )
    model_name: str = Field("anomaly-detector", description="Registered model name in the MLflow registry.")
    experiment: str = Field("anomaly-distill", description="MLflow experiment for the runs.")
    engine: EngineConfig = Field(
        default_factory=EngineConfig,
        description="The distillation engine: teacher, student, loss, seed, "
        "contamination (the same settings `anomaly-distill benchmark --config` takes).",
    )
    gate: GateConfig = Field(default_factory=GateConfig, description="Promotion gate thresholds.")
    task_runner: RunnerKind = Field(
        "threads", description="threads: this machine; dask: teacher ensemble members spread over a Dask cluster."
    )
    dask_address: OptionalText = Field(None, description="Dask scheduler (tcp://host:8786); empty: a local cluster.")
    segment_column: OptionalText = Field(
        None, description="Train one student per value of this column (merchant, machine, …); empty: one model."
    )
    min_segment_rows: int = Field(
        500, ge=20, description="Segments with fewer training rows are scored by the model trained on all rows."
    )
    modality: TabularInput | SeriesInput | ImageInput = Field(
        default_factory=TabularInput,
        description="Tabular rows, or a time series (a timestamp column plus value columns, scored by sliding "
        "windows) with its settings.",
    )
    holdout_column: OptionalText = Field(
        None,
        description="Rows with 1 in this column are the only candidates for the held-out rows (the rest always "
        "train). Drift retraining marks the live rows: the gate never scores the champion on its training rows.",
    )
    check_ranges: bool = Field(
        True, description="Check value ranges against the champion's data contract (drift retraining turns it off)."
    )
    max_rows_in_memory: int = Field(
        500_000,
        ge=1_000,
        description="A file with more rows streams past once (whole-file checks for missing, infinite and text "
        "cells, and its digest), and a uniform random sample of this many rows trains and evaluates.",
    )
    live_window: OptionalText = Field(
        None,
        description="Also train on this model's live rows of this far back (7d, 12h) with the labels people gave "
        "through feedback (the rest not reviewed); the gate's held-out rows come from them, range checks are off. "
        "The nightly deployment sets it. Empty: the file alone. Tabular models.",
    )
    live_store: OptionalText = Field(
        None, description="Live store URL for live_window (default: $ANOMALY_DISTILL_LIVE_STORE or ./live-store)."
    )

    @model_validator(mode="before")
    @classmethod
    def _flat_modality(cls, data):
        """Still accepted: `modality: timeseries` with `timestamp_column`, `labels_path`, `series` beside it."""
        if not isinstance(data, dict) or not (isinstance(data.get("modality"), str) or set(SERIES_KEYS) & set(data)):
            return data
        flat = {key: data[key] for key in SERIES_KEYS if key in data}
        kind = data.get("modality", "tabular")
        if not isinstance(kind, str) or (kind == "tabular" and flat):
            raise ValueError(f"{', '.join(flat)}: time-series settings; they need `modality: timeseries`")
        rest = {key: value for key, value in data.items() if key not in SERIES_KEYS}
        return {**rest, "modality": {"kind": kind, **flat}}

    @field_validator("live_window")
    @classmethod
    def _window_is_a_duration(cls, value: str | None) -> str | None:
        if value is not None and not _positive_duration(value):
            raise ValueError(f"{value!r} is not a positive duration such as 7d, 12h or 30min")
        return value

    @model_validator(mode="after")
    def _live_rows_are_tabular(self):
        if self.live_window and (self.modality.kind != "tabular" or self.holdout_column):
            raise ValueError(
                "live_window: live rows join a tabular training table, and they are its held-out rows "
                "(not with a time series, images or a holdout_column)"
            )
        return self

    @model_validator(mode="after")
    def _compression_is_tabular(self):
        if self.series_input and self.engine.student.compress != "none":
            raise ValueError("engine.student.compress: compression is available for tabular models, not time series")
        return self

    @model_validator(mode="after")
    def _one_home_per_setting(self):
        """An engine setting this run would not read is refused, not silently dropped: images and online series
        have their own settings; a frozen series takes some engine settings from its series settings."""
        changed = _changed_engine_settings(self.engine)
        if self.image_input or (self.series_input and self.series_input.series.mode == "online"):
            where = "image" if self.image_input else "series.online"
            unused = {path: f"{self.modality.kind} runs read their own settings ({where})" for path in changed}
        elif self.series_input:
            owner = dict(series_pipeline.SERIES_OWNS)
            unused = {path: f"a series takes it from series.{owner[path]}" for path in changed if path in owner}
        else:
            unused = {}
        if unused:
            listed = "; ".join(f"engine.{path}: {why}" for path, why in sorted(unused.items()))
            raise ValueError(f"settings this run would not use (remove them or set their own): {listed}")
        return self

    def applied_settings(self) -> dict:
        """The settings this run's modality uses, as the run's MLflow parameters (an image run has no engine)."""
        unused = set(NOT_APPLIED.get(self.modality.kind, ()))
        if self.series_input and self.series_input.series.mode == "online":
            unused |= {"engine", "task_runner", "dask_address"}  # the online detector has its own settings
        return self.model_dump(exclude=unused)

    @property
    def series_input(self) -> "SeriesInput | None":
        return self.modality if isinstance(self.modality, SeriesInput) else None

    @property
    def image_input(self) -> "ImageInput | None":
        return self.modality if isinstance(self.modality, ImageInput) else None


def _changed_engine_settings(engine: EngineConfig) -> list[str]:
    """Dotted paths of the engine settings that differ from their defaults."""

    def leaves(value, prefix=""):
        if isinstance(value, dict):
            return {k: v for key, item in value.items() for k, v in leaves(item, f"{prefix}{key}.").items()}
        return {prefix.rstrip("."): value}

    given, default = leaves(engine.model_dump(mode="json")), leaves(EngineConfig().model_dump(mode="json"))
    return [path for path, value in given.items() if default.get(path) != value]


def _positive_duration(value: str) -> bool:
    try:
        return pd.Timedelta(value) > pd.Timedelta(0)
    except ValueError:
        return False


class Stopwatch(dict):
    @contextmanager
    def __call__(self, stage: str):
        start = time.perf_counter()
        yield
        self[stage] = time.perf_counter() - start


@dataclass
class TrainingOutcome:
    model_name: str
    version: str
    promoted: bool
    reasons: list[str]
    metrics: dict
    run_id: str
    previous_champion: str | None = None
    teacher_from_cache: bool = False
    seconds: dict | None = None  # wall time of the compute stages (the rest is orchestration and tracking)
    reused_version: bool = False  # same training key as an earlier run: its version, not a new one


@flow(name="training-pipeline", log_prints=True)
def training_pipeline(params: TrainingParameters = TrainingParameters()) -> dict:
    tags = {"git_commit": tracking.git_commit(), "seed": params.engine.seed, "model_name": params.model_name}
    clock = Stopwatch()
    started_at = datetime.now(timezone.utc)  # a person's later decision outranks this run's
    run_id = tracking.start_run(params.experiment, f"train-{params.model_name}", tags=tags)
    runs = [run_id]
    try:
        tracking.log_params(run_id, params.applied_settings())
        tracking.log_json(run_id, params.model_dump(), "config.json")  # all of them: the run can be repeated
        if params.image_input:
            prepared = prepare_images(params, run_id)
            done = distill_images(params, prepared, run_id, runs, clock)
        elif params.series_input and params.series_input.series.mode == "online":
            frame = _load(params, run_id)
            prepared, done = _online_series(params, frame, run_id, runs, clock)
        else:
            frame = _load(params, run_id)
            if params.live_window:
                frame, params = _with_live_rows(params, frame, run_id)
            prepare = _prepare_series if params.series_input else _prepare_table
            prepared = prepare(params, frame, run_id)
            done = _distill(params, prepared, run_id, runs, clock)
        verdict = gating.gate(done.metrics, params.model_name, prepared.gate_rows, params.gate, done.student)
        key = registration.training_key(
            prepared.digest,
            params.model_dump_json(exclude=KEY_EXCLUDES),
            params.series_input and params.series_input.labels_path,
        )
        version = registration.register(
            done.student,
            prepared.example(done.student),
            prepared.reference(done.student),
            params.model_name,
            run_id,
            verdict,
            prepared.contract,
            key,
        )
        reused = version.run_id != run_id
        if reused:
            verdict.reasons.insert(0, registration.reuse_note(version))
        version = str(version.version)
        registration.refresh_promote_form(params.model_name)
        previous, verdict = gating.promote(
            params.model_name, version, verdict, done.metrics, prepared.gate_rows, params.gate, started_at, done.student
        )
        card = registration.model_card(
            _card_facts(params, prepared, version, done.student), verdict, done.metrics, run_id
        )
        registration.link_runs(params.model_name, version, run_id, verdict, done.metrics, reused, card)
        verdict_line = run_page.publish(params.model_name, version, run_id, verdict, done.metrics, reused)
        common.record_run(run_id, metrics={f"seconds_{stage}": s for stage, s in clock.items()})
    except BaseException:
        for run in runs:
            with suppress(Exception):  # best effort: the tracking server may be the thing that is down
                tracking.end_run(run, "FAILED")
        raise
    for run in runs:
        tracking.end_run(run)
    outcome = asdict(
        TrainingOutcome(
            params.model_name,
            version,
            verdict.promote,
            verdict.reasons,
            done.metrics,
            run_id,
            previous,
            done.teacher_cached,
            dict(clock),
            reused,
        )
    )
    get_run_logger().info(verdict_line)  # the run's last line, and its state message
    return Completed(message=verdict_line, data=outcome)


def _card_facts(params: TrainingParameters, prepared: Prepared, version: str, student) -> dict:
    """What the model card needs from this flow (the rest it reads from the run)."""
    rows = len(prepared.train) + len(prepared.test) + (0 if prepared.validation is None else len(prepared.validation))
    engine = params.engine
    image = params.image_input and params.image_input.image
    student_facts = (
        {"hidden": image.student_widths, "distill": image.model_dump(mode="json")}
        if image
        else {"hidden": _hidden_widths(student, engine), "distill": engine.distill.model_dump(mode="json")}
    )
    return {
        "model_name": params.model_name,
        "version": version,
        "modality": params.modality.kind,
        "data_source": params.data_path,
        "data_digest": prepared.digest,
        "rows_used": rows,
        "train_rows": len(prepared.train),
        "test_rows": len(prepared.test),
        "labels": _labels_source(params),
        "contract": prepared.contract.model_dump(mode="json"),
        "student": student_facts,
        "contamination": image.contamination if image else engine.contamination,
        "compression": compression_summary(engine.student.compress, student),
    }


def _labels_source(params: TrainingParameters) -> str | None:
    windows = params.series_input and params.series_input.labels_path
    if windows:
        return f"label windows from `{windows}`"
    if params.image_input:
        return "folders: good/ normal, the others defects (evaluation only: training sees normal images)"
    return params.label_column and f"column `{params.label_column}`"


def _hidden_widths(student, engine) -> list[int]:
    """The registered student's (pruning narrows it); a per-segment or series model: the configured widths."""
    net = getattr(getattr(student, "model", None), "net", None)
    return hidden_widths(net) if net is not None else engine.student.hidden


def _load(params: TrainingParameters, run_id: str) -> pd.DataFrame:
    """A series is read whole (its order is the data); a table may be a sample of a file larger than memory."""
    if params.series_input:
        return inputs.load_data(params.data_path)
    sampling = params.max_rows_in_memory, params.engine.seed, run_id, (params.segment_column,)
    return inputs.load_training_rows(params.data_path, *sampling)


def _with_live_rows(params: TrainingParameters, frame: pd.DataFrame, run_id: str):
    """The file's rows + this model's live rows of the last `live_window`, each with the label it has (the live
    rows' from feedback; an empty cell, not reviewed, for the rest), as the drift retrain builds its table: the
    gate's held-out rows are drawn from the live rows, range checks are off. No live rows yet: the file alone."""
    url, window = live_store_url(params.live_store), params.live_window
    live, labels = live_rows(url, params.model_name, window)
    if live.empty:
        print(
            f"no live rows of {params.model_name} in the last {window} in the live store at {url}: "
            f"training on {params.data_path} alone"
        )
        common.record_run(run_id, params={"live_rows": 0})
        return frame, params
    table, label_column = _file_and_live(frame, live, labels, params.label_column)
    given = int(labels.notna().sum())
    print(
        f"training on {len(frame):,} rows of {params.data_path} + {len(live):,} live rows of the last {window} "
        f"({given:,} labelled through feedback, {int((labels == 1).sum()):,} of them anomalies; the rest not "
        "reviewed); the held-out rows come from the live rows; range checks off"
    )
    common.record_run(run_id, params={"live_rows": len(live), "live_labelled_rows": given})
    update = {"label_column": label_column, "holdout_column": drift.LIVE_ROW, "check_ranges": False}
    return table, params.model_copy(update=update)


def _file_and_live(frame: pd.DataFrame, live: pd.DataFrame, labels: pd.Series, label_column: str | None):
    """(the table, its label column or None): `drift.retraining_table` with the file's rows as the reference."""
    features = [c for c in frame.columns if c != label_column]
    if label_column and label_column not in frame.columns:
        raise DataError(f"label column {label_column!r} not found; columns are {list(frame.columns)}")
    if LABEL in features:
        raise DataError(
            f"live_window: the file has a column {LABEL!r} but no label column is set (label_column, "
            f"deploy --label-column): set it, or rename that feature"
        )
    missing = [c for c in features if c not in live.columns]
    if missing:
        raise DataError(f"the live rows lack the file's columns {missing}: were they scored by another model?")
    reference = frame.rename(columns={label_column: LABEL}) if label_column else frame
    table = drift.retraining_table(reference, live, features, labels)
    if LABEL not in table:
        return table, None
    return table.rename(columns={LABEL: label_column or LABEL}), label_column or LABEL


def _prepare_table(params: TrainingParameters, frame: pd.DataFrame, run_id: str) -> Prepared:
    candidates = None
    if params.holdout_column:
        if params.holdout_column not in frame.columns:
            raise DataError(f"holdout column {params.holdout_column!r} not found; columns are {list(frame.columns)}")
        candidates = frame[params.holdout_column].to_numpy() == 1
        frame = frame.drop(columns=[params.holdout_column])
    segment = params.segment_column
    features = frame.drop(columns=[segment], errors="ignore") if segment else frame
    contract = inputs.validate_data(
        features,
        params.label_column,
        inputs.reference_contract(params.model_name),
        run_id,
        params.check_ranges,
        segment,
    )
    digest = inputs.log_training_data(run_id, frame, params.data_path, params.label_column, segment)
    if candidates is not None:  # another hold-out is another split: neither teacher nor version may be reused
        digest = common.digest_of(digest, "holdout", common.digest_of(np.flatnonzero(candidates).tolist()))
    train, test = pipeline.split(table_from_frame(frame, params.label_column, segment), params.engine, candidates)
    return Prepared(
        contract,
        digest,
        train,
        test,
        {params.engine.teacher.kind: params.engine},
        lambda s: s,
        test,
        example=lambda _: test.scoring_frame().head(5),
        reference=lambda detector: registration.reference_snapshot(detector, train, 0),
    )


def _prepare_series(params: TrainingParameters, frame: pd.DataFrame, run_id: str) -> Prepared:
    """The series as window rows; teachers are picked on the validation period, evaluated on the test period."""
    ts_column, config = params.series_input.timestamp_column, params.series_input.series
    label_column = params.label_column if params.label_column in frame.columns else None
    values = [c for c in frame.columns if c not in (ts_column, label_column)]
    contract = ts.validate_series(frame, config, ts_column, values, run_id)
    labels = ts.series_labels(frame, ts_column, label_column, params.series_input.labels_path, params.data_path)
    data = ts.window_rows(frame, config, ts_column, values, labels)
    kinds = ["ensemble", "conv_autoencoder"] if config.teacher == "auto" else [config.teacher]
    candidates = {kind: series_pipeline.engine_for(data.series, config, params.engine, kind) for kind in kinds}
    test = data.part(data.test)
    return Prepared(
        contract,
        ts.series_digest(contract.digest, config),
        Table(data.part(data.train).features),
        test,
        candidates,
        wrap=lambda student: series_pipeline.SeriesStudent(student, data.normaliser, config.window, ts_column, values),
        gate_rows=ts.gate_rows(frame, data, ts_column),
        validation=data.part(data.validation),
        example=lambda _: ts.history(frame, data, config.window, data.test).head(config.window + 4)[
            [ts_column, *values]
        ],
        reference=lambda detector: ts.reference(frame, data, detector),
        test_stamps=ts.test_stamps(data),
    )


def _online_series(
    params: TrainingParameters, frame: pd.DataFrame, run_id: str, runs: list, clock: Stopwatch
) -> tuple[Prepared, Distilled]:
    """The online detector warmed on the whole series; measured prequentially on the test period (each point
    scored before it was learnt from), which is also what the champion is scored on."""
    ts_column, config = params.series_input.timestamp_column, params.series_input.series
    label_column = params.label_column if params.label_column in frame.columns else None
    values = [c for c in frame.columns if c not in (ts_column, label_column)]
    contract = ts.validate_series(frame, config, ts_column, values, run_id)
    labels = ts.series_labels(frame, ts_column, label_column, params.series_input.labels_path, params.data_path)
    train_end, test_start = chronological_split(len(frame), config)
    test = np.arange(len(frame)) >= test_start
    (student_run,) = common.start_child_runs(run_id, "student")
    runs.append(student_run)
    with clock("warm_online"):
        model, student, teacher, refresh_seconds = online.warm_online(frame, ts_column, values, config.online)
    with clock("evaluate"):
        metrics = online.online_metrics(model, frame, student, teacher, test, labels)
    online.log_online([run_id, student_run], config.online, metrics, refresh_seconds)
    common.record_run(run_id, tags={"teacher_kind": "online knn", "teacher_choice": "online mode: one teacher"})
    history = frame[[ts_column, *values]].reset_index(drop=True)
    prepared = Prepared(
        contract,
        ts.series_digest(contract.digest, config),
        Table(history.iloc[:train_end][values]),
        Table(history.iloc[test_start:][values], None if labels is None else labels[test_start:]),
        {},
        wrap=lambda detector: detector,
        gate_rows=ts.SeriesGateRows(history, test_start, ts_column, None if labels is None else labels[test_start:]),
        example=lambda _: history.tail(5),
        reference=lambda _: history.iloc[:train_end].assign(
            score=student[1][:train_end], is_anomaly=student[0][:train_end] >= model.threshold
        ),
    )
    return prepared, Distilled(model, metrics, student_run)


def _distill(params: TrainingParameters, prepared: Prepared, run_id: str, runs: list, clock: Stopwatch) -> Distilled:
    """Teacher(s) → the chosen one → soft labels → student → detector → held-out evaluation (or per segment)."""
    train = prepared.train
    teacher_run, student_run = common.start_child_runs(run_id, "teacher", "student")
    runs += [teacher_run, student_run]
    if params.segment_column:
        config = params.engine
        with clock("train_per_segment"):
            trained, student = fitting.train_per_segment(train, config, params.min_segment_rows)
        common.record_run(run_id, params={"segments": ",".join(student.members)})
        cached, kind, why = False, config.teacher.kind, "per segment"
    else:
        with clock("train_teacher"):  # submitted: the candidates run on the task runner side by side
            futures = {
                kind: fitting.train_teacher.submit(train, config, prepared.digest)
                for kind, config in prepared.candidates.items()
            }
            teachers = {kind: future.result() for kind, future in futures.items()}
            cached = all(future.state.name == "Cached" for future in futures.values())
        kind, why = series_pipeline.choose_teacher(teachers, prepared.validation)
        trained, config = teachers[kind], prepared.candidates[kind]
        fitting.log_teacher(teacher_run, trained, config, cached)
        with clock("generate_soft_labels"):
            soft_labels = fitting.generate_soft_labels(trained, train, config, prepared.digest)
        fitting.log_soft_labels(student_run, soft_labels)
        with clock("distill_student"):
            rows_student = fitting.distill_student(soft_labels, trained, train, config)
        student = prepared.wrap(rows_student)
    common.record_run(run_id, tags={"teacher_kind": kind, "teacher_choice": why})
    fitting.log_student(student_run, student, config)
    with clock("evaluate"):
        row_scorer = student if params.segment_column else rows_student
        metrics = evaluation.evaluate(
            row_scorer, trained, prepared.test, [run_id, student_run], student, prepared.test_stamps
        )
    return Distilled(student, metrics, student_run, cached)


def run_training(params: TrainingParameters) -> dict:
    return with_runner(training_pipeline, params.task_runner, params.dask_address)(params)
