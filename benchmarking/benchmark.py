"""One protocol for every method: stratified split, fit without labels, score the held-out rows.

Throughput is measured in this process, on the same rows for every method, on one thread, each method
including its preprocessing. The rows are the held-out rows, topped up to `throughput_rows` with jittered copies
of them: exact repeats would let tree ensembles ride the CPU's branch predictor and look faster than they are.
"""

import multiprocessing
import pickle
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np
import torch
from pyod.models.copod import COPOD
from pyod.models.ecod import ECOD
from pyod.models.hbos import HBOS
from pyod.models.iforest import IForest
from pyod.models.knn import KNN
from pyod.models.lof import LOF
from tqdm import tqdm

from anomaly_distill.config import BASELINES, EngineConfig
from anomaly_distill.data import Table, load_table
from anomaly_distill.metrics import detection_metrics, fidelity, rows_per_second, threshold_at_contamination
from anomaly_distill.models.base import subsample
from anomaly_distill.models.teachers import detector_params
from anomaly_distill.tabular import pipeline
from benchmarking.benchmark_summary import format_per_set, format_summary, set_means, summary

QUICK_BASELINES = ("iforest", "ecod")
METHODS = ("teacher", "student", *QUICK_BASELINES)
# Neighbour methods cost O(train rows) per scored row: they fit on at most as many rows as the teacher's members.
NEIGHBOUR_BASELINES = ("knn", "lof")


def make_baseline(name: str, seed: int):
    """The PyOD detector a user would pick instead, with PyOD's defaults, on one thread."""
    return {
        "iforest": lambda: IForest(random_state=seed, n_jobs=1),
        "ecod": ECOD,
        "copod": COPOD,
        "hbos": HBOS,
        "knn": lambda: KNN(n_jobs=1),
        "lof": lambda: LOF(n_jobs=1),
    }[name]()


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


def fit_baseline(name: str, X: np.ndarray, preprocessor, config: EngineConfig) -> tuple[object, Callable, float, int]:
    if name in NEIGHBOUR_BASELINES:
        X = subsample(X, None, config.teacher.max_fit_rows, config.seed)[0]
    detector, seconds = _timed(lambda: make_baseline(name, config.seed).fit(X))
    return (
        detector,
        lambda r: detector.decision_function(preprocessor.transform_array(r)),
        seconds,
        detector_params(detector),
    )


def _fit_methods(
    train: Table, config: EngineConfig, baselines: tuple[str, ...] = QUICK_BASELINES
) -> dict[str, tuple[object, Callable, float, int]]:
    """Each method as (fitted object, raw-rows -> scores, fit seconds, parameter count)."""
    fit_train = train if config.teacher.kind == "supervised" else Table(train.features)
    trained, teacher_s = _timed(lambda: pipeline.train_teacher(fit_train, config))
    pre = trained.preprocessor

    def distill():
        soft_labels = pipeline.generate_soft_labels(trained, fit_train, config)
        return pipeline.distill_student(soft_labels, trained, fit_train, config)

    student, student_s = _timed(distill)
    X = pre.transform(train.features)
    return {
        "teacher": (
            trained,
            lambda r: trained.teacher.score(pre.transform_array(r)),
            teacher_s,
            trained.teacher.n_params,
        ),
        "student": (student, student.model.score, student_s, student.model.n_params),
        **{name: fit_baseline(name, X, pre, config) for name in baselines},
    }


def benchmark_dataset(
    path: str | Path,
    config: EngineConfig,
    label_column: str | None = None,
    throughput_rows: int = 50_000,
    progress: tqdm | None = None,
    baselines: tuple[str, ...] = QUICK_BASELINES,
    timed_methods: tuple[str, ...] | None = None,
) -> list[dict]:
    """Records of every method on one split of one set; `timed_methods` (default: all) get a throughput figure."""
    table = load_table(path, label_column)
    if table.labels is None:
        raise ValueError(f"{path}: the benchmark needs labels (give --label-column for CSV/Parquet)")
    train, test = pipeline.split(table, config)
    methods = _fit_methods(train, config, baselines)
    # float64 like training: teachers built on ECDFs jump at tied values, so rounding inputs would change them
    test_rows = test.features.to_numpy(dtype=np.float64)
    speed_rows = throughput_sample(test, throughput_rows, config.seed)
    train_rows = train.features.to_numpy(dtype=np.float64)
    records = score_methods(
        Path(path).stem,
        methods,
        train_rows,
        test_rows,
        test.labels,
        speed_rows,
        config.contamination,
        progress,
        timed_methods=timed_methods,
    )
    return [{**r, "seed": config.seed} for r in records]


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
    timed_methods: tuple[str, ...] | None = None,
) -> list[dict]:
    """One record per method: held-out metrics at its own training-quantile threshold, fidelity to the teacher,
    size and single-thread speed (None for a method not in `timed_methods`, when given).
    `extra(scores, threshold)` adds modality-specific metrics."""
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
                "score_rows_per_second": (
                    rows_per_second(score, speed_rows, repeats=5)
                    if timed_methods is None or method in timed_methods
                    else None
                ),
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


def _one_split(path: str, seed: int, settings: dict, label_column, throughput_rows: int, baselines) -> list[dict]:
    """One (set, seed) job in a worker process: one thread, like every speed figure here."""
    torch.set_num_threads(1)
    config = EngineConfig.model_validate({**settings, "seed": seed})
    return benchmark_dataset(path, config, label_column, throughput_rows, None, baselines, TIMED_METHODS)


TIMED_METHODS = ("teacher", "student", "iforest")  # the methods the speed targets compare


def run_jobs(job: Callable, jobs: list[tuple], workers: int = 1, on_result: Callable | None = None) -> list:
    """`job(*args)` for each args tuple, `workers` at a time in fresh processes (in this one when 1), results
    in completion order; `on_result(result)` after each."""
    results = []
    with tqdm(total=len(jobs), desc="benchmark", unit="job") as progress:
        if workers == 1:
            done = (job(*args) for args in jobs)
        else:
            pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
            done = (f.result() for f in as_completed([pool.submit(job, *args) for args in jobs]))
        for result in done:
            results.append(result)
            progress.update(1)
            if on_result is not None:
                on_result(result)
        if workers > 1:
            pool.shutdown()
    return results


def largest_first(paths: list[str], seeds: list[int]) -> list[tuple[str, int]]:
    """(path, seed) jobs, largest files first so that the long jobs do not come last."""
    return sorted(((p, s) for p in paths for s in seeds), key=lambda job: -Path(job[0]).stat().st_size)


def run_seeds(
    paths: list[str],
    seeds: list[int],
    config: EngineConfig,
    label_column: str | None = None,
    throughput_rows: int = 20_000,
    baselines: tuple[str, ...] = BASELINES,
    workers: int = 1,
    on_progress: Callable[[list[dict]], None] | None = None,
) -> list[dict]:
    """Every set × every seed (a different stratified split and initialisation each), `workers` jobs at a time.
    `on_progress(records so far)` after each job."""
    settings = config.model_dump()
    records: list[dict] = []

    def collect(result: list[dict]) -> None:
        records.extend(result)
        if on_progress is not None:
            on_progress(records)

    jobs = [(p, s, settings, label_column, throughput_rows, baselines) for p, s in largest_first(paths, seeds)]
    run_jobs(_one_split, jobs, workers, collect)
    order = {Path(p).stem: i for i, p in enumerate(paths)}
    return sorted(records, key=lambda r: (order[r["dataset"]], r["seed"]))


def _speedups(records: list[dict], dataset: str) -> tuple[float, float]:
    """Seed-mean student/IForest and student/teacher rows-per-second ratios (each measured side by side)."""
    by_seed: dict[int, dict[str, float]] = {}
    for r in records:
        if r["dataset"] == dataset:
            by_seed.setdefault(r["seed"], {})[r["method"]] = r["score_rows_per_second"]
    ratios = np.array(
        [[s["student"] / s.get("iforest", np.nan), s["student"] / s["teacher"]] for s in by_seed.values()]
    )
    return tuple(ratios.mean(axis=0))


def seeds_acceptance(records: list[dict]) -> list[tuple[str, bool]]:
    """The issue-14 targets on seed means over every set."""
    auroc, fid = set_means(records, "auroc"), set_means(records, "fidelity")
    sets = list(auroc)
    rows = {r["method"]: r for r in summary(records)}
    close = [d for d in sets if auroc[d]["student"] >= auroc[d]["teacher"] - 0.01]
    faithful = [d for d in sets if fid[d]["student"] >= 0.97]
    speed = {d: _speedups(records, d) for d in sets}
    baselines = [m for m in rows if m not in ("teacher", "student")]
    best_rival = min((m for m in rows if m not in ("teacher", "student")), key=lambda m: rows[m]["average_rank"])
    pair = [m for m in ("iforest", "ecod") if m in rows]  # the stretch target's baselines, when they ran
    per_set_best = np.mean([max(auroc[d][m] for m in pair) for d in sets]) if pair else float("nan")
    student = rows["student"]
    need = len(sets) - 1
    return [
        (f"student AUROC >= teacher - 0.01 on {len(close)}/{len(sets)} sets (need {need})", len(close) >= need),
        (f"fidelity >= 0.97 on {len(faithful)}/{len(sets)} sets (need all)", len(faithful) == len(sets)),
        *[
            (
                f"mean AUROC student {student['mean_auroc']:.4f} > {m} {rows[m]['mean_auroc']:.4f}",
                student["mean_auroc"] > rows[m]["mean_auroc"],
            )
            for m in baselines
        ],
        (
            f"average rank student {student['average_rank']:.2f} better than every baseline "
            f"(best: {best_rival} {rows[best_rival]['average_rank']:.2f})",
            student["average_rank"] < rows[best_rival]["average_rank"],
        ),
        *(
            [
                (
                    f"(stretch) mean AUROC student {student['mean_auroc']:.4f} >= per-set better of "
                    f"{'/'.join(pair)} {per_set_best:.4f}",
                    student["mean_auroc"] >= per_set_best,
                )
            ]
            if pair
            else []
        ),
        *(
            [
                (
                    f"student/IForest rows/s >= 20x on {sum(s[0] >= 20 for s in speed.values())}/{len(sets)} "
                    f"sets (lowest {min(s[0] for s in speed.values()):.0f}x)",
                    all(s[0] >= 20 for s in speed.values()),
                )
            ]
            if "iforest" in rows
            else []
        ),
        (
            f"student/teacher rows/s >= 50x on {sum(s[1] >= 50 for s in speed.values())}/{len(sets)} sets "
            f"(lowest {min(s[1] for s in speed.values()):.0f}x)",
            all(s[1] >= 50 for s in speed.values()),
        ),
    ]


def format_seeds(records: list[dict]) -> str:
    """Summary across sets, the per-set AUROC table with fidelity and speed ratios, and the targets."""
    auroc, fid = set_means(records, "auroc"), set_means(records, "fidelity")
    seeds = sorted({r["seed"] for r in records})
    lines = [
        f"{len(auroc)} sets x seeds {seeds}: AUROC is the mean over seeds per set, then over sets.",
        "",
        format_summary(summary(records)),
        "",
        format_per_set(records),
        "",
        "| set | student − teacher AUROC | fidelity | student/IForest rows/s | student/teacher rows/s |",
        "|---|---|---|---|---|",
    ]
    for d in auroc:
        vs_iforest, vs_teacher = _speedups(records, d)
        lines.append(
            f"| {d} | {auroc[d]['student'] - auroc[d]['teacher']:+.4f} | {fid[d]['student']:.4f} "
            f"| {vs_iforest:.0f}x | {vs_teacher:.0f}x |"
        )
    return "\n".join(lines + [""] + checklist(seeds_acceptance(records)))
