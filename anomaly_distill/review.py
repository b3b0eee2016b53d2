"""Which unlabelled rows a person should look at next (the review queue).

- "top" (the default): the highest scores. At a low anomaly rate these are the alerts a team reviews anyway,
  many of them are anomalies, and labelled anomalies are what the teacher learns most from (models/labelled.py).
- "uncertain": the scores nearest the alarm threshold, where the model is least sure which side a row is on.
  Classic uncertainty sampling; at a low anomaly rate most such rows turn out normal.
`make bench-labels` compares both with random review over five feedback rounds (BENCHMARKS.md).
"""

import numpy as np

REVIEW_STRATEGIES = ("top", "uncertain")
DEFAULT_STRATEGY = "top"


def review_queue(
    scores: np.ndarray,
    threshold: float,
    k: int,
    strategy: str = DEFAULT_STRATEGY,
    reviewed: np.ndarray | None = None,
) -> np.ndarray:
    """Positions of the k rows (fewer when fewer are left) most worth a look, most urgent first; rows marked in
    `reviewed` (a boolean mask) are never offered again."""
    if strategy not in REVIEW_STRATEGIES:
        raise ValueError(f"review strategy must be one of {REVIEW_STRATEGIES}; got {strategy!r}")
    if k < 1:
        raise ValueError(f"k must be at least 1; got {k}")
    scores = np.asarray(scores, dtype=np.float64)
    candidates = np.arange(len(scores)) if reviewed is None else np.flatnonzero(~np.asarray(reviewed, dtype=bool))
    urgency = scores[candidates] if strategy == "top" else -np.abs(scores[candidates] - threshold)
    order = np.argsort(-urgency, kind="stable")  # ties: the earlier row first
    return candidates[order[:k]]
