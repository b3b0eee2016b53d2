"""The online detector with coarser views and the mlp student of before (teacher, and student seed 0) in NAB's
results layout, scored by NAB's own code (../shared/nab-scorer/score.sh) and by ours, side by side (BENCHMARKS.md,
"Coarser views"). The default detector (views and the prototype student) is scored by both in `make
bench-series-full`.

Usage: python benchmarks/nab_views_official.py   (2 workers, ~5 min on 2 cores; results under outputs/nab-views)
"""

import json
from multiprocessing import Pool
from pathlib import Path

import numpy as np
import pandas as pd

from anomaly_distill.config import OnlineConfig
from anomaly_distill.series.online import OnlineSeriesDetector
from benchmarking.nab import ScoredFile, nab_scores, probation_length, window_bounds, write_result_file
from benchmarking.series_benchmark import official_nab_scores

SHARED = Path(__file__).resolve().parents[2] / "shared"
DATA, SCORER = SHARED / "data" / "nab", SHARED / "nab-scorer" / "score.sh"
LABELS_PATH = DATA / "labels" / "combined_windows.json"
RESULTS = "outputs/nab-views"
DETECTORS = {"views-teacher": "teacher", "views-student": "student"}


def replay(job: tuple[str, str]) -> tuple[str, str, np.ndarray, list]:
    path, detector = job
    name = "/".join(Path(path).parts[-2:])
    frame = pd.read_csv(path)
    config = OnlineConfig(coarse_scales=[4, 16], student="mlp", scorer=DETECTORS[detector])
    scores = OnlineSeriesDetector(config).score(frame["value"].to_numpy(float))
    scores[: probation_length(len(scores))] = 0.0
    windows = window_bounds(frame["timestamp"], json.loads(LABELS_PATH.read_text())[name])
    label = np.zeros(len(frame), int)
    for first, last in windows:
        label[first : last + 1] = 1
    write_result_file(RESULTS, detector, name, frame.assign(anomaly_score=scores, label=label))
    return detector, name, scores, windows


def main() -> None:
    paths = sorted(str(p) for p in DATA.glob("*/*.csv"))
    with Pool(2) as pool:
        replays = pool.map(replay, [(p, d) for d in DETECTORS for p in paths])
    official = official_nab_scores(SCORER, RESULTS, list(DETECTORS), paths, LABELS_PATH)
    print("| detector | profile | ours | NAB's score.sh |\n|---|---|---|---|")
    for detector in DETECTORS:
        files = [ScoredFile(n, s, w) for d, n, s, w in replays if d == detector]
        for profile, result in nab_scores(files).items():
            print(f"| {detector} | {profile} | {result['score']:.2f} | {official[detector][profile]:.2f} |")


if __name__ == "__main__":
    main()
