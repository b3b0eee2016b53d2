"""The series student's ONNX graph: raw values of a history (float64, rows oldest first) -> one logit per point
with a full window behind it. Normalisation, windowing and the window statistics are inside the graph."""

from pathlib import Path

import numpy as np
import torch
from torch import nn

from anomaly_distill.export import SERIES_INPUT_NAME, _export
from anomaly_distill.models.student import ScoringModel
from anomaly_distill.series.timeseries import window_rows


class SeriesScoringGraph(nn.Module):
    """Raw values (n, channels) -> normalised -> windows ending at each point -> window rows -> student logit.

    The window statistics are `timeseries.window_rows` itself, in float64 up to the student (float32)."""

    def __init__(self, center: np.ndarray, scale: np.ndarray, window: int, model: ScoringModel):
        super().__init__()
        self.register_buffer("center", torch.as_tensor(center, dtype=torch.float64))
        self.register_buffer("scale", torch.as_tensor(scale, dtype=torch.float64))
        self.window = window
        self.model = model

    def forward(self, values: torch.Tensor) -> torch.Tensor:
        normalised = (values - self.center) / self.scale
        starts = torch.arange(normalised.shape[0] - self.window + 1).unsqueeze(1)
        windows = normalised[starts + torch.arange(self.window).unsqueeze(0)].permute(0, 2, 1)  # (m, k, window)
        return self.model(window_rows(windows).to(torch.float32))


def export_series_graph(student, path: str | Path) -> Path:
    graph = SeriesScoringGraph(
        student.normaliser.center, student.normaliser.scale, student.window, student.student.model
    )
    example = torch.zeros(student.window + 1, len(student.value_columns), dtype=torch.float64)
    return _export(
        graph,
        example,
        Path(path),
        SERIES_INPUT_NAME,
        {
            "kind": "timeseries",
            "timestamp_column": student.timestamp_column,
            "value_columns": student.value_columns,
            "window": student.window,
            "threshold": student.threshold,
        },
    )
