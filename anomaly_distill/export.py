"""ONNX graphs of the detectors, and an ONNX Runtime scorer that reads what they export.

- tabular student: one graph, raw feature rows (float32) -> logit; the input columns are in the graph's metadata.
- series student: one graph, raw values of a history (float64, rows oldest first) -> one logit per point with a
  full window behind it; normalisation, windowing and the window statistics are inside the graph.
- per-segment model: a folder with one graph per segment and `manifest.json` (segment column, thresholds, which
  file scores which segment, the fallback for unseen segments). `OnnxDetector` routes rows by it.
"""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from anomaly_distill.models.student import ScoringModel
from anomaly_distill.series.timeseries import window_rows
from anomaly_distill.tabular.segments import route_rows

INPUT_NAME, SERIES_INPUT_NAME, OUTPUT_NAME = "features", "values", "score"
IMAGE_INPUT_NAME, MAP_NAME = "images", "map"
MANIFEST = "manifest.json"  # of a per-segment export (anomaly_distill.tabular.segments writes it)


def _export(module: nn.Module, example: torch.Tensor, path: Path, input_name: str, metadata: dict) -> Path:
    torch.onnx.export(
        module.eval(),
        (example,),
        str(path),
        dynamo=False,
        input_names=[input_name],
        output_names=[OUTPUT_NAME],
        dynamic_axes={input_name: {0: "rows"}, OUTPUT_NAME: {0: "scores"}},
        opset_version=17,
    )
    import onnx  # here, not at the top: scoring loads detectors and never exports (onnx costs ~60 MB of RSS)

    graph = onnx.load(str(path))
    for key, value in metadata.items():
        graph.metadata_props.add(key=key, value=json.dumps(value))
    onnx.save(graph, str(path))
    return path


def export_table_graph(model: ScoringModel, threshold: float, path: str | Path) -> Path:
    example = torch.zeros(2, len(model.input_columns))
    return _export(
        model,
        example,
        Path(path),
        INPUT_NAME,
        {"kind": "tabular", "input_columns": model.input_columns, "threshold": threshold},
    )


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


class ImageScoringGraph(nn.Module):
    """Images (n, channels, size, size) float32 in [0, 1] -> (score per image, map per image at full size)."""

    def __init__(self, detector):
        super().__init__()
        self.net, self.reduction, self.size = detector.net, detector.reduction, detector.size

    def forward(self, images: torch.Tensor):
        from anomaly_distill.models.images import image_score

        small = self.net(images)
        full = nn.functional.interpolate(small.unsqueeze(1), size=(self.size, self.size), mode="bilinear")
        return image_score(small, self.reduction), full.squeeze(1)


def export_image_graph(detector, path: str | Path) -> Path:
    path = Path(path)
    example = torch.zeros(2, detector.channels, detector.size, detector.size)
    torch.onnx.export(
        ImageScoringGraph(detector).eval(),
        (example,),
        str(path),
        dynamo=False,
        input_names=[IMAGE_INPUT_NAME],
        output_names=[OUTPUT_NAME, MAP_NAME],
        dynamic_axes={IMAGE_INPUT_NAME: {0: "images"}, OUTPUT_NAME: {0: "scores"}, MAP_NAME: {0: "maps"}},
        opset_version=17,
    )
    import onnx

    graph = onnx.load(str(path))
    for key, value in {
        "kind": "image",
        "size": detector.size,
        "channels": detector.channels,
        "threshold": detector.threshold,
    }.items():
        graph.metadata_props.add(key=key, value=json.dumps(value))
    onnx.save(graph, str(path))
    return path


def _session(path: Path, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = threads
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class OnnxScorer:
    """One exported graph: `score(raw)` on an array (the graph's input layout)."""

    def __init__(self, path: str | Path, threads: int = 1):
        self.session = _session(Path(path), threads)
        meta = self.session.get_modelmeta().custom_metadata_map
        self.metadata = {key: json.loads(value) for key, value in meta.items()}
        self.input_name = self.session.get_inputs()[0].name

    def score(self, raw: np.ndarray) -> np.ndarray:
        dtype = np.float64 if self.input_name == SERIES_INPUT_NAME else np.float32
        return self.session.run([OUTPUT_NAME], {self.input_name: np.asarray(raw, dtype=dtype)})[0]

    def score_frame(self, frame: pd.DataFrame) -> np.ndarray:
        columns = self.metadata.get("value_columns") or self.metadata["input_columns"]
        return self.score(frame[columns].to_numpy())


class OnnxDetector:
    """Scores frames with what `export_onnx` wrote: a graph file, or a per-segment folder with its manifest."""

    def __init__(self, path: str | Path, threads: int = 1):
        path = Path(path)
        self.manifest = json.loads((path / MANIFEST).read_text()) if path.is_dir() else None
        if self.manifest is None:
            self.members = {None: OnnxScorer(path, threads)}
        else:
            self.members = {
                name: OnnxScorer(path / member["file"], threads) for name, member in self.manifest["members"].items()
            }

    def score(self, frame: pd.DataFrame) -> np.ndarray:
        if self.manifest is None:
            return self.members[None].score_frame(frame)
        segments = frame[self.manifest["segment_column"]].astype(str).to_numpy()
        out = np.empty(len(frame), dtype=np.float64)
        for name, index in route_rows(segments, list(self.members), self.manifest["fallback"]).items():
            out[index] = self.members[name].score_frame(frame.iloc[index])
        return out
