"""The online series branch of the training pipeline: warm the online detector on the training series, measure
it prequentially (each point scored before it is learnt from) on the test period, beside its teacher."""

import time

import numpy as np
import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from anomaly_distill.config import OnlineConfig
from anomaly_distill.detector import size_bytes
from anomaly_distill.metrics import detection_metrics, fidelity, has_both_classes
from anomaly_distill.series.online import OnlineSeriesModel
from tasks import tracking
from tasks.common import IO_RETRIES


@task(cache_policy=NO_CACHE)
def warm_online(frame: pd.DataFrame, timestamp_column: str, value_columns: list[str], config: OnlineConfig):
    """The model after the whole series, every point's (alarm, calibrated) scores on the way from the student
    and from the teacher, and the seconds the student's refreshes took."""
    return OnlineSeriesModel.warm(frame, timestamp_column, value_columns, config)


def online_metrics(model: OnlineSeriesModel, frame: pd.DataFrame, student, teacher, test: np.ndarray, labels) -> dict:
    """Held-out metrics of the calibrated scores on the test points (prequential: each scored before it was
    learnt from), the teacher's beside them, fidelity (Spearman) between the two, size, and the points/s of
    replaying the test period with the refreshes left out (they run between points: teacher and distillation;
    `refresh_seconds` is logged apart)."""
    (_, calibrated), (_, of_teacher) = student, teacher
    metrics = {"fidelity": fidelity(of_teacher[test], calibrated[test]), "size_bytes": size_bytes(model)}
    metrics["params"] = model.n_params
    if labels is not None and has_both_classes(labels[test]):
        metrics |= detection_metrics(labels[test], calibrated[test], model.threshold)
        teacher_metrics = detection_metrics(labels[test], of_teacher[test], model.threshold)
        metrics |= {f"teacher_{k}": v for k, v in teacher_metrics.items()}
    detectors = model.detectors()
    values = frame[model.value_columns].to_numpy(dtype=np.float64)[test]
    start = time.perf_counter()
    for i, detector in enumerate(detectors):
        detector.score(values[:, i])
    spent = time.perf_counter() - start - sum(d.refresh_seconds for d in detectors)
    metrics["rows_per_second"] = len(values) / max(spent, 1e-9)
    return metrics


@task(cache_policy=NO_CACHE, **IO_RETRIES)
def log_online(run_ids: list[str], config: OnlineConfig, metrics: dict, refresh_seconds: float) -> None:
    for run_id in run_ids:
        tracking.log_params(run_id, {"online": config.model_dump()})
        tracking.log_metrics(run_id, {**metrics, "refresh_seconds": refresh_seconds})
