"""ONNX export of the student, preprocessing included, and ONNX Runtime scoring."""
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from anomaly_distill.models.student import ScoringModel

INPUT_NAME, OUTPUT_NAME = "features", "score"


def export_onnx(model: ScoringModel, path: str | Path) -> Path:
    path = Path(path)
    example = torch.zeros(2, len(model.input_columns))
    torch.onnx.export(
        model.eval(), (example,), str(path), dynamo=False, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
        dynamic_axes={INPUT_NAME: {0: "rows"}, OUTPUT_NAME: {0: "rows"}}, opset_version=17)
    return path


class OnnxScorer:
    def __init__(self, path: str | Path, threads: int = 1):
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = threads
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def score(self, raw: np.ndarray) -> np.ndarray:
        return self.session.run([OUTPUT_NAME], {INPUT_NAME: np.asarray(raw, dtype=np.float32)})[0]
