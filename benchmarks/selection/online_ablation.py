"""What each part of the online series detector is worth: the student's NAB scores (every profile, per folder) with
the default settings, and with one part taken away at a time; the teacher's beside them.

- one view: no coarser views over means of 4 and 16 points;
- mlp student: a one-layer network distilled from the teacher's scores instead of the prototypes (the student of
  before, with and without the coarser views);
- no range alarm: a value outside the trailing range is no alarm of its own (range_margin 1e9);
- no rest: every point may alarm, also right after an alarm (rest 0);
- no sliding: the reference and the student are fitted once, after the warm-up, and never refreshed (the frozen
  model of before, with this detector's scoring);
- short calibration: raw scores ranked among the last 500 instead of 4,000.

Usage: python benchmarks/selection/online_ablation.py [--data ../shared/data/nab] [--workers 2] [--seeds 0 1 2]
       [--variants NAME ...] [--json OUT]
"""

import argparse
import json
import time
from multiprocessing import Pool
from pathlib import Path

import numpy as np
from choose_online import read_corpus, run  # this folder (the script's) is on the path

from benchmarking.nab import PROFILES, ScoredFile, nab_scores

VARIANTS = {
    "default": {},
    "teacher": {"scorer": "teacher"},
    "one view": {"coarse_scales": []},
    "teacher, one view": {"scorer": "teacher", "coarse_scales": []},
    "mlp student": {"student": "mlp"},
    "mlp student, one view": {"student": "mlp", "coarse_scales": []},
    "no range alarm": {"range_margin": 1e9},
    "no rest": {"rest": 0},
    "no sliding (fitted once)": {"refresh_every": 10**9},
    "short calibration (500)": {"calibration": 500},
}


def profile_scores(corpus: list[dict], scores: dict) -> dict:
    files = [ScoredFile(s["name"], scores[s["name"]], s["windows"]) for s in corpus]
    result = {p: r["score"] for p, r in nab_scores(files).items()}
    for folder in sorted({s["name"].split("/")[0] for s in corpus}):
        part = [f for f in files if f.name.startswith(folder + "/")]
        result[folder] = nab_scores(part, ("standard",))["standard"]["score"]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/nab")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="student seeds; the table gives mean ± std")
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--json")
    args = parser.parse_args()
    corpus = read_corpus(Path(args.data))
    start, report = time.perf_counter(), {}
    with Pool(args.workers) as pool:
        for name in args.variants:
            settings = {k: v for k, v in VARIANTS[name].items() if k != "scorer"}
            scorer = VARIANTS[name].get("scorer", "student")
            seeds = args.seeds if scorer == "student" else [0]  # the teacher has no seed
            report[name] = [
                profile_scores(corpus, run(corpus, pool, settings | {"seed": seed}, scorer)) for seed in seeds
            ]
            print(f"{name}: done at {time.perf_counter() - start:.0f} s", flush=True)
    print_report(report, time.perf_counter() - start)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))


def print_report(report: dict, seconds: float) -> None:
    print("Online detector, NAB scores on the 36 shared series (standard per folder), one part taken away at a time")
    print("(student unless the variant says teacher; mean ± std over seeds where more than one)\n")
    print(table(report))
    print(f"\nwall time {seconds:.0f} s; profiles {', '.join(PROFILES)}")


def table(report: dict[str, list[dict]]) -> str:
    """A markdown row per variant: each column's mean over its runs (± std where more than one)."""
    columns = list(next(iter(report.values()))[0])
    lines = ["| variant | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns)]
    for name, runs in report.items():
        cells = []
        for column in columns:
            values = [r[column] for r in runs]
            spread = f" ± {np.std(values):.1f}" if len(values) > 1 else ""
            cells.append(f"{np.mean(values):.1f}{spread}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
