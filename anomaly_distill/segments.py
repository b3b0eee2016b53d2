"""Per-segment models (one per merchant, machine, …) behind one scoring interface.

Rows of a segment that had too few training rows, or that never appeared in training, go to the model trained
on all rows (GLOBAL), so a new merchant is scored rather than refused."""
from dataclasses import dataclass

import numpy as np
import pandas as pd

from anomaly_distill.data import Table

GLOBAL = "*all*"


def segment_tables(train: Table, min_rows: int) -> dict[str, Table]:
    """One training table per segment with at least `min_rows` rows, plus GLOBAL (all rows)."""
    tables = {GLOBAL: train}
    for name, index in train.segments.groupby(train.segments).indices.items():
        if len(index) >= min_rows:
            tables[name] = train.take(np.sort(index))
    return tables


@dataclass
class Segmented:
    """Routes each row to its segment's member (a Student or a TrainedTeacher); scores come back in row order."""

    column: str
    members: dict[str, object]

    @property
    def fallback(self):
        return self.members[GLOBAL]

    # The global member stands for the whole in size/speed checks and the ONNX export.
    model = property(lambda self: self.fallback.model)
    threshold = property(lambda self: self.fallback.threshold)
    history = property(lambda self: self.fallback.history)

    def routes(self, frame: pd.DataFrame) -> dict[str, np.ndarray]:
        if self.column not in frame.columns:
            raise KeyError(f"segment column {self.column!r} missing from the rows to score")
        segments = frame[self.column].astype(str).to_numpy()
        known = np.isin(segments, [name for name in self.members if name != GLOBAL])
        routes = {GLOBAL: np.flatnonzero(~known)}
        for name in np.unique(segments[known]):
            routes[name] = np.flatnonzero(segments == name)
        return {name: index for name, index in routes.items() if len(index)}

    def _apply(self, frame: pd.DataFrame, fn, routes: dict[str, np.ndarray] | None = None) -> np.ndarray:
        out = np.empty(len(frame), dtype=np.float64)
        for name, index in (routes or self.routes(frame)).items():
            out[index] = fn(self.members[name], frame.iloc[index])
        return out

    def score(self, frame: pd.DataFrame) -> np.ndarray:
        return self._apply(frame, lambda member, rows: member.score(rows))

    def predict(self, frame: pd.DataFrame, threshold: float | None = None) -> pd.DataFrame:
        """Each segment's own alarm threshold, unless one threshold is given for all."""
        routes = self.routes(frame)
        scores = self._apply(frame, lambda member, rows: member.score(rows), routes)
        cuts = self._apply(frame, lambda member, rows: member.threshold if threshold is None else threshold, routes)
        return pd.DataFrame({"score": scores, "is_anomaly": scores > cuts})
