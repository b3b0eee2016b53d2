"""Time-series benchmark: one chronological protocol for every method on each series.

Fit on the training period without labels (labels of the validation period only pick the teacher), score
every test-period point by the window ending at it, threshold each method at the same training-period quantile.
Throughput: window rows (test rows, topped up with jittered copies) on one thread, as in the tabular benchmark.
"""

import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from pyod.models.iforest import IForest
from tqdm import tqdm

from anomaly_distill.config import EngineConfig, OnlineConfig, SeriesConfig
from anomaly_distill.data import DataError
from anomaly_distill.metrics import detection_metrics, event_metrics, has_both_classes
from anomaly_distill.models.teachers import detector_params
from anomaly_distill.series.online import OnlineSeriesDetector
from anomaly_distill.series.series_pipeline import train_series
from anomaly_distill.series.timeseries import Series, label_windows, point_labels, read_series
from benchmarking.benchmark import (
    checklist,
    largest_first,
    record_of,
    run_jobs,
    score_methods,
    throughput_sample,
)
from benchmarking.benchmark_summary import format_per_set, format_summary, mean_std, set_means, summary
from benchmarking.nab import (
    ScoredFile,
    nab_scores,
    probation_length,
    unit_point_scores,
    window_bounds,
    write_result_file,
)

METHODS = ("teacher", "student", "iforest", "zscore")
# The online detector with either scorer; the frozen METHODS fit once on the probationary period (today's model).
ONLINE_METHODS = {"online-student": "student", "online-teacher": "teacher"}
SPEED_POINTS = 2000  # points replayed one call each to measure the request path (after the probationary period)


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


def nab_protocol(config: SeriesConfig, n_points: int) -> SeriesConfig:
    """NAB's rule: fit on the probationary period only (the first 15 %, at most 750 points), score every point
    after it. No labels are used, so an `auto` teacher is the label-free default, the ensemble; a short file's
    probationary period may hold fewer windows than training asks for (NAB's shortest: 137)."""
    return config.model_copy(
        update={
            "train_fraction": (probation_length(n_points) + 0.5) / n_points,
            "validation_fraction": 0.0,
            "teacher": "ensemble" if config.teacher == "auto" else config.teacher,
            "min_train_windows": min(config.min_train_windows, NAB_MIN_TRAIN_WINDOWS),
        }
    )


NAB_MIN_TRAIN_WINDOWS = 100


def benchmark_series(
    path: str | Path,
    labels_path: str | Path,
    config: SeriesConfig,
    engine: EngineConfig,
    timestamp_column: str = "timestamp",
    throughput_rows: int = 50_000,
    progress: tqdm | None = None,
    protocol: str = "split",
    point_scores: dict | None = None,
) -> list[dict]:
    """Records of every method on one series. With `point_scores` (a dict), also fills it with what NAB scores:
    the series, its windows and each method's anomaly score in [0, 1] for every point (0 where unscored)."""
    series = read_series(path, timestamp_column, config.window, timestamp_policy=config.timestamp_policy)
    windows = label_windows(labels_path, path)
    labels = point_labels(series.timestamps, windows)
    if protocol == "nab":
        config = nab_protocol(config, len(series))
    fit = train_series(series, config, engine, labels, timestamp_column)
    data = fit.data
    test, train = data.part(data.test), data.part(data.train)
    if not has_both_classes(test.labels) and protocol != "nab":
        raise DataError(
            f"the test period (last {1 - config.train_fraction - config.validation_fraction:.0%}) "
            "holds no labelled anomaly, so AUROC is undefined there"
        )
    test_rows, train_rows = (t.features.to_numpy(dtype=np.float64) for t in (test, train))
    stamps = series.timestamps.iloc[data.end[data.test]].to_numpy()
    speed_rows = throughput_sample(test, throughput_rows, engine.seed)
    methods = _methods(fit, series.values.shape[1], config.window, engine.seed)
    if point_scores is not None:
        point_scores.update(
            series=series,
            labels=labels,
            windows=window_bounds(series.timestamps, windows),
            raw=(raw := _raw_scores(methods, data)),
            # the training windows are the reference, as for the thresholds; not scored again
            scores={m: unit_point_scores(r, data.end[data.train], data.end[data.test]) for m, r in raw.items()},
        )
    if not has_both_classes(test.labels):  # NAB still scores the file (every alarm a false positive); AUROC cannot
        return []
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
    return [
        {**r, "teacher_kind": fit.teacher_kind, "teacher_choice": fit.choice, "seed": engine.seed, "protocol": protocol}
        for r in records
    ]


def online_replay(
    name: str, series: Series, labels: np.ndarray, config: OnlineConfig, seed: int
) -> tuple[list[dict], dict[str, np.ndarray]]:
    """NAB's rules through the online detector, with each scorer: every point of the first value column in file
    order, scored from the points before it and then learnt from; the probationary points are not scored (0).
    Records (AUROC when the scored points hold both classes, speed, size) and each method's scores."""
    values = series.values.iloc[:, 0].to_numpy()
    scored = np.arange(len(values)) >= probation_length(len(values))
    records, scores = [], {}
    for method, scorer in ONLINE_METHODS.items():
        settings = config.model_copy(update={"scorer": scorer, "seed": seed})
        detector = OnlineSeriesDetector(settings)
        start = time.perf_counter()
        scores[method] = np.where(scored, detector.score(values), 0.0)
        record = {
            "dataset": name,
            "method": method,
            "seed": seed,
            "protocol": "nab",
            "fit_seconds": time.perf_counter() - start,
            "refresh_seconds": detector.refresh_seconds,
            "refreshes": detector.refreshes,
            "params": detector.n_params,
        }
        record["score_rows_per_second"], record["model_rows_per_second"] = request_path_speed(settings, values)
        if has_both_classes(labels[scored]):
            record |= detection_metrics(labels[scored], scores[method][scored], settings.alarm_level)
        records.append(record)
    return records, scores


def request_path_speed(settings: OnlineConfig, values: np.ndarray) -> tuple[float, float]:
    """Points per second of one-point calls (what a live request costs), after the probationary period, with the
    time spent in refreshes left out (those run between requests: the teacher and the distillation); and of the
    scorer alone on those points' windows, one at a time (the part the student replaces)."""
    start_at = probation_length(len(values))
    detector = OnlineSeriesDetector(settings)
    detector.score(values[:start_at])
    points = values[start_at : start_at + SPEED_POINTS]
    before, start = detector.refresh_seconds, time.perf_counter()
    for value in points:
        detector.score(value)
    calls = len(points) / max(time.perf_counter() - start - (detector.refresh_seconds - before), 1e-9)
    rows = detector.window_rows(values[max(start_at - settings.window + 1, 0) : start_at + SPEED_POINTS])
    scorer, start = detector.scorer(), time.perf_counter()
    for row in rows:
        scorer.score(row[None])
    return calls, len(rows) / max(time.perf_counter() - start, 1e-9)


def _raw_scores(methods: dict, data) -> dict[str, np.ndarray]:
    """Each method's own score for every point that ends a window, training period included (NaN before)."""
    rows = data.table.features.to_numpy(dtype=np.float64)
    scored = {}
    for method, (_, score, _, _) in methods.items():
        full = np.full(len(data.series), np.nan)
        full[data.end] = score(rows)
        scored[method] = full
    return scored


def _series_job(
    path: str,
    seed: int,
    labels_path: str,
    settings: dict,
    engine: dict,
    timestamp_column: str,
    rows: int,
    protocol: str,
    online: dict | None = None,
) -> tuple[list[dict], str | None, dict | None]:
    """One (series, seed) run in a worker: its records, why it was skipped (or None) and its NAB inputs. Under the
    NAB protocol every file is scored: a file the frozen models cannot fit on still has its online scores, and
    the frozen methods score 0 there (they never alarm), with the reason."""
    torch.set_num_threads(1)
    config, engine_config = SeriesConfig.model_validate(settings), EngineConfig.model_validate({**engine, "seed": seed})
    points: dict = {}
    try:
        records, reason = (
            benchmark_series(path, labels_path, config, engine_config, timestamp_column, rows, None, protocol, points),
            None,
        )
    except DataError as error:
        records, reason = [], f"{Path(path).name}: {error}"
        if protocol != "nab":
            return [], reason, None
    if protocol != "nab":
        return records, reason, {"name": "/".join(Path(path).parts[-2:]), "seed": seed, **points}
    if not points:  # the frozen models failed on this file: read it again for the online ones
        series = read_series(path, timestamp_column, 2, timestamp_policy=config.timestamp_policy)
        labels = point_labels(series.timestamps, label_windows(labels_path, path))
        zeros = np.zeros(len(series))
        points.update(
            series=series,
            labels=labels,
            windows=window_bounds(series.timestamps, label_windows(labels_path, path)),
            raw={m: zeros for m in METHODS},
            scores={m: zeros for m in METHODS},
        )
    online_records, online_scores = online_replay(
        Path(path).stem, points["series"], points["labels"], OnlineConfig.model_validate(online or {}), seed
    )
    points["scores"] |= online_scores
    points["raw"] |= online_scores
    return records + online_records, reason, {"name": "/".join(Path(path).parts[-2:]), "seed": seed, **points}


def run_series_benchmark(
    paths: list[str],
    labels_path: str,
    config: SeriesConfig,
    engine: EngineConfig,
    timestamp_column: str = "timestamp",
    throughput_rows: int = 50_000,
    protocol: str = "split",
    seeds: list[int] | None = None,
    workers: int = 1,
    nab_results: str | None = None,
    online: OnlineConfig | None = None,
) -> tuple[list[dict], list[str], dict]:
    """Records of every (series, seed) that can be evaluated, why each other one could not (too short, no label
    windows, none in the test period, bad timestamps) and, under the NAB protocol, the NAB scores per seed.
    Raises when no series can be evaluated."""
    seeds = seeds or [engine.seed]
    online_settings = (online or OnlineConfig()).model_dump()
    args = (labels_path, config.model_dump(), engine.model_dump(), timestamp_column, throughput_rows, protocol)
    args += (online_settings,)
    results = run_jobs(_series_job, [(p, s, *args) for p, s in largest_first(paths, seeds)], workers)
    records = [r for result in results for r in result[0]]
    skipped = list(dict.fromkeys(sorted(reason for _, reason, _ in results if reason)))  # once, not per seed
    if not records and not any(points for _, _, points in results):
        raise DataError("no series could be evaluated:\n" + "\n".join(f"  - {s}" for s in skipped))
    scored = sorted((points for _, _, points in results if points), key=lambda p: (p["seed"], p["name"]))
    nab = nab_by_seed(scored) if protocol == "nab" else {}
    if nab_results:
        write_nab_results(nab_results, scored, first_seed=seeds[0])
    order = {Path(p).stem: i for i, p in enumerate(paths)}
    return sorted(records, key=lambda r: (order[r["dataset"]], r["seed"])), skipped, nab


def nab_by_seed(scored: list[dict]) -> dict[str, dict[int, dict]]:
    """{method: {seed: NAB scores per profile}} over the corpus of series scored with that seed."""
    result: dict[str, dict[int, dict]] = {}
    for seed in sorted({p["seed"] for p in scored}):
        corpus = [p for p in scored if p["seed"] == seed]
        for method in corpus[0]["scores"]:
            files = [ScoredFile(p["name"], p["scores"][method], p["windows"]) for p in corpus]
            result.setdefault(method, {})[seed] = nab_scores(files)
    return result


def write_nab_results(directory: str, scored: list[dict], first_seed: int) -> None:
    """Per-point scores in NAB's results layout, one detector folder per method (NAB's scorer reads them); the
    first seed's as `<method>`, other seeds' as `<method>-seed<N>`."""
    for points in scored:
        series = points["series"]
        suffix = "" if points["seed"] == first_seed else f"-seed{points['seed']}"
        for method, scores in points["scores"].items():
            frame = pd.DataFrame(
                {
                    "timestamp": series.timestamps.dt.strftime("%Y-%m-%d %H:%M:%S").to_numpy(),
                    "value": series.values.iloc[:, 0].to_numpy(),
                    "anomaly_score": scores,
                    "label": points["labels"],
                }
            )
            write_result_file(directory, method + suffix, points["name"], frame)
            raw = frame.assign(anomaly_score=points["raw"][method])  # the method's own scale, for post-processing
            write_result_file(Path(directory) / "raw", method + suffix, points["name"], raw)


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


def seeds_acceptance(records: list[dict], nab: dict) -> list[tuple[str, bool]]:
    """The issue-14 series targets on seed means."""
    auroc = set_means(records, "auroc")
    rows = {r["method"]: r for r in summary(records)}
    close = [d for d in auroc if auroc[d]["student"] >= auroc[d]["teacher"] - 0.02]
    need = len(auroc) - 2
    baseline = max(("iforest", "zscore"), key=lambda m: rows[m]["mean_auroc"])
    checks = [
        (f"student AUROC >= teacher - 0.02 on {len(close)}/{len(auroc)} series (need {need})", len(close) >= need),
        (
            f"mean AUROC student {rows['student']['mean_auroc']:.4f} >= better baseline ({baseline}) "
            f"{rows[baseline]['mean_auroc']:.4f}",
            rows["student"]["mean_auroc"] >= rows[baseline]["mean_auroc"],
        ),
    ]
    if nab and "online-student" in nab:
        checks += online_acceptance(records, nab)
    return checks


def nab_mean(nab: dict, method: str, profile: str) -> float:
    return float(np.mean([s[profile]["score"] for s in nab[method].values()]))


def online_acceptance(records: list[dict], nab: dict) -> list[tuple[str, bool]]:
    """The online series targets: NAB scores of the student, its gap to its teacher, its request-path speed."""
    student = {p: nab_mean(nab, "online-student", p) for p in ("standard", "reward_low_FP_rate", "reward_low_FN_rate")}
    teacher = {p: nab_mean(nab, "online-teacher", p) for p in student}
    speed = {
        m: float(np.median([r["score_rows_per_second"] for r in records if r["method"] == m])) for m in ONLINE_METHODS
    }
    ratio = speed["online-student"] / speed["online-teacher"]
    alone = {
        m: float(np.median([r["model_rows_per_second"] for r in records if r["method"] == m])) for m in ONLINE_METHODS
    }
    checks = [
        (f"online student NAB standard {student['standard']:.1f} >= 70", student["standard"] >= 70),
        (
            f"(stretch) online student NAB standard {student['standard']:.1f} > 76.8 (ARTime)",
            student["standard"] > 76.8,
        ),
        (
            f"online student reward_low_FP_rate {student['reward_low_FP_rate']:.1f} >= 60",
            student["reward_low_FP_rate"] >= 60,
        ),
        (
            f"online student reward_low_FN_rate {student['reward_low_FN_rate']:.1f} >= 75",
            student["reward_low_FN_rate"] >= 75,
        ),
    ]
    checks += [
        (
            f"online student within 2 of its teacher on {p}: {student[p]:.1f} vs {teacher[p]:.1f}",
            student[p] >= teacher[p] - 2,
        )
        for p in student
    ]
    checks.append((f"online student request-path points/s {ratio:.1f}x its teacher's >= 20x", ratio >= 20))
    scorer_ratio = alone["online-student"] / alone["online-teacher"]
    checks.append((f"(scorer alone) student points/s {scorer_ratio:.1f}x the teacher's >= 20x", scorer_ratio >= 20))
    return checks


def format_online_speed(records: list[dict]) -> str:
    """Median over (series, seed) of each online method's request-path points/s, replay and refresh time."""
    lines = [
        "| method | points/s, one-point calls (median) | replay s per file (median) | refreshes per file "
        "(median) | of which refresh s (median) | params (median) | scorer alone, points/s (median) |",
        "|---|---|---|---|---|---|---|",
    ]
    for method in ONLINE_METHODS:
        rows = [r for r in records if r["method"] == method]
        med = {
            k: float(np.median([r[k] for r in rows]))
            for k in (
                "score_rows_per_second",
                "fit_seconds",
                "refreshes",
                "refresh_seconds",
                "params",
                "model_rows_per_second",
            )
        }
        lines.append(
            f"| {method} | {med['score_rows_per_second']:,.0f} | {med['fit_seconds']:.1f} | {med['refreshes']:.0f} "
            f"| {med['refresh_seconds']:.1f} | {med['params']:,.0f} | {med['model_rows_per_second']:,.0f} |"
        )
    return "\n".join(lines)


def format_nab(nab: dict) -> str:
    """Normalised NAB score (null 0, perfect 100) per method and profile, mean ± std over seeds."""
    profiles = list(next(iter(next(iter(nab.values())).values())))
    lines = ["| method | " + " | ".join(profiles) + " |", "|---|" + "---|" * len(profiles)]
    for method, by_seed in nab.items():
        cells = [mean_std(np.array([s[p]["score"] for s in by_seed.values()]), 1) for p in profiles]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def format_seeds(records: list[dict], nab: dict) -> str:
    auroc = set_means(records, "auroc")
    seeds = sorted({r["seed"] for r in records})
    protocol = records[0]["protocol"]
    lines = [
        f"{len(auroc)} series x seeds {seeds}, protocol {protocol}: AUROC is the mean over seeds per series, "
        "then over series.",
        "",
        format_summary(summary(records)),
        "",
        format_per_set(records),
    ]
    if nab:
        lines += [
            "",
            "NAB score over these series (corpus threshold per method, profile and seed):",
            "",
            format_nab(nab),
        ]
    if any(r["method"] in ONLINE_METHODS for r in records):
        lines += ["", "Online detectors, speed and refreshes:", "", format_online_speed(records)]
    return "\n".join(lines + [""] + checklist(seeds_acceptance(records, nab)))


OFFICIAL_LINE = re.compile(r"Final score for '([^']+)' detector on '([^']+)' profile = (-?[0-9.]+)")


def official_nab_scores(
    score_sh: str | Path, results: str | Path, detectors: list[str], paths: list[str], labels_path: str | Path
) -> dict[str, dict]:
    """NAB's own scorer (`score.sh RESULTS DETECTORS DATA`, NAB's code) over the results written, on exactly the
    benchmarked files (NAB normalises over the corpus it is given): {detector: {profile: score}}. A scorer that
    fails is an error with its output, not a missing column."""
    with tempfile.TemporaryDirectory() as corpus:
        for path in paths:
            target = Path(corpus, *Path(path).parts[-2:])
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
        (Path(corpus) / "labels").mkdir(exist_ok=True)
        shutil.copyfile(labels_path, Path(corpus) / "labels" / "combined_windows.json")
        done = subprocess.run(
            ["bash", str(score_sh), str(results), ",".join(detectors), corpus],
            capture_output=True,
            text=True,
            check=False,
        )
    found: dict[str, dict] = {}
    for detector, profile, value in OFFICIAL_LINE.findall(done.stdout):
        found.setdefault(detector, {})[profile] = float(value)
    if done.returncode or set(found) != set(detectors):
        raise DataError(
            f"NAB's scorer {score_sh} failed (exit {done.returncode}):\n{done.stdout[-2000:]}{done.stderr[-2000:]}"
        )
    return found


def format_official(nab: dict, official: dict[str, dict], seed: int) -> str:
    """Ours and NAB's scorer side by side on the same result files (seed `seed`), every profile."""
    lines = ["| method | profile | ours | NAB's scorer | difference |", "|---|---|---|---|---|"]
    for method, by_profile in official.items():
        for profile, theirs in by_profile.items():
            ours = nab[method][seed][profile]["score"]
            lines.append(f"| {method} | {profile} | {ours:.2f} | {theirs:.2f} | {ours - theirs:+.2f} |")
    return "\n".join(lines)
