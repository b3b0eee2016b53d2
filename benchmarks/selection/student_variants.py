"""Try a change to the online series student on all 36 NAB series, several seeds, without changing the library.

Each variant sets some `OnlineConfig` settings and/or patches `anomaly_distill.series.online` inside the worker
processes (the library keeps its default), then replays every file through `OnlineSeriesDetector` under NAB's rules
exactly as `choose_online.py` does, and scores the three profiles with our NAB scorer (which agrees with NAB's own
within 0.1, BENCHMARKS.md). This is a screen, not a selection: its figures are in-sample on the 36 files, so a
variant that wins here still has to win leave-one-folder-out before it becomes a default (`--lofo`). The variants
marked "diagnostic" are not candidates: they put the teacher on the request path, change the teacher, or are not
distilled from it; they say where the student loses.

Usage: python benchmarks/selection/student_variants.py (VARIANT [VARIANT ...] | --all) [--seeds 0 1 2] [--lofo]
       [--json OUT]   (--lofo: also choose between the given variants leave-one-folder-out, per seed)
       (python benchmarks/selection/student_variants.py --list shows the variants)
"""

import argparse
import json
import time
from multiprocessing import Pool
from pathlib import Path

import numpy as np
from choose_online import leave_one_folder_out, read_corpus  # this folder (the script's) is on the path
from online_ablation import profile_scores, table

import anomaly_distill.series.online as online
from anomaly_distill.config import OnlineConfig
from benchmarking.nab import PROFILES, probation_length

Student = online.PrototypeStudent
Detector = online.OnlineSeriesDetector


def quadrature(floor: bool):
    """Score sqrt(d² + s) to the nearest centre, s fitted as the median of teacher² − d² over its windows: the
    expected squared distance to a cluster's members, so a far window scores its distance, not distance − offset."""

    def score(self, rows):
        squared = np.maximum(online.squared_distances(rows, self.centres, self.norms), 0.0)
        return np.log1p(np.sqrt(np.maximum(squared + self.offsets[None], 0.0)).min(1))

    def distil(cls, reference, targets, prototypes, seed, residuals=0):
        centres = online.kmeans(reference, min(prototypes, len(reference)), np.random.default_rng(seed))
        squared = np.maximum(online.squared_distances(reference, centres), 0.0)
        nearest = squared.argmin(1)
        gaps = np.expm1(targets) ** 2 - squared[np.arange(len(reference)), nearest]
        offsets = np.array([np.median(gaps[nearest == p]) if any(nearest == p) else 0.0 for p in range(len(centres))])
        return cls(centres, np.maximum(offsets, 0.0) if floor else offsets)

    Student.score, Student.distil = score, classmethod(distil)


class Bag:
    def __init__(self, members):
        self.members = members

    def score(self, rows):
        return np.mean([m.score(rows) for m in self.members], 0)


def bagged(size: int):
    """The mean score of `size` students from k-means runs with different seeds."""
    one = Student.distil.__func__
    Student.distil = classmethod(
        lambda cls, reference, targets, prototypes, seed, residuals=0: Bag(
            [one(cls, reference, targets, prototypes, seed * 1000 + i, residuals) for i in range(size)]
        )
    )


def soft_minimum(tau: float):
    """A soft minimum over the centres' (distance − offset) instead of the hard one."""

    def score(self, rows):
        gaps = self._distances(rows) - self.offsets[None]
        low = gaps.min(1, keepdims=True)
        return np.log1p(np.maximum(low[:, 0] - tau * np.log(np.exp(-(gaps - low) / tau).sum(1)), 0.0))

    Student.score = score


def warm_started():
    """k-means starts from the previous refresh's centres (carried into the new normalisation) instead of k-means++,
    so that the student changes as gradually as the teacher's sliding reference."""
    refresh, distil = Detector.refresh, Detector._distil

    def remembering_refresh(self):
        self._previous = (self.center, self.scale, self.student)
        refresh(self)

    def warm_distil(self, reference, targets):
        center, scale, student = getattr(self, "_previous", (0.0, 1.0, None))
        if student is None:
            return distil(self, reference, targets)
        start = (student.centres * scale + center - self.center) / self.scale
        return Student.with_offsets(online.lloyd(reference, start), reference, targets)

    Detector.refresh, Detector._distil = remembering_refresh, warm_distil


def in_coarse_views(**update):
    """Change the coarser views' settings only (the main view keeps the default)."""
    coarse = OnlineConfig.coarse
    OnlineConfig.coarse = lambda self, scale: coarse(self, scale).model_copy(update=update)


def excluding_overlaps(band: int):
    """The teacher's leave-one-out scores (the student's targets) also leave out the windows that overlap a window
    by more than `band` − 1 points: a new window meets no such near-copy of itself in the reference."""

    def score(self, rows, leave_one_out=False):
        squared = online.squared_distances(rows, self.reference, self.norms)
        if leave_one_out:
            index = np.arange(len(rows))
            squared[np.abs(index[:, None] - index[None]) < band] = np.inf
        nearest = np.partition(np.maximum(squared, 0.0), self.k - 1, axis=1)[:, : self.k]
        return np.log1p(np.sqrt(nearest).mean(1))

    online.KnnTeacher.score = score


def coarse_subsample(step: int):
    """Diagnostic: the coarser views scored by the teacher's k-NN over every step-th reference window."""
    distil = Detector._distil

    def subsampled(self, reference, targets):
        if self.config.coarse_scales:  # the main view keeps its prototypes
            return distil(self, reference, targets)
        return online.KnnTeacher(reference[::step], self.config.neighbours)

    Detector._distil = subsampled


class NextMeanPredictor:
    """Ridge regression of a window's last value on the ones before it; scores the absolute error, as log(1 + e)."""

    def __init__(self, reference: np.ndarray, ridge: float = 1e-3):
        inputs = np.hstack([reference[:, :-1], np.ones((len(reference), 1))])
        gram = inputs.T @ inputs + ridge * len(reference) * np.eye(inputs.shape[1])
        self.weights = np.linalg.solve(gram, inputs.T @ reference[:, -1])

    def score(self, rows):
        return np.log1p(np.abs(rows[:, -1] - rows[:, :-1] @ self.weights[:-1] - self.weights[-1]))


def coarse_predictor():
    """Diagnostic, not a student of the teacher: the coarser views scored by a linear predictor of the window's last
    mean (16 numbers), fitted on the reference at each refresh."""
    distil = Detector._distil

    def predicting(self, reference, targets):
        return distil(self, reference, targets) if self.config.coarse_scales else NextMeanPredictor(reference)

    Detector._distil = predicting


def iqr(values: np.ndarray) -> float:
    return max(np.subtract(*np.percentile(values, [75, 25])), 1e-9)


class Sum:
    """Scores of several scorers added, each in its own units (its interquartile range over the reference)."""

    def __init__(self, scorers, units):
        self.scorers, self.units = scorers, units

    def score(self, rows):
        return sum(s.score(rows) / unit for s, unit in zip(self.scorers, self.units))


def coarse_prototypes_and_predictor():
    """The coarser views scored by the prototype student plus the linear predictor, each in its own units."""
    distil = Detector._distil

    def both(self, reference, targets):
        student = distil(self, reference, targets)
        if self.config.coarse_scales:
            return student
        scorers = [student, NextMeanPredictor(reference)]
        return Sum(scorers, [iqr(s.score(reference)) for s in scorers])

    Detector._distil = both


def coarse_teacher_and_predictor():
    """Diagnostic: the teacher's coarser views also add the linear predictor (what the student's views would follow)."""
    refresh = Detector.refresh

    def refresh_with_predictor(self):
        refresh(self)
        if self.config.coarse_scales or self.config.scorer != "teacher":
            return
        predictor = NextMeanPredictor(self.teacher.reference)
        predicted, own = predictor.score(self.teacher.reference), self.teacher.score(self.teacher.reference, True)
        self.teacher = Sum([predictor, self.teacher], [iqr(predicted), iqr(own)])
        self._calibrate_frame(predicted / self.teacher.units[0] + own / self.teacher.units[1])

    Detector.refresh = refresh_with_predictor


# The screen of `student_variants.{json,md}` ran when the student's scores were read on its own frame
# (`frame: student`) and the coarser views had no residual prototypes: its variants keep both settings (BEFORE), so
# they re-run to the recorded figures, and that record's "default" row is "student's own frame (the default before)"
# here. `student_frames.{json,md}`: the screen that changed the default to `frame: teacher`, without residual
# prototypes in the coarser views (FRAMES; its "default" row is "no residual prototypes in the coarser views" here).
# `student_residuals.{json,md}`: the screen that set `coarse_residual_prototypes: 16`.
FRAMES = {"coarse_residual_prototypes": 0}
BEFORE = {"frame": "student", **FRAMES}
VARIANTS = {
    "default": (lambda: None, {}),
    "no residual prototypes in the coarser views": (lambda: None, FRAMES),
    "coarser views: 32 residual prototypes": (lambda: None, {"coarse_residual_prototypes": 32}),
    "student's own frame (the default before)": (lambda: None, BEFORE),
    "coarse views only: the teacher's frame": (lambda: in_coarse_views(frame="teacher"), BEFORE),
    "quadrature": (lambda: quadrature(False), BEFORE),
    "quadrature, floor 0": (lambda: quadrature(True), BEFORE),
    "bag of 2": (lambda: bagged(2), BEFORE),
    "bag of 3": (lambda: bagged(3), BEFORE),
    "soft minimum 0.1": (lambda: soft_minimum(0.1), BEFORE),
    "soft minimum 0.3": (lambda: soft_minimum(0.3), BEFORE),
    "warm-started k-means": (warm_started, BEFORE),
    "coarse views: 16 prototypes": (lambda: in_coarse_views(prototypes=16), BEFORE),
    "coarse views: 64 prototypes": (lambda: in_coarse_views(prototypes=64), BEFORE),
    "coarse views: 128 prototypes": (lambda: in_coarse_views(prototypes=128), BEFORE),
    "coarse views: 16 residual prototypes": (lambda: in_coarse_views(residual_prototypes=16), BEFORE),
    "coarse views: 32 residual prototypes": (lambda: in_coarse_views(residual_prototypes=32), BEFORE),
    "targets without overlaps, band 4": (lambda: excluding_overlaps(4), BEFORE),
    "targets without overlaps, band 16": (lambda: excluding_overlaps(16), BEFORE),
    "diagnostic: teacher in the coarse views": (lambda: in_coarse_views(scorer="teacher"), BEFORE),
    "diagnostic: teacher in the main view": (
        lambda: in_coarse_views(scorer="student"),
        {"scorer": "teacher", **BEFORE},
    ),
    "diagnostic: coarse views, k-NN on every 2nd window": (lambda: coarse_subsample(2), BEFORE),
    "diagnostic: coarse views, k-NN on every 4th window": (lambda: coarse_subsample(4), BEFORE),
    "diagnostic: coarse views, a linear predictor of the last mean": (coarse_predictor, BEFORE),
    "coarse views: prototypes + the linear predictor": (coarse_prototypes_and_predictor, BEFORE),
    "diagnostic: teacher, coarse views + the linear predictor": (
        coarse_teacher_and_predictor,
        {"scorer": "teacher", **BEFORE},
    ),
}
_patched: list[str] = []


def replay(job: tuple[str, dict, int]) -> np.ndarray:
    variant, series, seed = job
    if not _patched:  # once per worker process: the patches wrap what is there
        VARIANTS[variant][0]()
        _patched.append(variant)
    scores = Detector(OnlineConfig(seed=seed, **VARIANTS[variant][1])).score(series["values"])
    scores[: probation_length(len(scores))] = 0.0
    return scores


def evaluate(variant: str, corpus: list[dict], seeds: list[int], workers: int, kept: dict) -> dict:
    """Every seed's NAB scores of one variant (profiles, then folders); `kept[seed][variant]`: its scores per file."""
    runs, start = [], time.perf_counter()
    with Pool(workers) as pool:  # a fresh pool per variant: its workers are forked from the unpatched parent
        for seed in seeds:
            scores = pool.map(replay, [(variant, s, seed) for s in corpus])
            kept.setdefault(seed, {})[variant] = {s["name"]: v for s, v in zip(corpus, scores)}
            runs.append(profile_scores(corpus, kept[seed][variant]))
            print(variant, seed, runs[-1], flush=True)
    return {"seeds": seeds, "runs": runs, "seconds": round(time.perf_counter() - start)}


def cross_validated(corpus: list[dict], kept: dict) -> dict:
    """Per seed, each folder scored by the variant with the best standard score on the other four folders (that
    seed's runs, `choose_online.leave_one_folder_out`); the 36 files together, every profile."""
    out = {}
    for seed, by_variant in kept.items():
        chosen = leave_one_folder_out(corpus, by_variant)
        crossed = {s["name"]: by_variant[chosen[s["name"].split("/")[0]]][s["name"]] for s in corpus}
        scores = profile_scores(corpus, crossed)
        out[seed] = {"chosen": chosen, **{p: scores[p] for p in PROFILES}}
        print("leave-one-folder-out, seed", seed, out[seed], flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variants", nargs="*")
    parser.add_argument("--list", action="store_true")
    parser.add_argument("--all", action="store_true", help="every variant, in the order of --list")
    parser.add_argument("--data", default="../shared/data/nab")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json")
    parser.add_argument("--lofo", action="store_true", help="also choose between the variants leave-one-folder-out")
    args = parser.parse_args()
    if args.all:
        args.variants = list(VARIANTS)
    if args.list or not args.variants:
        print("\n".join(VARIANTS))
        return
    unknown = [v for v in args.variants if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variants {unknown}; --list shows them")
    corpus = read_corpus(Path(args.data))
    kept = {}
    report = {v: evaluate(v, corpus, args.seeds, args.workers, kept if args.lofo else {}) for v in args.variants}
    print(table({v: r["runs"] for v, r in report.items()}))
    if args.lofo:
        chosen = cross_validated(corpus, kept)
        report["leave-one-folder-out"] = chosen
        for p in PROFILES:
            values = [c[p] for c in chosen.values()]
            print(f"leave-one-folder-out {p}: {np.mean(values):.1f} ± {np.std(values):.1f}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
