"""One protocol for every method: stratified split, fit without labels, score the held-out rows.

Throughput is measured in this process, on the same rows for every method, on one thread, each method
including its preprocessing. The rows are the held-out rows, topped up to `throughput_rows` with jittered copies
of them: exact repeats would let tree ensembles ride the CPU's branch predictor and look faster than they are.
"""

import pickle
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from pyod.models.ecod import ECOD
from pyod.models.iforest import IForest
from tqdm import tqdm

from anomaly_distill import pipeline
from anomaly_distill.config import EngineConfig
from anomaly_distill.data import Table, load_table
from anomaly_distill.metrics import detection_metrics, fidelity, rows_per_second, threshold_at_contamination
from anomaly_distill.models.teachers import detector_params

METHODS = ("teacher", "student", "iforest", "ecod")


def _timed(fn: Callable):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def throughput_sample(test: Table, n_rows: int, seed: int) -> np.ndarray:
    rows = test.features.to_numpy(dtype=np.float64)
    if len(rows) >= n_rows:
        return rows
    rng = np.random.default_rng(seed)
    copies = rows[rng.integers(0, len(rows), n_rows - len(rows))]
    copies = copies + rng.normal(0, 0.05, copies.shape) * rows.std(axis=0)
    return np.vstack([rows, copies])


def _fit_methods(train: Table, config: EngineConfig) -> dict[str, tuple[object, Callable, float, int]]:
    """Each method as (fitted object, raw-rows -> scores, fit seconds, parameter count)."""
    fit_train = train if config.teacher.kind == "supervised" else Table(train.features)
    trained, teacher_s = _timed(lambda: pipeline.train_teacher(fit_train, config))
    pre = trained.preprocessor

    def distill():
        soft_labels = pipeline.generate_soft_labels(trained, fit_train, config)
        return pipeline.distill_student(soft_labels, trained, fit_train, config)

    student, student_s = _timed(distill)
    X = pre.transform(train.features)
    iforest, iforest_s = _timed(lambda: IForest(random_state=config.seed, n_jobs=1).fit(X))
    ecod, ecod_s = _timed(lambda: ECOD().fit(X))
    return {
        "teacher": (
            trained,
            lambda r: trained.teacher.score(pre.transform_array(r)),
            teacher_s,
            trained.teacher.n_params,
        ),
        "student": (student, student.model.score, student_s, student.model.n_params),
        "iforest": (
            iforest,
            lambda r: iforest.decision_function(pre.transform_array(r)),
            iforest_s,
            detector_params(iforest),
        ),
        "ecod": (ecod, lambda r: ecod.decision_function(pre.transform_array(r)), ecod_s, detector_params(ecod)),
    }


def benchmark_dataset(
    path: str | Path,
    config: EngineConfig,
    label_column: str | None = None,
    throughput_rows: int = 50_000,
    progress: tqdm | None = None,
) -> list[dict]:
    table = load_table(path, label_column)
    if table.labels is None:
        raise ValueError(f"{path}: the benchmark needs labels (give --label-column for CSV/Parquet)")
    train, test = pipeline.split(table, config)
    methods = _fit_methods(train, config)
    # float64 like training: teachers built on ECDFs jump at tied values, so rounding inputs would change them
    test_rows = test.features.to_numpy(dtype=np.float64)
    speed_rows = throughput_sample(test, throughput_rows, config.seed)
    train_rows = train.features.to_numpy(dtype=np.float64)
    return score_methods(
        Path(path).stem, methods, train_rows, test_rows, test.labels, speed_rows, config.contamination, progress
    )


def score_methods(
    dataset: str,
    methods: dict,
    train_rows: np.ndarray,
    test_rows: np.ndarray,
    labels: np.ndarray,
    speed_rows: np.ndarray,
    contamination: float,
    progress: tqdm | None = None,
    extra=None,
) -> list[dict]:
    """One record per method: held-out metrics at its own training-quantile threshold, fidelity to the teacher,
    size and single-thread speed. `extra(scores, threshold)` adds modality-specific metrics."""
    teacher_scores = methods["teacher"][1](test_rows)
    records = []
    for method, (fitted, score, fit_seconds, params) in methods.items():
        scores = score(test_rows)
        threshold = threshold_at_contamination(score(train_rows), contamination)
        records.append(
            {
                "dataset": dataset,
                "method": method,
                **detection_metrics(labels, scores, threshold),
                **(extra(scores, threshold) if extra else {}),
                "fidelity": fidelity(teacher_scores, scores),
                "params": int(params),
                "size_bytes": len(pickle.dumps(fitted)),
                "fit_seconds": fit_seconds,
                "score_rows_per_second": rows_per_second(score, speed_rows, repeats=5),
                "n_train": len(train_rows),
                "n_test": len(test_rows),
            }
        )
        if progress is not None:
            progress.update(1)
    return records


def run_over(paths: list[str], methods: tuple, bench_one) -> list[dict]:
    """`bench_one(path, progress)` for each path, under one progress bar counting methods."""
    records = []
    with tqdm(total=len(paths) * len(methods), desc="benchmark", unit="method") as progress:
        for path in paths:
            progress.set_postfix_str(Path(path).stem)
            records += bench_one(path, progress)
    return records


def run_benchmark(
    paths: list[str], config: EngineConfig, label_column: str | None = None, throughput_rows: int = 50_000
) -> list[dict]:
    return run_over(
        paths, METHODS, lambda path, progress: benchmark_dataset(path, config, label_column, throughput_rows, progress)
    )


def record_of(records: list[dict], dataset: str, method: str) -> dict:
    return next(r for r in records if r["dataset"] == dataset and r["method"] == method)


def acceptance(records: list[dict]) -> list[tuple[str, bool]]:
    """The checks the product promises, evaluated on these records."""
    datasets = sorted({r["dataset"] for r in records}, key=[r["dataset"] for r in records].index)
    mean = {m: np.mean([record_of(records, d, m)["auroc"] for d in datasets]) for m in METHODS}
    best_baseline = np.mean(
        [max(record_of(records, d, "iforest")["auroc"], record_of(records, d, "ecod")["auroc"]) for d in datasets]
    )
    checks = []
    for d in datasets:
        s, t, i = record_of(records, d, "student"), record_of(records, d, "teacher"), record_of(records, d, "iforest")
        checks += [
            (
                f"{d}: student AUROC {s['auroc']:.4f} >= teacher {t['auroc']:.4f} - 0.01",
                s["auroc"] >= t["auroc"] - 0.01,
            ),
            (f"{d}: fidelity {s['fidelity']:.4f} >= 0.97", s["fidelity"] >= 0.97),
            (
                f"{d}: student/iforest rows/s {s['score_rows_per_second'] / i['score_rows_per_second']:.0f}x >= 20x",
                s["score_rows_per_second"] >= 20 * i["score_rows_per_second"],
            ),
            (
                f"{d}: student/teacher rows/s {s['score_rows_per_second'] / t['score_rows_per_second']:.0f}x >= 50x",
                s["score_rows_per_second"] >= 50 * t["score_rows_per_second"],
            ),
        ]
    checks += [
        (
            f"mean AUROC student {mean['student']:.4f} >= iforest {mean['iforest']:.4f}",
            mean["student"] >= mean["iforest"],
        ),
        (f"mean AUROC student {mean['student']:.4f} >= ecod {mean['ecod']:.4f}", mean["student"] >= mean["ecod"]),
        (
            f"(stretch) mean AUROC student {mean['student']:.4f} >= per-dataset best of iforest/ecod "
            f"{best_baseline:.4f}",
            mean["student"] >= best_baseline,
        ),
    ]
    return checks


def format_table(records: list[dict]) -> str:
    header = (
        "| dataset | method | AUROC | AUPRC | P | R | F1 | R@1%FPR | fidelity | params | size (B) | fit (s) | rows/s |"
    )
    lines = [header, "|" + "---|" * 13]
    for r in records:
        lines.append(
            f"| {r['dataset']} | {r['method']} | {r['auroc']:.4f} | {r['auprc']:.4f} | {r['precision']:.3f} "
            f"| {r['recall']:.3f} | {r['f1']:.3f} | {r['recall_at_1pct_fpr']:.3f} | {r['fidelity']:.4f} "
            f"| {r['params']:,} | {r['size_bytes']:,} | {r['fit_seconds']:.1f} | {r['score_rows_per_second']:,.0f} |"
        )
    return "\n".join(lines + [""] + checklist(acceptance(records)))


def checklist(checks: list[tuple[str, bool]]) -> list[str]:
    return [f"- [{'x' if ok else ' '}] {text}" for text, ok in checks]
