"""What each part of the online series detector is worth: the student's NAB scores (every profile, per folder) with
the default settings, and with one part taken away at a time.

- no range alarm: a value outside the trailing range is no alarm of its own (range_margin 1e9);
- no rest: every point may alarm, also right after an alarm (rest 0);
- no sliding: the reference and the student are fitted once, after the warm-up, and never refreshed (the frozen
  model of before, with this detector's scoring);
- short calibration: raw scores ranked among the last 500 instead of 4,000.

Usage: python benchmarks/selection/online_ablation.py [--data ../shared/data/nab] [--workers 2] [--json OUT]
"""

import argparse
import json
import time
from multiprocessing import Pool
from pathlib import Path

from choose_online import read_corpus, run  # this folder (the script's) is on the path

from benchmarking.nab import PROFILES, ScoredFile, nab_scores

VARIANTS = {
    "default": {},
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
    parser.add_argument("--json")
    args = parser.parse_args()
    corpus = read_corpus(Path(args.data))
    start, report = time.perf_counter(), {}
    with Pool(args.workers) as pool:
        for name, settings in VARIANTS.items():
            report[name] = profile_scores(corpus, run(corpus, pool, settings, "student"))
    columns = list(report["default"])
    print("Online student, NAB scores on the 36 shared series (standard per folder), one part taken away at a time\n")
    print("| variant | " + " | ".join(columns) + " |\n|---|" + "---|" * len(columns))
    for name, scores in report.items():
        print(f"| {name} | " + " | ".join(f"{scores[c]:.1f}" for c in columns) + " |")
    print(f"\nwall time {time.perf_counter() - start:.0f} s; profiles {', '.join(PROFILES)}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
