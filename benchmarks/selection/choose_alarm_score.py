"""Choose how a series detector's raw scores become NAB's anomaly_score, by leave-one-folder-out.

Reads the raw per-point scores that `make bench-series-full` writes (outputs/nab-results/raw/<detector>/...),
scores every candidate post-processing with the NAB scorer, and reports a cross-validated NAB score: each
series gets the candidate that is best (standard profile) on the other four NAB folders, then the 36 series
are scored together as NAB does (one corpus threshold). Only the raw streams of one run are used; the models
are not refitted.
Usage: python benchmarks/selection/choose_alarm_score.py RESULTS_DIR LABELS_JSON [DETECTOR ...] [--json OUT]
"""

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from anomaly_distill.series.alarm_scores import likelihood, onset
from benchmarking.nab import ScoredFile, nab_scores, probation_length, unit_point_scores, window_bounds


def unit(raw: np.ndarray) -> np.ndarray:
    """The benchmark's default: each score's place among the probationary period's scores (tail beyond)."""
    valid = ~np.isnan(raw)
    reference = np.flatnonzero(valid)[: max(probation_length(len(raw)) - int((~valid).sum()), 1)]
    return unit_point_scores(raw, reference, valid)


CANDIDATES = {
    "unit (default)": unit,
    **{
        f"likelihood long={lw} short={sw}": (lambda lw, sw: lambda raw: likelihood(raw, lw, sw))(lw, sw)
        for lw in (300, 1000, 3000)
        for sw in (1, 5, 10)
    },
    **{f"onset hold={h}": (lambda h: lambda raw: onset(unit(raw), h))(h) for h in (10, 50, 200)},
    **{
        f"onset hold={h} of likelihood long=1000 short=5": (lambda h: lambda raw: onset(likelihood(raw, 1000, 5), h))(h)
        for h in (10, 50)
    },
}


def load(results: Path, labels: dict, detector: str) -> list[tuple[str, np.ndarray, list]]:
    """(folder/file, raw scores, window bounds) of every series the detector scored."""
    series = []
    for path in sorted((results / "raw" / detector).glob("*/*.csv")):
        frame = pd.read_csv(path)
        name = f"{path.parent.name}/{path.name.removeprefix(detector + '_')}"
        series.append(
            (name, frame["anomaly_score"].to_numpy(dtype=float), window_bounds(frame["timestamp"], labels[name]))
        )
    return series


def score(series, choose) -> float:
    files = [ScoredFile(name, CANDIDATES[choose(name)](raw), windows) for name, raw, windows in series]
    return nab_scores(files, ("standard",))["standard"]["score"]


def choose(series) -> tuple[dict[str, float], dict[str, str], float]:
    """Every candidate's NAB standard score on all series, the candidate chosen without each folder, and the
    cross-validated score (each series scored with the candidate chosen without its folder)."""
    folders = sorted({name.split("/")[0] for name, _, _ in series})
    by_candidate = {c: score(series, lambda _, c=c: c) for c in CANDIDATES}
    chosen = {}
    for folder in folders:
        others = [s for s in series if not s[0].startswith(folder + "/")]
        chosen[folder] = max(CANDIDATES, key=lambda c: score(others, lambda _, c=c: c))
    return by_candidate, chosen, score(series, lambda name: chosen[name.split("/")[0]])


def main(argv: list[str]) -> None:
    results, labels = Path(argv[0]), json.loads(Path(argv[1]).read_text())
    detectors = [a for a in argv[2:] if not a.startswith("--") and not a.endswith(".json")] or ["student"]
    report = {}
    for detector in detectors:
        series = load(results, labels, detector)
        by_candidate, chosen, cross_validated = choose(series)
        report[detector] = {
            "series": len(series),
            "candidates": by_candidate,
            "chosen_without_folder": chosen,
            "cv_score": cross_validated,
        }
    methods = list(dict.fromkeys(d.split("-seed")[0] for d in detectors))
    runs = {m: [d for d in detectors if d.split("-seed")[0] == m] for m in methods}

    def cell(m, value_of) -> str:
        values = np.array([value_of(report[d]) for d in runs[m]])
        return f"{values.mean():.1f}±{values.std():.1f}"

    print(f"NAB standard score, mean±std over {len(runs[methods[0]])} run(s) of each method\n")
    print("| post-processing | " + " | ".join(methods) + " |\n|---|" + "---|" * len(methods))
    for c in CANDIDATES:
        print(f"| {c} | " + " | ".join(cell(m, lambda r, c=c: r["candidates"][c]) for m in methods) + " |")
    print("| **leave-one-folder-out choice** | " + " | ".join(cell(m, lambda r: r["cv_score"]) for m in methods) + " |")
    print("\nchoices without each folder:")
    for d in detectors:
        print(f"- {d}: " + "; ".join(f"{f}: {c}" for f, c in report[d]["chosen_without_folder"].items()))
    if "--json" in argv:
        Path(argv[argv.index("--json") + 1]).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main(sys.argv[1:])
