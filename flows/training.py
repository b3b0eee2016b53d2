"""training-pipeline: validate → teacher → soft labels → student → evaluate → gate → register → promote."""

from contextlib import suppress
from dataclasses import asdict, dataclass
from datetime import datetime, timezone

import pandas as pd
from prefect import flow, get_run_logger
from prefect.states import Completed
from pydantic import Field, field_validator, model_validator

from anomaly_distill.compress import compression_summary
from anomaly_distill.config import EngineConfig, GateConfig, OptionalText, StrictModel
from flows.image_training import ImageInput
from flows.runners import RunnerKind, with_runner
from flows.series_training import SeriesInput
from flows.stages import Prepared, Stopwatch, changed_engine_settings
from flows.tabular_training import TabularInput
from tasks import common, gating, registration, run_page, tracking

# Where the files are or how the run is spread does not change the model (the label file's content does, apart)
KEY_EXCLUDES = {
    "task_runner": True,
    "dask_address": True,
    "data_path": True,
    "live_store": True,
    "modality": {"labels_path"},
}
SERIES_KEYS = ("timestamp_column", "labels_path", "series")


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
        if self.live_window and (not self.modality.takes_live_rows or self.holdout_column):
            raise ValueError(
                "live_window: live rows join a tabular training table, and they are its held-out rows "
                "(not with a time series, images or a holdout_column)"
            )
        return self

    @model_validator(mode="after")
    def _compression_is_tabular(self):
        if not self.modality.compresses and self.engine.student.compress != "none":
            kind = type(self.modality).model_config["title"].lower()
            raise ValueError(f"engine.student.compress: compression is available for tabular models, not {kind}")
        return self

    @model_validator(mode="after")
    def _one_home_per_setting(self):
        """An engine setting this run would not read is refused, not silently dropped: images and online series
        have their own settings; a frozen series takes some engine settings from its series settings."""
        unused = self.modality.unused_engine_settings(changed_engine_settings(self.engine))
        if unused:
            listed = "; ".join(f"engine.{path}: {why}" for path, why in sorted(unused.items()))
            raise ValueError(f"settings this run would not use (remove them or set their own): {listed}")
        return self

    def applied_settings(self) -> dict:
        """The settings this run's modality uses, as the run's MLflow parameters (an image run has no engine)."""
        return self.model_dump(exclude=set(self.modality.unused_settings()))


def _positive_duration(value: str) -> bool:
    try:
        return pd.Timedelta(value) > pd.Timedelta(0)
    except ValueError:
        return False


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
        params, prepared, done = params.modality.train(params, run_id, runs, clock)
        verdict = gating.gate(done.metrics, params.model_name, prepared.gate_rows, params.gate, done.student)
        key = registration.training_key(
            prepared.digest,
            params.model_dump_json(exclude=KEY_EXCLUDES),
            params.modality.labels_path,
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
    student_facts, contamination = params.modality.student_facts(params, student)
    return {
        "model_name": params.model_name,
        "version": version,
        "modality": params.modality.kind,
        "data_source": params.data_path,
        "data_digest": prepared.digest,
        "rows_used": rows,
        "train_rows": len(prepared.train),
        "test_rows": len(prepared.test),
        "labels": params.modality.labels_source(params),
        "contract": prepared.contract.model_dump(mode="json"),
        "student": student_facts,
        "contamination": contamination,
        "compression": compression_summary(params.engine.student.compress, student),
    }


def run_training(params: TrainingParameters) -> dict:
    return with_runner(training_pipeline, params.task_runner, params.dask_address)(params)
