"""The one contract every shippable detector keeps (tabular student, series student, per-segment model).

A detector scores a frame of raw input (rows, or a history for a series), flags rows above a threshold, knows its
size, saves its state (tensors and plain values only: loading runs no pickled code) and exports itself to ONNX so
that the exported graph scores exactly what `score` does. What cannot be exported is refused, never exported in
part.
"""

import pkgutil
import tempfile
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import pandas as pd
import torch

from anomaly_distill.errors import DataError


class ExportError(ValueError):
    """A detector (or a member of one) that has no ONNX form, with the reason."""


@runtime_checkable
class Detector(Protocol):
    kind: str  # a key of LOADERS: "tabular" | "timeseries" | "segmented" | "online_series" | "image"
    contract_kind: str  # the `kind` of the data contract it scores: "tabular" | "timeseries" | "image"
    threshold: float
    explains: bool  # whether `predict(..., explain=k)` names the k columns behind each alert
    onnx_name: str | None  # its ONNX export's file (or folder) name in the registry; None: it has no fixed graph
    history: list[dict]  # one record per training epoch (losses), for MLflow and the model card; [] if none

    def score(self, frame: pd.DataFrame) -> np.ndarray: ...

    def score_rows(self, rows: np.ndarray) -> np.ndarray:
        """The model alone on input already in its own form (window rows, image arrays, value points): what
        the speed check times, without reading or validating a frame."""

    def predict(self, frame: pd.DataFrame, threshold: float | None = None) -> pd.DataFrame: ...

    @property
    def n_params(self) -> int: ...

    def state(self) -> dict: ...

    def export_onnx(self, path: str | Path) -> Path:
        """The graph that scores what `score` does; ExportError where `onnx_name` is None."""


def predict(detector: Detector, frame: pd.DataFrame, threshold: float | None = None, explain: int = 0) -> pd.DataFrame:
    """`detector.predict`, with per-alert explanations (`explain` > 0) where the detector gives them (the tabular
    student); asking another detector for them is an error, not a silently missing column."""
    if explain <= 0:
        return detector.predict(frame, threshold)
    if not detector.explains:
        raise DataError(f"explanations are available for tabular models; this is a {detector.kind} model")
    return detector.predict(frame, threshold, explain=explain)


def check_contract_fits(detector: Detector, contract) -> None:
    """A model is registered only beside the data contract of what it scores: a series model with a table's
    contract would load, then fail on its first request."""
    if contract.kind != detector.contract_kind:
        raise ValueError(
            f"a {detector.kind} model scores {detector.contract_kind} input, not a {contract.kind} contract"
        )


def save_detector(detector: Detector, path: str | Path) -> Path:
    torch.save({"kind": detector.kind, **detector.state()}, path)
    return Path(path)


def size_bytes(detector: Detector) -> int:
    """Bytes of the saved state file (`detector.pt`): what the registry stores and a device must hold."""
    with tempfile.TemporaryDirectory() as tmp:
        return save_detector(detector, Path(tmp) / "detector.pt").stat().st_size


def load_detector(path: str | Path) -> Detector:
    saved = torch.load(path, weights_only=True)
    kind = saved.get("kind") or _legacy_kind(saved)
    return detector_from_state(kind, saved)


# The registry of detector kinds: each kind's loader of a saved state, as "module:callable". Imported only when a
# state of that kind is loaded, because the kinds' modules import this one (the protocol, ExportError).
LOADERS = {
    "tabular": "anomaly_distill.tabular.compress:load_tabular",
    "timeseries": "anomaly_distill.series.series_pipeline:SeriesStudent.from_state",
    "segmented": "anomaly_distill.tabular.segments:Segmented.from_state",
    "online_series": "anomaly_distill.series.online:OnlineSeriesModel.from_state",
    "image": "anomaly_distill.image.image_pipeline:ImageDetector.from_state",
}


def register_kind(kind: str, loader: str) -> None:
    """Add a detector kind (a plug-in): `loader` is "module:callable" returning the detector from its state."""
    LOADERS[kind] = loader


def detector_from_state(kind: str, saved: dict) -> Detector:
    if kind not in LOADERS:
        raise ValueError(f"unknown detector kind {kind!r} in saved state; known: {sorted(LOADERS)}")
    return pkgutil.resolve_name(LOADERS[kind])(saved)


def _legacy_kind(saved: dict) -> str:
    """Versions saved before detectors carried their kind."""
    if "series" in saved:
        return "timeseries"
    return "segmented" if "segments" in saved else "tabular"
