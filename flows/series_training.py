"""The series branch of training-pipeline: the series read whole, as window rows for a frozen model (teacher
candidates picked on the validation period, then the shared teacher → student steps), or warmed point by point
for an online one."""

import numpy as np
import pandas as pd

from anomaly_distill.data import Table
from anomaly_distill.series import series_pipeline
from anomaly_distill.series.timeseries import chronological_split
from flows.stages import Distilled, Prepared, Stopwatch, distill, engine_student_facts
from tasks import common, inputs
from tasks import online_series as online
from tasks import series as ts

student_facts = engine_student_facts  # a series student is distilled from window rows, as a table's is


def train(params, run_id: str, runs: list, clock: Stopwatch):
    frame = inputs.load_data(params.data_path)  # a series is read whole: its order is the data
    if params.modality.series.mode == "online":
        return params, *_online_series(params, frame, run_id, runs, clock)
    prepared = _prepare_series(params, frame, run_id)
    return params, prepared, distill(params, prepared, run_id, runs, clock)


def _checked_series(params, frame: pd.DataFrame, run_id: str):
    """(timestamp column, series settings, value columns, contract, per-point labels or None): the series checked
    against its contract, as both series branches start."""
    ts_column, config = params.modality.timestamp_column, params.modality.series
    label_column = params.label_column if params.label_column in frame.columns else None
    values = [c for c in frame.columns if c not in (ts_column, label_column)]
    contract = ts.validate_series(frame, config, ts_column, values, run_id)
    labels = ts.series_labels(frame, ts_column, label_column, params.modality.labels_path, params.data_path)
    return ts_column, config, values, contract, labels


def _prepare_series(params, frame: pd.DataFrame, run_id: str) -> Prepared:
    """The series as window rows; teachers are picked on the validation period, evaluated on the test period."""
    ts_column, config, values, contract, labels = _checked_series(params, frame, run_id)
    data = ts.window_rows(frame, config, ts_column, values, labels)
    validation = data.part(data.validation)
    kinds = series_pipeline.teacher_kinds(config.teacher, validation.labels)
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
        validation=validation,
        example=lambda _: ts.history(frame, data, config.window, data.test).head(config.window + 4)[
            [ts_column, *values]
        ],
        reference=lambda detector: ts.reference(frame, data, detector),
        test_stamps=ts.test_stamps(data),
    )


def _online_series(
    params, frame: pd.DataFrame, run_id: str, runs: list, clock: Stopwatch
) -> tuple[Prepared, Distilled]:
    """The online detector warmed on the whole series; measured prequentially on the test period (each point
    scored before it was learnt from), which is also what the champion is scored on."""
    ts_column, config, values, contract, labels = _checked_series(params, frame, run_id)
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
