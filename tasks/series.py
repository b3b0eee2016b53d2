"""Prefect tasks of the time-series branch of the training pipeline (the rest is shared with tables)."""
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from anomaly_distill import series_pipeline
from anomaly_distill.config import EngineConfig, SeriesConfig
from anomaly_distill.data import Table, frame_digest
from anomaly_distill.metrics import detection_metrics, event_metrics, fidelity
from anomaly_distill.timeseries import gaps, label_windows, point_labels, series_from_frame
from tasks import plots, tracking
from tasks.training import IO_RETRIES, cluster_map, size_and_speed
from tasks.validation import ValidationFailed, validate_series_frame


@task(cache_policy=NO_CACHE, **IO_RETRIES)
def validate_series(frame: pd.DataFrame, config: SeriesConfig, timestamp_column: str, value_columns: list[str],
                    run_id: str) -> dict:
    """GX series contract (raises ValidationFailed listing every failure); gaps are reported, not refused."""
    report = validate_series_frame(frame, timestamp_column, value_columns, config.window, config.timestamp_policy)
    tracking.log_json(run_id, report.result, "ge_result.json", "validation")
    if not report.success:
        create_markdown_artifact(report.markdown(), key="data-validation", description="Great Expectations result")
        tracking.set_tags(run_id, {"validation": "failed"})
        raise ValidationFailed(report.failures + order_hint(report.failures, timestamp_column, config))
    series = series_from_frame(frame, timestamp_column, config.window, value_columns, config.timestamp_policy)
    found = gaps(series, config.gap_tolerance)
    create_markdown_artifact(report.markdown() + f"\n\n{len(found)} gaps longer than {config.gap_tolerance} median "
                             "steps" + "".join(f"\n- {a} → {b}" for a, b in found[:20]), key="data-validation")
    tracking.log_dataset(run_id, frame, "series", None)
    return {"modality": "timeseries", "timestamp_column": timestamp_column, "value_columns": value_columns,
            "window": config.window, "timestamp_policy": config.timestamp_policy, "gaps": len(found),
            "series": config.model_dump(),
            "digest": frame_digest(frame),
            "features": value_columns, "label_column": None}  # what drift monitoring compares, with the score


def order_hint(failures: list[str], timestamp_column: str, config: SeriesConfig) -> list[str]:
    """Repeated or backward timestamps are often a clock change, not bad data: say how to train on them."""
    ordering = ("expect_column_values_to_be_unique", "expect_column_values_to_be_increasing")
    if config.timestamp_policy == "strict" and any(f.startswith(ordering) and timestamp_column in f for f in failures):
        return ["if the file's row order is right (e.g. a clock set back for daylight saving), train with "
                "`series: {timestamp_policy: file_order}` in the --config YAML"]
    return []


@task(cache_policy=NO_CACHE)
def train_series(frame: pd.DataFrame, config: SeriesConfig, engine: EngineConfig, timestamp_column: str,
                 value_columns: list[str], labels: np.ndarray | None) -> series_pipeline.SeriesFit:
    series = series_from_frame(frame, timestamp_column, config.window, value_columns, config.timestamp_policy)
    return series_pipeline.train_series(series, config, engine, labels, timestamp_column, cluster_map())


def series_labels(frame: pd.DataFrame, timestamp_column: str, label_column: str | None, labels_path: str | None,
                  data_path: str) -> np.ndarray | None:
    """Point labels: a 0/1 column of the file, or NAB-style label windows (evaluation and teacher choice only)."""
    if label_column and label_column in frame.columns:
        return frame[label_column].to_numpy(dtype=np.int64)
    if labels_path:
        stamps = pd.to_datetime(frame[timestamp_column], format="mixed")
        return point_labels(stamps, label_windows(labels_path, data_path))
    return None


@task(cache_policy=NO_CACHE, **IO_RETRIES)
def evaluate_series(fit: series_pipeline.SeriesFit, run_ids: list[str]) -> dict:
    """Test-period metrics: point-wise AUROC/AUPRC and event recall/false alarms/delay when labelled."""
    data, student = fit.data, fit.student
    test = data.part(data.test)
    teacher_scores, student_scores = fit.trained.score(test.features), student.student.score(test.features)
    metrics = {"fidelity": fidelity(teacher_scores, student_scores)}
    if test.labels is not None and len(np.unique(test.labels)) == 2:
        stamps = data.series.timestamps.iloc[data.end[data.test]].to_numpy()
        metrics.update(detection_metrics(test.labels, student_scores, student.threshold))
        metrics.update(event_metrics(test.labels, student_scores, stamps, student.threshold))
        metrics["teacher_auroc"] = detection_metrics(test.labels, teacher_scores, fit.trained.threshold)["auroc"]
    metrics.update(size_and_speed(student, test.features))
    with tempfile.TemporaryDirectory() as tmp:
        tracking.log_file(run_ids[0], plots.score_plot(teacher_scores, student_scores, test.labels, Path(tmp)), "plots")
    for run_id in run_ids:
        tracking.log_metrics(run_id, {k: v for k, v in metrics.items() if np.isfinite(v)})
    tracking.set_tags(run_ids[0], {"teacher_kind": fit.teacher_kind, "teacher_choice": fit.choice})
    return metrics


def history(frame: pd.DataFrame, fit: series_pipeline.SeriesFit, mask: np.ndarray) -> pd.DataFrame:
    """The raw rows behind the window rows in `mask` (with window-1 rows of context before the first)."""
    ends = fit.data.end[mask]
    return frame.iloc[ends[0] - fit.student.window + 1: ends[-1] + 1].reset_index(drop=True)


def champion_rows(frame: pd.DataFrame, fit: series_pipeline.SeriesFit) -> Table:
    """Test-period history for the champion's pyfunc (it windows the rows itself) and the labels of its points."""
    return Table(history(frame, fit, fit.data.test), fit.data.part(fit.data.test).labels)


def reference(frame: pd.DataFrame, fit: series_pipeline.SeriesFit) -> pd.DataFrame:
    """Training-period points (timestamp, values) and their scores: the drift monitor's reference, and the start
    of the history a drift-triggered retrain trains on."""
    rows = history(frame, fit, fit.data.train)
    scored = fit.student.predict(rows)
    columns = [fit.student.timestamp_column, *fit.student.value_columns]
    values = rows.iloc[fit.student.window - 1:].reset_index(drop=True)[columns]
    return pd.concat([values, scored[["score", "is_anomaly"]]], axis=1)
