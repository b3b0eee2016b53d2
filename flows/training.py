"""training-pipeline: validate → teacher → soft labels → student → evaluate → gate → register → promote."""
import time
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass
from typing import Literal

import pandas as pd
from prefect import flow
from pydantic import BaseModel, Field

from anomaly_distill import pipeline
from anomaly_distill.config import (DistillConfig, EngineConfig, GateConfig, SeriesConfig, StudentConfig,
                                    TeacherConfig)
from anomaly_distill.data import Table, table_from_frame
from flows.runners import RunnerKind, with_runner
from tasks import series as ts
from tasks import tracking
from tasks import training as t


def _default(model: type[BaseModel], name: str):
    """Defaults live in anomaly_distill.config; the form shows the same values."""
    return model.model_fields[name].get_default(call_default_factory=True)


class TrainingParameters(BaseModel):
    data_path: str = Field("data/demo/thyroid.csv", description="CSV, Parquet or .npz file with the training table.")
    label_column: str | None = Field(
        "label", description="Column with 1 = anomaly, 0 = normal. Leave empty for unlabelled data.")
    model_name: str = Field("anomaly-detector", description="Registered model name in the MLflow registry.")
    experiment: str = Field("anomaly-distill", description="MLflow experiment for the runs.")
    teacher_kind: Literal["ensemble", "autoencoder", "supervised"] = Field(
        _default(TeacherConfig, "kind"), description="ensemble: PyOD IForest+ECOD+KNN (no labels); autoencoder; supervised (needs labels).")
    student_hidden: list[int] = Field(_default(StudentConfig, "hidden"), description="Hidden layer widths of the student MLP.")
    alpha: float = Field(_default(DistillConfig, "alpha"), ge=0, le=1, description="Weight of the soft (teacher) loss; 1 − α goes to hard labels.")
    temperature: float = Field(_default(DistillConfig, "temperature"), gt=0, description="Distillation temperature T.")
    beta: float = Field(_default(DistillConfig, "beta"), ge=0, description="Hint-loss weight (neural teachers).")
    epochs: int = Field(_default(DistillConfig, "epochs"), ge=1, description="Maximum student epochs (early stopping decides).")
    contamination: float = Field(_default(EngineConfig, "contamination"), gt=0, lt=0.5, description="Share of training rows flagged at the threshold.")
    seed: int = Field(_default(EngineConfig, "seed"), description="Seed for the split, sampling and initialisation.")
    gate: GateConfig = Field(default_factory=GateConfig, description="Promotion gate thresholds.")
    task_runner: RunnerKind = Field(
        "threads", description="threads: this machine; dask: teacher ensemble members spread over a Dask cluster.")
    dask_address: str | None = Field(None, description="Dask scheduler (tcp://host:8786); empty: a local cluster.")
    segment_column: str | None = Field(
        None, description="Train one student per value of this column (merchant, machine, …); empty: one model.")
    min_segment_rows: int = Field(
        500, ge=20, description="Segments with fewer training rows are scored by the model trained on all rows.")
    modality: Literal["tabular", "timeseries"] = Field(
        "tabular", description="timeseries: a timestamp column plus value columns, scored by sliding windows.")
    timestamp_column: str = Field("timestamp", description="Time-series only: the timestamp column.")
    labels_path: str | None = Field(
        None, description="Time-series only: NAB-style label-window JSON (evaluation and teacher choice).")
    series: SeriesConfig = Field(default_factory=SeriesConfig, description="Time-series windows and splits.")
    check_ranges: bool = Field(
        True, description="Check value ranges against the champion's data contract (drift retraining turns it off).")

    def engine_config(self) -> EngineConfig:
        return EngineConfig(
            seed=self.seed, contamination=self.contamination, teacher=TeacherConfig(kind=self.teacher_kind),
            student=StudentConfig(hidden=self.student_hidden),
            distill=DistillConfig(alpha=self.alpha, temperature=self.temperature, beta=self.beta, epochs=self.epochs))


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
    config = params.engine_config()
    tags = {"git_commit": tracking.git_commit(), "seed": config.seed, "model_name": params.model_name}
    clock = Stopwatch()
    run_id = tracking.start_run(params.experiment, f"train-{params.model_name}", tags=tags)
    runs = [run_id]
    try:
        tracking.log_params(run_id, params.model_dump())
        tracking.log_json(run_id, params.model_dump(), "config.json")
        frame = t.load_data(params.data_path)
        steps = _series_steps if params.modality == "timeseries" else _table_steps
        done = steps(params, config, frame, run_id, runs, clock)

        verdict = t.gate(done.metrics, params.model_name, done.gate_rows, params.gate)
        key = t.training_key(done.digest, params.model_dump_json(exclude={"task_runner", "dask_address", "data_path"}))
        version = t.register(done.student, done.example, done.reference, params.model_name, done.student_run,
                             verdict, done.contract, key)
        reused = version.run_id != done.student_run
        version = str(version.version)
        previous = t.promote(params.model_name, version, verdict)
        tracking.set_tags(run_id, {"model_version": version, "gate": "passed" if verdict.promote else "failed"})
        tracking.log_metrics(run_id, {f"seconds_{stage}": s for stage, s in clock.items()})
    except BaseException:
        for run in runs:
            with suppress(Exception):  # best effort: the tracking server may be the thing that is down
                tracking.end_run(run, "FAILED")
        raise
    for run in runs:
        tracking.end_run(run)
    return asdict(TrainingOutcome(params.model_name, version, verdict.promote, verdict.reasons, done.metrics,
                                  run_id, previous, done.teacher_cached, dict(clock), reused))


@dataclass
class Distilled:
    """What the modality-specific steps hand to the shared gate → register → promote."""

    student: object
    metrics: dict
    gate_rows: Table  # held-out rows (with labels) the champion is scored on too
    example: pd.DataFrame  # input example of the logged model
    reference: pd.DataFrame  # drift reference
    contract: dict
    digest: str
    student_run: str
    teacher_cached: bool = False


def _table_steps(params: TrainingParameters, config: EngineConfig, frame: pd.DataFrame, run_id: str, runs: list,
                 clock: Stopwatch) -> Distilled:
    segment = params.segment_column
    features = frame.drop(columns=[segment], errors="ignore") if segment else frame
    contract = t.validate_data(features, params.label_column, t.reference_contract(params.model_name), run_id,
                               params.check_ranges)
    contract["segment_column"] = segment
    digest = t.log_training_data(run_id, frame, params.data_path, params.label_column, segment)
    train, test = pipeline.split(table_from_frame(frame, params.label_column, segment), config)

    teacher_run = tracking.start_child_run(run_id, "teacher")
    student_run = tracking.start_child_run(run_id, "student")
    runs += [teacher_run, student_run]
    teacher_cached = False
    if segment:
        with clock("train_per_segment"):
            trained, student = t.train_per_segment(train, config, params.min_segment_rows)
        tracking.log_params(run_id, {"segments": ",".join(student.members)})
    else:
        with clock("train_teacher"):
            teacher_future = t.train_teacher.submit(train, config, digest)  # submitted: runs on the task runner
            trained = teacher_future.result()
            teacher_cached = teacher_future.state.name == "Cached"
        t.log_teacher(teacher_run, trained, config, cached=teacher_cached)
        with clock("generate_soft_labels"):
            soft_labels = t.generate_soft_labels(trained, train, config, digest)
        t.log_soft_labels(student_run, soft_labels)
        with clock("distill_student"):
            student = t.distill_student(soft_labels, trained, train, config)
    t.log_student(student_run, student, config)
    with clock("evaluate"):
        metrics = t.evaluate(student, trained, test, [run_id, student_run])
    return Distilled(student, metrics, test, test.scoring_frame().head(5), t.reference_snapshot(student, train, 0),
                     contract, digest, student_run, teacher_cached)


def _series_steps(params: TrainingParameters, config: EngineConfig, frame: pd.DataFrame, run_id: str, runs: list,
                  clock: Stopwatch) -> Distilled:
    """Series → window rows → teachers (picked on the validation period) → student, evaluated on the test period."""
    ts_column, series_config = params.timestamp_column, params.series
    label_column = params.label_column if params.label_column in frame.columns else None
    values = [c for c in frame.columns if c not in (ts_column, label_column)]
    contract = ts.validate_series(frame, series_config, ts_column, values, run_id)
    labels = ts.series_labels(frame, ts_column, label_column, params.labels_path, params.data_path)
    student_run = tracking.start_child_run(run_id, "student")
    runs.append(student_run)
    with clock("train_series"):
        fit = ts.train_series(frame, series_config, config, ts_column, values, labels)
    t.log_student(student_run, fit.student, config)
    with clock("evaluate"):
        metrics = ts.evaluate_series(fit, [run_id, student_run])
    example = ts.history(frame, fit, fit.data.test).head(series_config.window + 4)[[ts_column, *values]]
    return Distilled(fit.student, metrics, ts.champion_rows(frame, fit), example, ts.reference(frame, fit),
                     contract, contract["digest"], student_run)


def run_training(params: TrainingParameters) -> dict:
    return with_runner(training_pipeline, params.task_runner, params.dask_address)(params)
