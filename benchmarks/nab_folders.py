"""NAB scores per folder (and over all files, every profile) of detectors in NAB's results layout.

Reads `<results>/<detector>/<folder>/<detector>_<file>.csv` (what `make bench-series-full` and
`benchmarks/stream_peers.py` write) and scores each folder as its own corpus with the repository's NAB scorer
(`benchmarking/nab.py`, which agrees with NAB's own code to 0.01 on these files, BENCHMARKS.md): one threshold
per detector, profile and corpus, as NAB does. A detector given as NAME+ averages NAME, NAME-seed1, NAME-seed2.

Usage: python benchmarks/nab_folders.py RESULTS LABELS_JSON DETECTOR [DETECTOR ...]
"""

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarking.nab import PROFILES, ScoredFile, nab_scores, window_bounds


def load(results: Path, labels: dict, detector: str) -> list[ScoredFile]:
    files = []
    for path in sorted((results / detector).glob("*/*.csv")):
        name = f"{path.parent.name}/{path.name.removeprefix(detector + '_')}"
        frame = pd.read_csv(path)
        files.append(
            ScoredFile(name, frame["anomaly_score"].to_numpy(float), window_bounds(frame["timestamp"], labels[name]))
        )
    return files


def scores(files: list[ScoredFile]) -> dict[str, float]:
    result = {p: r["score"] for p, r in nab_scores(files).items()}
    for folder in sorted({f.name.split("/")[0] for f in files}):
        result[folder] = nab_scores([f for f in files if f.name.startswith(folder + "/")], ("standard",))["standard"][
            "score"
        ]
    return result


def main(argv: list[str]) -> None:
    results, labels = Path(argv[0]), json.loads(Path(argv[1]).read_text())
    rows = {}
    for detector in argv[2:]:
        runs = (
            [detector[:-1], f"{detector[:-1]}-seed1", f"{detector[:-1]}-seed2"]
            if detector.endswith("+")
            else [detector]
        )
        per_run = [scores(load(results, labels, run)) for run in runs]
        rows[detector.rstrip("+")] = {
            k: (np.mean([r[k] for r in per_run]), np.std([r[k] for r in per_run])) for k in per_run[0]
        }
    columns = list(next(iter(rows.values())))
    print("| detector | " + " | ".join(columns) + " |\n|---|" + "---|" * len(columns))
    for detector, row in rows.items():
        cells = [f"{m:.1f}" + (f"±{s:.1f}" if s else "") for m, s in row.values()]
        print(f"| {detector} | " + " | ".join(cells) + " |")
    print(f"\nprofiles: {', '.join(PROFILES)}; folders: standard profile, each folder its own corpus")


if __name__ == "__main__":
    main(sys.argv[1:])
