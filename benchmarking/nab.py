"""The Numenta Anomaly Benchmark's score, as NAB's own scorer computes it (Lavin & Ahmad 2015; NAB's sweeper.py).

Per file, the first `min(floor(0.15·n), 750)` points are probationary and not scored. A point is a detection
when its anomaly score (in [0, 1]) is at least the threshold. In each label window only the earliest detection
counts, rewarded by a scaled sigmoid of its position (1·tp_weight at the window's left edge, 0 at its right
edge); a window without a detection costs fn_weight. Every detection outside a window costs fp_weight times a
sigmoid of its distance past the previous window (a full fp_weight when no window precedes it). One threshold is
chosen for the whole corpus, the one with the highest summed raw score; the score is then normalised so that a
detector that never fires scores 0 and one that fires exactly at every window's start scores 100.
"""

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

PROFILES = {
    "standard": {"tp": 1.0, "fp": 0.11, "fn": 1.0},
    "reward_low_FP_rate": {"tp": 1.0, "fp": 0.22, "fn": 1.0},
    "reward_low_FN_rate": {"tp": 1.0, "fp": 0.11, "fn": 2.0},
}
PROBATION_PERCENT = 0.15
OUTSIDE, PROBATION = -1, -2  # window ids of points outside every window / in the probationary period


def probation_length(n_points: int) -> int:
    return int(min(math.floor(PROBATION_PERCENT * n_points), PROBATION_PERCENT * 5000))


def scaled_sigmoid(position: np.ndarray) -> np.ndarray:
    """NAB's reward: 2·sigmoid(−5·position) − 1, and −1 for positions more than 3 window widths past."""
    position = np.asarray(position, dtype=float)
    return np.where(position > 3.0, -1.0, 2 / (1 + np.exp(5 * position)) - 1)


def window_bounds(timestamps: pd.Series, windows: list[tuple]) -> list[tuple[int, int]]:
    """[first, last] point index of each label window (NAB matches window edges to the file's timestamps)."""
    stamps = pd.to_datetime(pd.Series(timestamps)).to_numpy()
    bounds = []
    for start, end in windows:
        inside = np.flatnonzero(
            (stamps >= np.datetime64(pd.Timestamp(start))) & (stamps <= np.datetime64(pd.Timestamp(end)))
        )
        if len(inside):
            bounds.append((int(inside[0]), int(inside[-1])))
    return bounds


def unit_scores(reference: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Scores as NAB wants them, in [0, 1]: the share of `reference` (training-period) scores below each one,
    and above the reference maximum an exponential tail (scale: the reference's interquartile range) instead of
    a flat 1, so that the corpus-wide threshold can still tell a far outlier from a near one."""
    reference = np.sort(np.asarray(reference, dtype=float))
    n = len(reference)
    fractions = np.searchsorted(reference, scores, side="right") / (n + 1)
    q25, q75 = np.quantile(reference, [0.25, 0.75])
    spread = max(q75 - q25, 1e-12)
    beyond = scores > reference[-1]
    tail = 1 - (1 - n / (n + 1)) * np.exp(-(scores[beyond] - reference[-1]) / spread)
    fractions[beyond] = tail
    return fractions


def unit_point_scores(raw: np.ndarray, reference: np.ndarray, scored: np.ndarray) -> np.ndarray:
    """One anomaly_score per point: the `scored` points' raw scores mapped into [0, 1] by the raw scores of the
    `reference` points (index arrays or masks), 0 at every other point."""
    out = np.zeros(len(raw))
    out[scored] = unit_scores(raw[reference], raw[scored])
    return out


@dataclass
class ScoredFile:
    """One file's anomaly scores with its label windows as [first, last] point indices."""

    name: str
    scores: np.ndarray
    windows: list[tuple[int, int]]


def point_rewards(n_points: int, windows: list[tuple[int, int]], profile: dict) -> tuple[np.ndarray, np.ndarray]:
    """Each point's window id (OUTSIDE, PROBATION or the window's index) and what detecting it is worth."""
    window_id = np.full(n_points, OUTSIDE)
    reward = np.full(n_points, -profile["fp"])  # a false positive with no window before it
    index = np.arange(n_points)
    max_tp = float(scaled_sigmoid(-1.0))
    for k, (left, right) in enumerate(windows):
        width = right - left + 1
        window_id[left : right + 1] = k
        reward[left : right + 1] = (
            scaled_sigmoid(-(right - index[left : right + 1] + 1) / width) * profile["tp"] / max_tp
        )
        following = (index > right) & (index < (windows[k + 1][0] if k + 1 < len(windows) else n_points))
        past = np.abs(right - index[following]) / max(width - 1, 1)
        reward[following] = scaled_sigmoid(past) * profile["fp"]
    window_id[: probation_length(n_points)] = PROBATION
    return window_id, reward


def _scorable_points(files: list[ScoredFile], profile: dict) -> tuple[np.ndarray, ...]:
    """Every point after its file's probationary period: score, corpus-wide window number (OUTSIDE when in
    none), reward if detected, and the index of its file; plus how many windows are scored."""
    scores, window_keys, rewards, owners = [], [], [], []
    n_windows = 0
    for f, file in enumerate(files):
        ids, reward = point_rewards(len(file.scores), file.windows, profile)
        keep = ids != PROBATION
        kept_ids = ids[keep]
        scored_windows = np.unique(kept_ids[kept_ids >= 0])
        keys = np.full(len(kept_ids), OUTSIDE)
        keys[kept_ids >= 0] = n_windows + np.searchsorted(scored_windows, kept_ids[kept_ids >= 0])
        n_windows += len(scored_windows)
        scores.append(np.asarray(file.scores, dtype=float)[keep])
        window_keys.append(keys)
        rewards.append(reward[keep])
        owners.append(np.full(keep.sum(), f))
    return (*map(np.concatenate, (scores, window_keys, rewards, owners)), n_windows)


def corpus_sweep(files: list[ScoredFile], profile: dict) -> tuple[float, float, dict[str, float]]:
    """The threshold with the highest summed raw score over all files, that score and each file's part of it."""
    scores, window_keys, rewards, owners, n_windows = _scorable_points(files, profile)
    window_owner = np.zeros(n_windows, dtype=int)
    window_owner[window_keys[window_keys >= 0]] = owners[window_keys >= 0]
    missed = -profile["fn"] * np.bincount(window_owner, minlength=len(files)).astype(float)  # no detection at all
    order = np.argsort(-scores, kind="stable")  # lowering the threshold detects the points in this order
    score, key, reward, owner = scores[order], window_keys[order], rewards[order], owners[order]
    gain = _gains(key, reward, profile["fn"])
    totals = missed.sum() + np.cumsum(gain)
    last_of_tie = np.r_[score[1:] != score[:-1], True]  # a threshold detects every point with this score
    candidates = np.flatnonzero(last_of_tie)
    best = candidates[int(np.argmax(totals[candidates]))] if len(candidates) else None
    if best is None or totals[best] < missed.sum():  # firing nowhere beats every threshold
        return 1.1, float(missed.sum()), {file.name: float(v) for file, v in zip(files, missed)}
    per_file = missed + np.bincount(owner[: best + 1], weights=gain[: best + 1], minlength=len(files))
    return float(score[best]), float(totals[best]), {file.name: float(v) for file, v in zip(files, per_file)}


def _gains(key: np.ndarray, reward: np.ndarray, fn_weight: float) -> np.ndarray:
    """What detecting each point (in detection order) adds: its (negative) reward outside windows; inside a
    window, how much it raises the window's best reward so far (a missed window counts −fn_weight)."""
    gain = np.where(key < 0, reward, 0.0)
    inside = key >= 0
    if inside.any():
        frame = pd.DataFrame({"key": key[inside], "reward": reward[inside]})
        best = frame.groupby("key")["reward"].cummax()
        before = best.groupby(frame["key"]).shift(1).fillna(-fn_weight)
        gain[inside] = np.maximum(best, -fn_weight).to_numpy() - np.maximum(before, -fn_weight).to_numpy()
    return gain


def nab_scores(files: list[ScoredFile], profiles: tuple[str, ...] = tuple(PROFILES)) -> dict[str, dict]:
    """Normalised NAB score (null detector 0, perfect 100) per profile, with the corpus threshold and raw score."""
    n_windows = _scorable_points(files, PROFILES["standard"])[-1]  # which windows count is the same in every profile
    result = {}
    for name in profiles:
        profile = PROFILES[name]
        threshold, raw, per_file = corpus_sweep(files, profile)
        null, perfect = -profile["fn"] * n_windows, profile["tp"] * n_windows
        result[name] = {
            "score": 100 * (raw - null) / (perfect - null) if n_windows else float("nan"),
            "threshold": threshold,
            "raw": raw,
            "per_file": per_file,
        }
    return result


def write_result_file(directory: str | Path, detector: str, relative_name: str, frame: pd.DataFrame) -> Path:
    """NAB's results layout: <dir>/<detector>/<folder>/<detector>_<file>.csv with columns
    timestamp,value,anomaly_score,label (label 1 inside a label window)."""
    folder, file = Path(relative_name).parent, Path(relative_name).name
    target = Path(directory) / detector / folder / f"{detector}_{file}"
    target.parent.mkdir(parents=True, exist_ok=True)
    frame[["timestamp", "value", "anomaly_score", "label"]].to_csv(target, index=False)
    return target
