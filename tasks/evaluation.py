"""Training stage 5: the student and teacher on held-out rows; size, speed and plots."""

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from anomaly_distill.data import Table
from anomaly_distill.detector import size_bytes
from anomaly_distill.metrics import event_metrics, has_both_classes, rows_per_second
from anomaly_distill.tabular import pipeline
from tasks import plots, tracking
from tasks.common import IO_RETRIES


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
        "rows_per_second": rows_per_second(detector.score_rows, rows),
    }


def _log_plots(run_id: str, teacher_scores, student_scores, labels) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        files = [plots.score_plot(teacher_scores, student_scores, labels, Path(tmp))]
        if has_both_classes(labels):
            files += plots.curve_plots(labels, teacher_scores, student_scores, Path(tmp))
        for path in files:
            tracking.log_file(run_id, path, "plots")
