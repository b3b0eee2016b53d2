"""ONNX graphs of the detectors, and an ONNX Runtime scorer that reads what they export.

- tabular student: one graph, raw feature rows (float32) -> logit; the input columns are in the graph's metadata.
- series student: one graph, raw values of a history (float64, rows oldest first) -> one logit per point with a
  full window behind it (built in `series.series_export`).
- image detector: one graph, images -> (score, map) (built in `image.image_export`).
- per-segment model: a folder with one graph per segment and `manifest.json` (segment column, thresholds, which
  file scores which segment, the fallback for unseen segments). `OnnxDetector` routes rows by it.

Shared by every kind, so it imports none of them: a kind's own graph is built in the kind's package.
"""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from anomaly_distill.models.student import ScoringModel

INPUT_NAME, SERIES_INPUT_NAME, OUTPUT_NAME = "features", "values", "score"
IMAGE_INPUT_NAME, MAP_NAME = "images", "map"
MANIFEST = "manifest.json"  # of a per-segment export (anomaly_distill.tabular.segments writes it)


def route_rows(segments: np.ndarray, members: list[str], fallback: str) -> dict[str, np.ndarray]:
    """Row indices per member: each row to its segment's member, unknown segments to `fallback`."""
    known = np.isin(segments, [name for name in members if name != fallback])
    routes = {fallback: np.flatnonzero(~known)}
    for name in np.unique(segments[known]):
        routes[name] = np.flatnonzero(segments == name)
    return {name: index for name, index in routes.items() if len(index)}


def _export(
    module: nn.Module,
    example: torch.Tensor,
    path: Path,
    input_name: str,
    metadata: dict,
    input_axis: str = "rows",
    outputs: dict[str, str] | None = None,
) -> Path:
    """`module` as a graph with `metadata` (JSON values) in it: every kind's export comes through here. `outputs`
    maps each output's name to the name of its first axis (default: one score per row); first axes are dynamic."""
    outputs = outputs or {OUTPUT_NAME: "scores"}
    torch.onnx.export(
        module.eval(),
        (example,),
        str(path),
        dynamo=False,
        input_names=[input_name],
        output_names=list(outputs),
        dynamic_axes={input_name: {0: input_axis}, **{name: {0: axis} for name, axis in outputs.items()}},
        opset_version=17,
    )
    import onnx  # here, not at the top: scoring loads detectors and never exports (onnx costs ~60 MB of RSS)

    graph = onnx.load(str(path))
    add_metadata(graph, metadata)
    onnx.save(graph, str(path))
    return path


def add_metadata(graph, metadata: dict) -> None:
    """`metadata` into an ONNX graph's properties, each value as JSON (what `OnnxScorer` reads back)."""
    for key, value in metadata.items():
        graph.metadata_props.add(key=key, value=json.dumps(value))


def export_table_graph(model: ScoringModel, threshold: float, path: str | Path) -> Path:
    example = torch.zeros(2, len(model.input_columns))
    return _export(
        model,
        example,
        Path(path),
        INPUT_NAME,
        {"kind": "tabular", "input_columns": model.input_columns, "threshold": threshold},
    )


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
