"""The shippable tabular detector: the student's scoring model (preprocessing inside) and its alarm threshold.
Its int8 form is `compress.Int8Student`; `compress.load_tabular` loads either."""

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from anomaly_distill.export import export_table_graph
from anomaly_distill.models.student import ScoringModel, StudentNet
from anomaly_distill.tabular.explain import explain_flagged


@dataclass
class Student:
    """The shippable tabular detector: scoring model (preprocessing inside) plus its alarm threshold."""

    model: ScoringModel
    threshold: float
    history: list[dict] = field(default_factory=list)
    compressed_from: dict | None = None  # params and size_bytes of the float student it was compressed from
    kind = "tabular"
    contract_kind = "tabular"
    explains = True  # per-alert explanations (integrated gradients over its columns)
    onnx_name = "detector.onnx"

    @property
    def n_params(self) -> int:
        return self.model.n_params

    def state(self) -> dict:
        model = self.model
        return {
            "input_columns": model.input_columns,
            "squash": model.net.squash_scale,
            "hidden": [m.out_features for m in model.net.body if isinstance(m, torch.nn.Linear)],
            "state_dict": model.state_dict(),
            "threshold": self.threshold,
        }

    @classmethod
    def from_state(cls, saved: dict) -> "Student":
        state = saved["state_dict"]
        net = StudentNet(len(state["keep"]), saved["hidden"], saved["squash"])
        return cls(ScoringModel.from_state(saved["input_columns"], net, state).eval(), saved["threshold"])

    def export_onnx(self, path: str | Path) -> Path:
        return export_table_graph(self.model, self.threshold, path)

    def score(self, features: pd.DataFrame) -> np.ndarray:
        return self.score_rows(features[self.model.input_columns].to_numpy(dtype=np.float32))

    def score_rows(self, rows: np.ndarray) -> np.ndarray:
        return self.model.score(rows)

    def predict(self, features: pd.DataFrame, threshold: float | None = None, explain: int = 0) -> pd.DataFrame:
        """`score` and `is_anomaly` per row; with `explain` k > 0 also `explanation`: for each flagged row the k
        columns that raise its score most (see anomaly_distill/tabular/explain.py), "" for the others."""
        scores = self.score(features)
        cut = self.threshold if threshold is None else threshold
        scored = pd.DataFrame({"score": scores, "is_anomaly": scores > cut})
        if explain > 0:
            scored["explanation"] = explain_flagged(
                self.model, features, scored["is_anomaly"].to_numpy(), explain
            ).to_numpy()
        return scored
