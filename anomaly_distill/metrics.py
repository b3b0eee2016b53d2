"""Detection quality, teacher-student fidelity and scoring throughput."""

import time
from collections.abc import Callable

import numpy as np
import torch
from threadpoolctl import threadpool_limits

UNLABELLED = -1  # as anomaly_distill.data.UNLABELLED (metrics imports no data module: scoring stays light)


def has_both_classes(labels: np.ndarray | None) -> bool:
    """Labelled normal and anomalous rows: what AUROC, stratified splits and a supervised teacher need."""
    return labels is not None and {0, 1} <= set(np.unique(labels).tolist())


def labelled_count(labels: np.ndarray | None) -> int:
    return 0 if labels is None else int((np.asarray(labels) != UNLABELLED).sum())


def threshold_at_contamination(train_scores: np.ndarray, contamination: float) -> float:
    """The score above which `contamination` of the training rows lie (the default alarm threshold)."""
    return float(np.quantile(train_scores, 1 - contamination))


def recall_at_fpr(y_true: np.ndarray, scores: np.ndarray, max_fpr: float = 0.01) -> float:
    from sklearn.metrics import roc_curve  # imports here: a process that only scores loads no sklearn/scipy

    fpr, tpr, _ = roc_curve(y_true, scores)
    return float(tpr[fpr <= max_fpr].max())


def detection_metrics(
    y_true: np.ndarray, scores: np.ndarray, threshold: float | None = None, flagged: np.ndarray | None = None
) -> dict[str, float]:
    """Ranking metrics from `scores`; precision/recall/F1 of the alarms, which are `scores > threshold` or, when
    given, the `flagged` rows (e.g. live rows flagged at whatever threshold was in force when they were scored).
    Rows not reviewed (label UNLABELLED) are left out."""
    known = np.asarray(y_true) != UNLABELLED
    y_true, scores = np.asarray(y_true)[known], np.asarray(scores)[known]
    flagged = None if flagged is None else np.asarray(flagged)[known]
    predicted = (scores > threshold if flagged is None else np.asarray(flagged, dtype=bool)).astype(int)
    # scikit-learn's metrics (~1 s) only to evaluate: scoring imports this module (thresholds)
    from sklearn.metrics import average_precision_score, precision_recall_fscore_support, roc_auc_score

    precision, recall, f1, _ = precision_recall_fscore_support(y_true, predicted, average="binary", zero_division=0)
    return {
        "auroc": float(roc_auc_score(y_true, scores)),
        "auprc": float(average_precision_score(y_true, scores)),
        "precision": float(precision),
        "recall": float(recall),
        "f1": float(f1),
        "recall_at_1pct_fpr": recall_at_fpr(y_true, scores, 0.01),
    }


def fidelity(teacher_scores: np.ndarray, student_scores: np.ndarray) -> float:
    """Spearman rank correlation: 1.0 means the student orders rows exactly as the teacher does."""
    # scipy.stats (~1 s) only to evaluate: scoring imports this module (thresholds)
    from scipy.stats import spearmanr

    return float(spearmanr(teacher_scores, student_scores).statistic)


def rows_per_second(score: Callable[[np.ndarray], object], rows: np.ndarray, repeats: int = 3) -> float:
    """Best-of-`repeats` throughput of `score(rows)` on one thread (BLAS, OpenMP and torch)."""
    torch_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(1):
            score(rows[: min(len(rows), 1024)])  # warm-up: lazy init, caches
            best = float("inf")
            for _ in range(repeats):
                start = time.perf_counter()
                score(rows)
                best = min(best, time.perf_counter() - start)
    finally:
        torch.set_num_threads(torch_threads)
    return len(rows) / best


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) of each run of True."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)))


def event_metrics(labels: np.ndarray, scores: np.ndarray, timestamps, threshold: float) -> dict[str, float]:
    """Series alarms at `threshold`: share of labelled windows in which an alarm fires, false alarms per day
    (each run of consecutive alarms outside the windows counts once) and mean minutes from window start to the
    first alarm in it (NaN when no window is detected)."""
    stamps = np.asarray(timestamps, dtype="datetime64[ns]")
    alarms = scores > threshold
    delays = []
    windows = _runs(labels.astype(bool))
    for start, end in windows:
        fired = np.flatnonzero(alarms[start:end])
        if len(fired):
            delays.append((stamps[start + fired[0]] - stamps[start]) / np.timedelta64(1, "m"))
    days = max((stamps[-1] - stamps[0]) / np.timedelta64(1, "D"), 1e-9)
    return {
        "event_recall": len(delays) / len(windows) if windows else float("nan"),
        "false_alarms_per_day": len(_runs(alarms & ~labels.astype(bool))) / days,
        "mean_delay_minutes": float(np.mean(delays)) if delays else float("nan"),
    }
