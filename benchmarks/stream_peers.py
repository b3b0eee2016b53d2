"""Streaming peers on NAB: detectors a user could pick instead of ours, run under NAB's rules.

Each peer sees the points of a file one at a time, in file order. For every point it scores first (from that point
and the earlier ones only) and learns from the point afterwards; one set of settings serves every file, and no labels
are used. The first 15 % of a file (at most 750 points, NAB's probation) is learned from but written with score 0.
Scores are mapped to [0, 1] causally (see `RankScaler`), and the results are written in NAB's layout,
`<out>/<peer>/<folder>/<peer>_<file>.csv` with timestamp,value,anomaly_score,label, so that NAB's own scorer
(`../shared/nab-scorer/score.sh`) can score them.

Peers (river 0.26.1, pysad 0.7.0; every one is fed a shingle of the last `SHINGLE` values, fixed seeds):

- hst: river `anomaly.HalfSpaceTrees`, features scaled causally to [0, 1], its own score (already in [0, 1]).
- hstrank: the same HST, its score mapped by its causal rank (as the pysad peers'; NAB sets one threshold for all
  files, and the raw HST score has a different scale in each file).
- loda: pysad `LODA`, raw shingle, score mapped by its causal rank.
- xstream: pysad `xStream`, raw shingle, score mapped by its causal rank.
- rrcf: pysad `RobustRandomCutForest`, raw shingle, score mapped by its causal rank (slow: pure Python trees).

    python benchmarks/stream_peers.py --out outputs/nab-results --peers hst,hstrank,loda,xstream --score
"""

from __future__ import annotations

import argparse
import bisect
import csv
import json
import subprocess
import time
from collections import deque
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
SHINGLE = 8  # values per feature vector: the point and the 7 before it
SEED = 42
PROBATION_PERCENT = 0.15  # NAB: min(floor(0.15 * n), 0.15 * 5000) points are not scored

Step = Callable[[float], float]  # takes the next value, returns its score in [0, 1], then has learned from it


class Shingle:
    """The last `size` values, oldest first; before `size` values have come, the first value fills the gaps."""

    def __init__(self, size: int = SHINGLE):
        self.values: deque[float] = deque(maxlen=size)

    def push(self, value: float) -> list[float]:
        if not self.values:
            self.values.extend([value] * self.values.maxlen)
        self.values.append(value)
        return list(self.values)


class RunningRange:
    """Min and max of the values seen so far, the current one included (a score may use its own point)."""

    def __init__(self):
        self.low, self.high = float("inf"), float("-inf")

    def update(self, value: float) -> None:
        self.low, self.high = min(self.low, value), max(self.high, value)

    def scale(self, value: float) -> float:
        """`value` mapped by the running range to [0, 1] (clipped for safety; a flat series so far gives 0.5)."""
        span = self.high - self.low
        if span <= 0.0:
            return 0.5
        return min(1.0, max(0.0, (value - self.low) / span))


class RankScaler:
    """Maps a raw score to [0, 1] by its rank among the scores seen so far in this file: the fraction of the
    earlier scores strictly below it (0 for the first one, 1 for a new maximum, ties count as not above)."""

    def __init__(self):
        self.seen: list[float] = []

    def __call__(self, score: float) -> float:
        rank = bisect.bisect_left(self.seen, score) / len(self.seen) if self.seen else 0.0
        bisect.insort(self.seen, score)
        return rank


def hst(rank: bool = False) -> Step:
    """river HalfSpaceTrees (25 trees, height 8, window 250). HST needs features in [0, 1]: every value of the
    shingle is scaled by the min and max of all the values seen so far in the file (the current one included).
    Its own score is in [0, 1] already; with `rank`, it is mapped by its causal rank like the pysad peers'."""
    from river import anomaly

    model = anomaly.HalfSpaceTrees(n_trees=25, height=8, window_size=250, seed=SEED)
    shingle, scaler = Shingle(), RunningRange()
    calibrate = RankScaler() if rank else float

    def step(value: float) -> float:
        scaler.update(value)
        x = {f"x{i}": scaler.scale(v) for i, v in enumerate(shingle.push(value))}
        score = model.score_one(x)
        model.learn_one(x)
        return calibrate(float(score))

    return step


def hstrank() -> Step:
    """`hst` with its score mapped by its causal rank in the file (the raw HST scale differs from file to file)."""
    return hst(rank=True)


def _pysad_step(model) -> Step:
    """A pysad model on the raw shingle: its `fit_score_partial` scores the shingle and then learns from it.
    LODA, xStream and RRCF are (close to) invariant to one affine scaling of every feature, and all features of a
    shingle are the same variable, so the shingle is left unscaled; a running rescaling would move old points."""
    shingle, rank = Shingle(), RankScaler()

    def step(value: float) -> float:
        score = model.fit_score_partial(np.asarray(shingle.push(value), dtype=np.float64))
        return rank(float(np.ravel(score)[0]))

    return step


def loda() -> Step:
    """pysad LODA: 100 sparse random projections, histograms of 10 bins (its defaults)."""
    from pysad.models import LODA

    return _pysad_step(LODA(num_bins=10, num_random_cuts=100, random_state=SEED))


def xstream() -> Step:
    """pysad xStream: 50 StreamHash components, 50 half-space chains of depth 15, window 256 (half the default
    components and chains, to run the 36 files in a few minutes)."""
    from pysad.models import xStream

    return _pysad_step(xStream(num_components=50, n_chains=50, depth=15, window_size=256, random_state=SEED))


def rrcf() -> Step:
    """pysad RobustRandomCutForest: 10 trees of 256 points (a uniform reservoir sample of the stream)."""
    from pysad.models import RobustRandomCutForest

    return _pysad_step(RobustRandomCutForest(num_trees=10, shingle_size=1, tree_size=256, random_state=SEED))


# No "_" in a peer name: NAB parses "<detector>_<profile>_scores.csv" by splitting on it.
PEERS: dict[str, Callable[[], Step]] = {
    "hst": hst,
    "hstrank": hstrank,
    "loda": loda,
    "xstream": xstream,
    "rrcf": rrcf,
}
DEFAULT_PEERS = ("hst", "hstrank", "loda", "xstream")


def probation(n: int) -> int:
    """NAB's probationary length: the first this many points of a file of `n` points are not scored."""
    return int(min(int(PROBATION_PERCENT * n), PROBATION_PERCENT * 5000))


def score_series(values: Iterable[float], make: Callable[[], Step]) -> tuple[list[float], float]:
    """Scores of a fresh detector on `values` in order (0 in probation) and the seconds of the score+learn loop."""
    values = list(values)
    step, skip, scores = make(), probation(len(values)), []
    start = time.perf_counter()
    for i, value in enumerate(values):
        score = step(value)
        scores.append(score if i >= skip else 0.0)
    return scores, time.perf_counter() - start


def read_series(path: Path) -> tuple[list[str], list[str]]:
    """Timestamps and values of a NAB data file, as the strings written there."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return [r["timestamp"] for r in rows], [r["value"] for r in rows]


def labels_for(timestamps: list[str], windows: list[list[str]]) -> list[int]:
    """1 for a timestamp inside a label window (both ends included, as NAB's labeler), else 0."""
    spans = [(datetime.fromisoformat(a), datetime.fromisoformat(b)) for a, b in windows]
    stamps = [datetime.fromisoformat(t) for t in timestamps]
    return [int(any(a <= t <= b for a, b in spans)) for t in stamps]


def data_files(data_dir: Path, files: Iterable[str] | None = None) -> list[str]:
    """The files to run, as "folder/file.csv": the given ones, or every CSV one folder down (labels excluded)."""
    if files:
        return list(files)
    found = data_dir.glob("*/*.csv")
    return sorted(str(p.relative_to(data_dir)) for p in found if p.parent.name != "labels")


def write_results(path: Path, timestamps: list[str], values: list[str], scores: list[float], labels: list[int]):
    """One results file in NAB's layout."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["timestamp", "value", "anomaly_score", "label"])
        out.writerows(zip(timestamps, values, (repr(s) for s in scores), labels, strict=True))


def run(data_dir, labels_json, out_dir, peers: Iterable[str] = DEFAULT_PEERS, files=None) -> dict[str, float]:
    """Runs each peer on each file, writes `<out_dir>/<peer>/<folder>/<peer>_<file>.csv` and returns the
    points per second of each peer (score+learn loop only, one process)."""
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    windows = json.loads(Path(labels_json).read_text())
    points, seconds = 0, dict.fromkeys(peers, 0.0)
    for name in data_files(data_dir, files):
        timestamps, values = read_series(data_dir / name)
        labels = labels_for(timestamps, windows.get(name, []))
        folder, file = name.split("/")
        points += len(values)
        for peer in seconds:
            scores, took = score_series(map(float, values), PEERS[peer])
            seconds[peer] += took
            write_results(out_dir / peer / folder / f"{peer}_{file}", timestamps, values, scores, labels)
    return {peer: points / max(took, 1e-9) for peer, took in seconds.items()}


def score_with_nab(scorer: Path, out_dir: Path, peers: Iterable[str], data_dir: Path) -> list[str]:
    """NAB's final-score lines for the peers, from NAB's scorer (it scores every CSV under `data_dir`)."""
    cmd = [str(scorer), str(out_dir), ",".join(peers), str(data_dir)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return [line for line in done.stdout.splitlines() if "Final score" in line]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=SHARED / "data" / "nab", help="NAB data: <folder>/<file>.csv")
    p.add_argument("--labels", type=Path, default=None, help="combined_windows.json (default: <data>/labels/)")
    p.add_argument("--out", type=Path, default=ROOT / "outputs" / "nab-results", help="results folder (NAB layout)")
    p.add_argument("--peers", default=",".join(DEFAULT_PEERS), help=f"comma-separated, of {','.join(PEERS)}")
    p.add_argument("--files", nargs="*", default=None, help="subset, as folder/file.csv (default: all)")
    p.add_argument("--score", action="store_true", help="run NAB's scorer afterwards (needs every file)")
    p.add_argument("--scorer", type=Path, default=SHARED / "nab-scorer" / "score.sh")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    peers = [p for p in args.peers.split(",") if p]
    unknown = [p for p in peers if p not in PEERS]
    if unknown:
        raise SystemExit(f"unknown peers {unknown}; choose from {list(PEERS)}")
    labels = args.labels or args.data / "labels" / "combined_windows.json"
    start = time.perf_counter()
    rates = run(args.data, labels, args.out, peers, args.files)
    for peer, rate in rates.items():
        print(f"{peer}: {rate:.0f} points/s")
    print(f"wall time of the run: {time.perf_counter() - start:.1f} s")
    if args.score:
        print("\n".join(score_with_nab(args.scorer, args.out, peers, args.data)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
