"""Synthetic windows for distilling a series teacher: changes a real series could make, not isotropic noise.

A student distilled on training windows alone meets windows from a later season at test time and ranks them
worse than its teacher. Gaussian noise on the window-row features leaves the row's statistics inconsistent with
its window and mostly lands where no series goes; these perturbations keep the row a real window (statistics
recomputed) and move it the ways series do move: drift, speed, amplitude and level.
"""

from collections.abc import Callable

import numpy as np
import pandas as pd

from anomaly_distill.data import Preprocessor
from anomaly_distill.series.timeseries import window_rows


def random_walk(windows: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Adds a random walk whose end-to-end spread is log-uniform in [0.05, 2] (normalised units)."""
    n, _, length = windows.shape
    spread = np.exp(rng.uniform(np.log(0.05), np.log(2.0), (n, 1, 1)))
    return windows + np.cumsum(rng.normal(0, 1, windows.shape), axis=2) * spread / np.sqrt(length)


def time_warp(windows: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Replays each window 0.6–1.6× as fast, anchored at its newest point (older points repeat the oldest)."""
    n, _, length = windows.shape
    speed = np.exp(rng.uniform(np.log(0.6), np.log(1.6), (n, 1)))
    position = np.clip((length - 1) - (length - 1 - np.arange(length)) * speed, 0, length - 1)  # (n, length)
    left = np.minimum(np.floor(position).astype(np.int64), length - 2)
    fraction = (position - left)[:, None, :]
    index = np.broadcast_to(left[:, None, :], windows.shape)
    before = np.take_along_axis(windows, index, axis=2)
    after = np.take_along_axis(windows, index + 1, axis=2)
    return before * (1 - fraction) + after * fraction


def amplitude(windows: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Scales each window around its mean (log-normal factor) and offsets it."""
    n = len(windows)
    mean = windows.mean(axis=2, keepdims=True)
    factor = np.exp(rng.normal(0, 0.5, (n, 1, 1)))
    return mean + (windows - mean) * factor + rng.normal(0, 0.5, (n, 1, 1))


def level_shift(windows: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """From a random point on, shifts the level up or down by a log-uniform 0.1–5 (normalised units)."""
    n, _, length = windows.shape
    start = rng.integers(0, length, (n, 1, 1))
    size = np.exp(rng.uniform(np.log(0.1), np.log(5.0), (n, 1, 1))) * rng.choice([-1.0, 1.0], (n, 1, 1))
    return windows + size * (np.arange(length) >= start)


AUGMENTATIONS = (random_walk, time_warp, amplitude, level_shift)


def synthetic_windows(windows: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """`n` windows (n, channels, length): random real windows, each changed by one of the augmentations."""
    kinds = rng.integers(0, len(AUGMENTATIONS), n)
    out = np.empty((n, *windows.shape[1:]))
    for k, augment in enumerate(AUGMENTATIONS):
        chosen = np.flatnonzero(kinds == k)
        out[chosen] = augment(windows[rng.integers(0, len(windows), len(chosen))], rng)
    return out


def window_synthesizer(
    preprocessor: Preprocessor, channels: int, window: int
) -> Callable[[np.ndarray, int, np.random.Generator], np.ndarray]:
    """Synthetic distillation rows from augmented training windows, with their stats recomputed (scaled rows)."""

    def synthesize(real_rows: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
        windows = preprocessor.inverse_transform(real_rows).to_numpy()[:, : channels * window]
        rows = window_rows(synthetic_windows(windows.reshape(-1, channels, window), n, rng))
        return preprocessor.transform(pd.DataFrame(rows, columns=preprocessor.input_columns))

    return synthesize
