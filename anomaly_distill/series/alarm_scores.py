"""From a detector's raw score stream to an alarm score in [0, 1] that fires at the onset of a change.

A detector fitted once scores every point after a lasting change (a new level, a new rhythm) as anomalous, for
ever; an operator wants one alarm when it starts. These functions read the raw stream online (each output uses
only the scores up to that point) and are what a live series scorer can apply point by point.
"""

import numpy as np
import pandas as pd
from scipy.special import ndtr


def likelihood(scores: np.ndarray, long_window: int, short_window: int) -> np.ndarray:
    """Numenta-style anomaly likelihood: how far the mean of the last `short_window` raw scores lies in the tail
    of the raw scores of the `long_window` points before them (normal CDF of the z-score). After a lasting
    change the history fills with the new scores and the likelihood falls back. NaN scores (no window yet) → 0.
    """
    s = pd.Series(np.asarray(scores, dtype=float))
    history = s.shift(short_window).rolling(long_window, min_periods=max(2 * short_window, 10))
    mean, std = history.mean(), history.std()
    recent = s.rolling(short_window, min_periods=1).mean()
    # a flat history must not make any wiggle certain: the spread is floored by the scores seen so far (never
    # the whole stream's, which would let a point's alarm depend on points after it)
    floor = np.maximum(np.nan_to_num(s.expanding().std(ddof=0).to_numpy()) * 1e-3, 1e-12)
    z = (recent - mean) / np.maximum(std.to_numpy(), floor)
    return np.nan_to_num(ndtr(z.to_numpy()), nan=0.0)


def onset(unit_scores: np.ndarray, hold: int) -> np.ndarray:
    """Keep a score only where it exceeds every score of the `hold` points before it (the rise, not the plateau);
    elsewhere 0."""
    s = pd.Series(np.asarray(unit_scores, dtype=float)).fillna(0.0)
    previous = s.shift(1).rolling(hold, min_periods=1).max().fillna(-np.inf)
    return np.where(s > previous, s, 0.0)
