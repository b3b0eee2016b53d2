"""Try a change to the online series student on all 36 NAB series, several seeds, without changing the library.

Each variant patches `anomaly_distill.series.online` inside the worker processes (the library keeps its default),
then replays every file through `OnlineSeriesDetector` under NAB's rules exactly as `choose_online.py` does, and
scores the three profiles with our NAB scorer (which agrees with NAB's own within 0.1, BENCHMARKS.md). This is a
screen, not a selection: its figures are in-sample on the 36 files, so a variant that wins here still has to win
leave-one-folder-out before it becomes a default (`--lofo`). The variants marked "diagnostic" are not candidates:
they put the teacher on the request path, change the teacher, or are not distilled from it; they say where the
student loses.

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
from choose_online import read_corpus  # this folder (the script's) is on the path

import anomaly_distill.series.online as online
from anomaly_distill.config import OnlineConfig
from benchmarking.nab import PROFILES, ScoredFile, nab_scores, probation_length

Student = online.PrototypeStudent
Detector = online.OnlineSeriesDetector


def fitted(centres: np.ndarray, reference: np.ndarray, targets: np.ndarray) -> online.PrototypeStudent:
    """The default offsets (median gap to the teacher over each centre's windows) for given centres."""
    distances = Student(centres, np.zeros(len(centres)))._distances(reference)
    nearest = distances.argmin(1)
    gaps = distances[np.arange(len(reference)), nearest] - np.expm1(targets)
    offsets = [np.median(gaps[nearest == p]) if np.any(nearest == p) else 0.0 for p in range(len(centres))]
    return Student(centres, np.asarray(offsets, dtype=np.float64))


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


def lloyd(rows: np.ndarray, centres: np.ndarray, iterations: int = 25) -> np.ndarray:
    centres, assigned = centres.copy(), None
    for _ in range(iterations):
        nearest = online.squared_distances(rows, centres).argmin(1)
        if assigned is not None and np.array_equal(assigned, nearest):
            break
        assigned = nearest
        for p in np.unique(assigned):
            centres[p] = rows[assigned == p].mean(0)
    return centres


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
        return fitted(lloyd(reference, start), reference, targets)

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


class Sum:
    """Scores of several scorers added, each in units of its own interquartile range over the reference."""

    def __init__(self, scorers, reference):
        self.scorers = scorers
        self.units = [max(np.subtract(*np.percentile(s.score(reference), [75, 25])), 1e-9) for s in scorers]

    def score(self, rows):
        return sum(s.score(rows) / unit for s, unit in zip(self.scorers, self.units))


def coarse_prototypes_and_predictor():
    """The coarser views scored by the prototype student plus the linear predictor, each in its own units."""
    distil = Detector._distil

    def both(self, reference, targets):
        student = distil(self, reference, targets)
        return student if self.config.coarse_scales else Sum([student, NextMeanPredictor(reference)], reference)

    Detector._distil = both


def coarse_teacher_and_predictor():
    """Diagnostic: the teacher's coarser views also add the linear predictor (what the student's views would follow)."""
    refresh = Detector.refresh

    def refresh_with_predictor(self):
        refresh(self)
        if self.config.coarse_scales or self.config.scorer != "teacher":
            return
        teacher = self.teacher
        reference = teacher.reference
        combined = Sum([NextMeanPredictor(reference)], reference)
        own = teacher.score(reference, leave_one_out=True)
        unit = max(np.subtract(*np.percentile(own, [75, 25])), 1e-9)
        combined.scorers.append(teacher)
        combined.units.append(unit)
        self.teacher = combined
        self._calibrate_frame(own / unit + combined.scorers[0].score(reference) / combined.units[0])

    Detector.refresh = refresh_with_predictor


VARIANTS = {
    "default": (lambda: None, {}),
    "quadrature": (lambda: quadrature(False), {}),
    "quadrature, floor 0": (lambda: quadrature(True), {}),
    "bag of 2": (lambda: bagged(2), {}),
    "bag of 3": (lambda: bagged(3), {}),
    "soft minimum 0.1": (lambda: soft_minimum(0.1), {}),
    "soft minimum 0.3": (lambda: soft_minimum(0.3), {}),
    "warm-started k-means": (warm_started, {}),
    "coarse views: 16 prototypes": (lambda: in_coarse_views(prototypes=16), {}),
    "coarse views: 64 prototypes": (lambda: in_coarse_views(prototypes=64), {}),
    "coarse views: 128 prototypes": (lambda: in_coarse_views(prototypes=128), {}),
    "coarse views: 16 residual prototypes": (lambda: in_coarse_views(residual_prototypes=16), {}),
    "coarse views: 32 residual prototypes": (lambda: in_coarse_views(residual_prototypes=32), {}),
    "targets without overlaps, band 4": (lambda: excluding_overlaps(4), {}),
    "targets without overlaps, band 16": (lambda: excluding_overlaps(16), {}),
    "diagnostic: teacher in the coarse views": (lambda: in_coarse_views(scorer="teacher"), {}),
    "diagnostic: teacher in the main view": (lambda: in_coarse_views(scorer="student"), {"scorer": "teacher"}),
    "diagnostic: coarse views, k-NN on every 2nd window": (lambda: coarse_subsample(2), {}),
    "diagnostic: coarse views, k-NN on every 4th window": (lambda: coarse_subsample(4), {}),
    "diagnostic: coarse views, a linear predictor of the last mean": (coarse_predictor, {}),
    "coarse views: prototypes + the linear predictor": (coarse_prototypes_and_predictor, {}),
    "diagnostic: teacher, coarse views + the linear predictor": (coarse_teacher_and_predictor, {"scorer": "teacher"}),
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


def evaluate(variant: str, corpus: list[dict], seeds: list[int], workers: int, kept: dict | None = None) -> dict:
    """Every seed's NAB scores of one variant; `kept` (if given) receives its files per seed, for `--lofo`."""
    runs, start = [], time.perf_counter()
    with Pool(workers) as pool:  # a fresh pool per variant: its workers are forked from the unpatched parent
        for seed in seeds:
            scores = pool.map(replay, [(variant, s, seed) for s in corpus])
            files = [ScoredFile(s["name"], v, s["windows"]) for s, v in zip(corpus, scores)]
            result = nab_scores(files, PROFILES)
            folders = sorted({f.name.split("/")[0] for f in files})
            by_folder = {
                d: nab_scores([f for f in files if f.name.startswith(d + "/")], ("standard",))["standard"]["score"]
                for d in folders
            }
            runs.append({"seed": seed, **{p: result[p]["score"] for p in PROFILES}, "folders": by_folder})
            if kept is not None:
                kept.setdefault(seed, {})[variant] = files
            print(variant, runs[-1], flush=True)
    return {"runs": runs, "seconds": round(time.perf_counter() - start)}


def leave_one_folder_out(kept: dict) -> dict:
    """Per seed, each folder's files scored by the variant with the best standard score on the other four folders
    (that seed's runs); the 36 together, every profile. The choice is made between the variants given."""
    out = {}
    for seed, by_variant in kept.items():
        names = {v: {f.name: f for f in files} for v, files in by_variant.items()}
        folders = sorted({name.split("/")[0] for name in next(iter(names.values()))})
        chosen, crossed = {}, []
        for folder in folders:

            def others(v, folder=folder):
                files = [f for n, f in names[v].items() if not n.startswith(folder + "/")]
                return nab_scores(files, ("standard",))["standard"]["score"]

            chosen[folder] = max(by_variant, key=others)
            crossed += [f for n, f in names[chosen[folder]].items() if n.startswith(folder + "/")]
        result = nab_scores(crossed, PROFILES)
        out[seed] = {"chosen": chosen, **{p: result[p]["score"] for p in PROFILES}}
        print("leave-one-folder-out, seed", seed, out[seed], flush=True)
    return out


def table(report: dict) -> str:
    folders = list(next(iter(report.values()))["runs"][0]["folders"])
    lines = [
        "| variant | " + " | ".join((*PROFILES, *folders)) + " |",
        "|---" * (1 + len(PROFILES) + len(folders)) + "|",
    ]
    for variant, result in report.items():
        columns = [[r[p] for r in result["runs"]] for p in PROFILES]
        columns += [[r["folders"][d] for r in result["runs"]] for d in folders]
        cells = [f"{np.mean(c):.1f} ± {np.std(c):.1f}" if len(c) > 1 else f"{c[0]:.1f}" for c in columns]
        lines.append(f"| {variant} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


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
    kept = {} if args.lofo else None
    report = {v: evaluate(v, corpus, args.seeds, args.workers, kept) for v in args.variants}
    print(table(report))
    if kept:
        chosen = leave_one_folder_out(kept)
        report["leave-one-folder-out"] = chosen
        for p in PROFILES:
            values = [c[p] for c in chosen.values()]
            print(f"leave-one-folder-out {p}: {np.mean(values):.1f} ± {np.std(values):.1f}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
