"""Per-segment models (one per merchant, machine, …) behind one scoring interface.

Rows of a segment that had too few training rows, or that never appeared in training, go to the model trained
on all rows (GLOBAL), so a new merchant is scored rather than refused."""

import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from anomaly_distill.data import DataError, Table
from anomaly_distill.detector import ExportError, detector_from_state
from anomaly_distill.export import MANIFEST, route_rows

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

    kind = "segmented"
    contract_kind = "tabular"
    explains = False
    onnx_name = "detector"  # a folder: one graph per segment
    threshold = property(lambda self: self.fallback.threshold)
    history = property(lambda self: self.fallback.history)

    @property
    def n_params(self) -> int:
        return sum(member.n_params for member in self.members.values())

    def score_rows(self, rows: np.ndarray) -> np.ndarray:
        """The global member stands for the whole in the speed check (size and parameters count every member)."""
        return self.fallback.score_rows(rows)

    def routes(self, frame: pd.DataFrame) -> dict[str, np.ndarray]:
        if self.column not in frame.columns:
            raise DataError(f"segment column {self.column!r} missing from the rows to score")
        return route_rows(frame[self.column].astype(str).to_numpy(), list(self.members), GLOBAL)

    def state(self) -> dict:
        self._require_detectors("saved")
        return {
            "segment_column": self.column,
            "segments": {name: {"kind": m.kind, **m.state()} for name, m in self.members.items()},
        }

    @classmethod
    def from_state(cls, saved: dict) -> "Segmented":
        return cls(
            saved["segment_column"],
            {
                name: detector_from_state(state.get("kind", "tabular"), state)
                for name, state in saved["segments"].items()
            },
        )

    def export_onnx(self, path: str | Path) -> Path:
        """A folder: one graph per segment + manifest.json. Built aside and moved into place whole."""
        self._require_detectors("exported")
        path = Path(path)
        with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
            staging = Path(tmp) / "export"
            staging.mkdir()
            members = {}
            for i, (name, member) in enumerate(self.members.items()):
                member.export_onnx(staging / f"segment-{i}.onnx")
                members[name] = {"file": f"segment-{i}.onnx", "threshold": member.threshold}
            manifest = {"kind": "segmented", "segment_column": self.column, "fallback": GLOBAL, "members": members}
            (staging / MANIFEST).write_text(json.dumps(manifest, indent=2))
            if path.exists():
                shutil.rmtree(path)
            staging.rename(path)
        return path

    def _require_detectors(self, action: str) -> None:
        odd = [name for name, m in self.members.items() if not hasattr(m, "export_onnx")]
        if odd:
            raise ExportError(
                f"segments {odd} hold {type(self.members[odd[0]]).__name__} objects, not students: "
                f"a per-segment model can be {action} only when every member is a detector"
            )

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
