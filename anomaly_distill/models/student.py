"""The student: a tiny MLP that scores raw rows, preprocessing included, so it exports to ONNX whole."""
import numpy as np
import torch
from torch import nn

from anomaly_distill.data import Preprocessor
from anomaly_distill.models.layers import mlp, squash


class StudentNet(nn.Module):
    """MLP over squashed, robust-scaled features; outputs an anomaly logit (higher = more anomalous)."""

    def __init__(self, n_features: int, hidden: list[int], squash_scale: float):
        super().__init__()
        self.squash_scale = squash_scale
        self.body = mlp([n_features, *hidden], final_activation=True)
        self.head = nn.Linear(hidden[-1], 1)

    def hidden_and_logit(self, scaled: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = self.body(squash(scaled, self.squash_scale))
        return hidden, self.head(hidden).squeeze(1)

    def forward(self, scaled: torch.Tensor) -> torch.Tensor:
        return self.hidden_and_logit(scaled)[1]


class ScoringModel(nn.Module):
    """Raw feature rows (the preprocessor's input columns, in order) -> student logit."""

    def __init__(self, preprocessor: Preprocessor, net: StudentNet):
        super().__init__()
        self.input_columns = list(preprocessor.input_columns)
        keep = [preprocessor.input_columns.index(c) for c in preprocessor.columns]
        self.register_buffer("keep", torch.tensor(keep, dtype=torch.long))
        self.register_buffer("center", torch.tensor(preprocessor.center, dtype=torch.float32))
        self.register_buffer("scale", torch.tensor(preprocessor.scale, dtype=torch.float32))
        self.net = net

    def forward(self, raw: torch.Tensor) -> torch.Tensor:
        scaled = (raw.index_select(1, self.keep) - self.center) / self.scale
        return self.net(scaled)

    @torch.inference_mode()
    def score(self, raw: np.ndarray, chunk_rows: int = 65_536) -> np.ndarray:
        raw = torch.from_numpy(np.require(raw, np.float32, ["C", "W"]))
        return torch.cat([self(chunk) for chunk in raw.split(chunk_rows)]).numpy()

    @property
    def n_params(self) -> int:
        return sum(p.numel() for p in self.net.parameters())
