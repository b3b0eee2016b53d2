"""The streaming peers of benchmarks/stream_peers.py: causal scores in [0, 1] and NAB's results layout."""

import csv
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "stream_peers.py"
spec = importlib.util.spec_from_file_location("stream_peers", PATH)
sp = importlib.util.module_from_spec(spec)
spec.loader.exec_module(sp)

WARMUP = {"hst": 250, "hstrank": 250, "xstream": 256}  # points before their first window is full and they score


def series(seed: int, fork: int) -> np.ndarray:
    """A daily-looking cycle with noise and a spike; the two seeds share the first `fork` points only."""
    n = fork + 40
    t = np.arange(n)
    values = 10 + 3 * np.sin(2 * np.pi * t / 24) + np.random.default_rng(0).normal(0, 0.3, n)
    values[fork:] += np.random.default_rng(seed).normal(0, 2.0, n - fork)
    values[fork - 20] += 8.0
    return values


@pytest.mark.parametrize("peer", sorted(sp.PEERS))
def test_peer_scores_are_causal_and_in_unit_interval(peer):
    fork, runs = WARMUP.get(peer, 0) + 50, []
    for seed in (1, 2):
        step = sp.PEERS[peer]()
        runs.append([step(float(v)) for v in series(seed, fork)])
    a, b = np.array(runs[0]), np.array(runs[1])
    assert np.all((a >= 0) & (a <= 1)) and np.all((b >= 0) & (b <= 1))
    assert np.array_equal(a[:fork], b[:fork])
    assert not np.array_equal(a[fork:], b[fork:])  # the futures differ, so the test can see a leak


def test_probation_and_results_layout(tmp_path):
    data = tmp_path / "data" / "folder"
    data.mkdir(parents=True)
    stamps = [f"2020-01-01 {h:02d}:{m:02d}:00" for h in range(4) for m in range(0, 60, 5)]
    with open(data / "s.csv", "w", newline="") as f:
        csv.writer(f).writerows([["timestamp", "value"], *[[t, i % 7] for i, t in enumerate(stamps)]])
    labels = tmp_path / "windows.json"
    labels.write_text(json.dumps({"folder/s.csv": [["2020-01-01 02:00:00.000000", "2020-01-01 02:10:00.000000"]]}))
    rates = sp.run(tmp_path / "data", labels, tmp_path / "out", ["hst", "loda"])
    assert set(rates) == {"hst", "loda"} and all(r > 0 for r in rates.values())
    rows = list(csv.DictReader((tmp_path / "out" / "hst" / "folder" / "hst_s.csv").read_text().splitlines()))
    assert [r["timestamp"] for r in rows] == stamps
    skip = sp.probation(len(stamps))
    assert skip == 7 and all(float(r["anomaly_score"]) == 0.0 for r in rows[:skip])
    assert [i for i, r in enumerate(rows) if r["label"] == "1"] == [24, 25, 26]
