"""Time-series benchmark: one chronological protocol for every method on each series.

Fit on the training period without labels (labels of the validation period only pick the teacher), score
every test-period point by the window ending at it, threshold each method at the same training-period quantile.
Throughput: window rows (test rows, topped up with jittered copies) on one thread, as in the tabular benchmark.
"""

import time
from pathlib import Path

import numpy as np
from pyod.models.iforest import IForest
from tqdm import tqdm

from anomaly_distill.benchmark import checklist, record_of, run_over, score_methods, throughput_sample
from anomaly_distill.config import EngineConfig, SeriesConfig
from anomaly_distill.data import DataError
from anomaly_distill.metrics import event_metrics, has_both_classes
from anomaly_distill.models.teachers import detector_params
from anomaly_distill.series_pipeline import train_series
from anomaly_distill.timeseries import label_windows, point_labels, read_series

METHODS = ("teacher", "student", "iforest", "zscore")


def zscore_scores(rows: np.ndarray, channels: int, window: int) -> np.ndarray:
    """Rolling z-score baseline: |newest − mean(previous window−1)| / std(previous), largest over channels."""
    sequences = rows[:, : channels * window].reshape(len(rows), channels, window)
    previous, newest = sequences[:, :, :-1], sequences[:, :, -1]
    return (np.abs(newest - previous.mean(axis=2)) / (previous.std(axis=2) + 1e-6)).max(axis=1)


def _methods(fit, channels: int, window: int, seed: int) -> dict:
    """Each method as (fitted object, window rows -> scores, fit seconds, parameter count)."""
    trained, student = fit.trained, fit.student.student
    pre = trained.preprocessor
    train = fit.data.part(fit.data.train)
    start = time.perf_counter()
    iforest = IForest(random_state=seed, n_jobs=1).fit(pre.transform(train.features))
    iforest_s = time.perf_counter() - start
    return {
        "teacher": (
            trained,
            lambda r: trained.teacher.score(pre.transform_array(r)),
            fit.seconds["teacher"],
            trained.teacher.n_params,
        ),
        "student": (student, student.model.score, fit.seconds["student"], student.model.n_params),
        "iforest": (
            iforest,
            lambda r: iforest.decision_function(pre.transform_array(r)),
            iforest_s,
            detector_params(iforest),
        ),
        "zscore": (None, lambda r: zscore_scores(r, channels, window), 0.0, 0),
    }


def benchmark_series(
    path: str | Path,
    labels_path: str | Path,
    config: SeriesConfig,
    engine: EngineConfig,
    timestamp_column: str = "timestamp",
    throughput_rows: int = 50_000,
    progress: tqdm | None = None,
) -> list[dict]:
    series = read_series(path, timestamp_column, config.window, timestamp_policy=config.timestamp_policy)
    labels = point_labels(series.timestamps, label_windows(labels_path, path))
    fit = train_series(series, config, engine, labels, timestamp_column)
    data = fit.data
    test, train = data.part(data.test), data.part(data.train)
    if not has_both_classes(test.labels):
        raise DataError(
            f"the test period (last {1 - config.train_fraction - config.validation_fraction:.0%}) "
            "holds no labelled anomaly, so AUROC is undefined there"
        )
    test_rows, train_rows = (t.features.to_numpy(dtype=np.float64) for t in (test, train))
    stamps = series.timestamps.iloc[data.end[data.test]].to_numpy()
    speed_rows = throughput_sample(test, throughput_rows, engine.seed)
    methods = _methods(fit, series.values.shape[1], config.window, engine.seed)
    records = score_methods(
        Path(path).stem,
        methods,
        train_rows,
        test_rows,
        test.labels,
        speed_rows,
        config.contamination,
        progress,
        extra=lambda scores, threshold: event_metrics(test.labels, scores, stamps, threshold),
    )
    return [{**r, "teacher_kind": fit.teacher_kind, "teacher_choice": fit.choice} for r in records]


def run_series_benchmark(
    paths: list[str],
    labels_path: str,
    config: SeriesConfig,
    engine: EngineConfig,
    timestamp_column: str = "timestamp",
    throughput_rows: int = 50_000,
) -> tuple[list[dict], list[str]]:
    """Records of every series that can be evaluated, and why each other one could not (too short, no label
    windows, none in the test period, bad timestamps). Raises when none can."""
    skipped = []

    def one(path, progress):
        try:
            return benchmark_series(path, labels_path, config, engine, timestamp_column, throughput_rows, progress)
        except DataError as error:
            skipped.append(f"{Path(path).name}: {error}")
            return []

    records = run_over(paths, METHODS, one)
    if not records:
        raise DataError("no series could be evaluated:\n" + "\n".join(f"  - {s}" for s in skipped))
    return records, skipped


def acceptance(records: list[dict]) -> list[tuple[str, bool]]:
    datasets = list(dict.fromkeys(r["dataset"] for r in records))
    mean = {m: float(np.mean([record_of(records, d, m)["auroc"] for d in datasets])) for m in METHODS}
    baseline = max(("iforest", "zscore"), key=mean.get)
    checks = []
    for d in datasets:
        s, t = record_of(records, d, "student"), record_of(records, d, "teacher")
        speedup = s["score_rows_per_second"] / t["score_rows_per_second"]
        checks += [
            (
                f"{d}: student AUROC {s['auroc']:.4f} >= teacher ({t['teacher_kind']}) {t['auroc']:.4f} - 0.02",
                s["auroc"] >= t["auroc"] - 0.02,
            ),
            (f"{d}: student/teacher rows/s {speedup:.0f}x >= 10x", speedup >= 10),
        ]
    checks.append(
        (
            f"mean AUROC student {mean['student']:.4f} >= better baseline ({baseline}) {mean[baseline]:.4f}",
            mean["student"] >= mean[baseline],
        )
    )
    return checks


def format_table(records: list[dict]) -> str:
    header = (
        "| series | method | AUROC | AUPRC | event recall | false alarms/day | delay (min) | fidelity | params "
        "| fit (s) | rows/s |"
    )
    lines = [header, "|" + "---|" * 11]
    for r in records:
        lines.append(
            f"| {r['dataset']} | {r['method']}{' (' + r['teacher_kind'] + ')' if r['method'] == 'teacher' else ''} "
            f"| {r['auroc']:.4f} | {r['auprc']:.4f} | {r['event_recall']:.2f} | {r['false_alarms_per_day']:.2f} "
            f"| {r['mean_delay_minutes']:.0f} | {r['fidelity']:.4f} | {r['params']:,} | {r['fit_seconds']:.1f} "
            f"| {r['score_rows_per_second']:,.0f} |"
        )
    return "\n".join(lines + [""] + checklist(acceptance(records)))
