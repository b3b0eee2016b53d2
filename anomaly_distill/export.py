"""ONNX export of the student, preprocessing included, and ONNX Runtime scoring."""
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from anomaly_distill.models.student import ScoringModel, StudentNet
from anomaly_distill.segments import Segmented

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


def _student_state(student) -> dict:
    model = student.model
    return {
        "input_columns": model.input_columns,
        "hidden": [m.out_features for m in model.net.body if isinstance(m, torch.nn.Linear)],
        "squash": model.net.squash_scale,
        "state_dict": model.state_dict(),
        "threshold": student.threshold,
    }


def save_student(student, path: str | Path) -> Path:
    """Everything needed to rebuild the student in another process: weights, architecture, scaling, threshold
    (per segment for a segmented student)."""
    if hasattr(student, "normaliser"):  # a SeriesStudent: the window recipe travels with the weights
        saved = {"series": {"center": student.normaliser.center.tolist(), "scale": student.normaliser.scale.tolist(),
                            "window": student.window, "timestamp_column": student.timestamp_column,
                            "value_columns": student.value_columns},
                 "student": _student_state(student.student)}
    elif isinstance(student, Segmented):
        saved = {"segment_column": student.column,
                 "segments": {name: _student_state(member) for name, member in student.members.items()}}
    else:
        saved = _student_state(student)
    torch.save(saved, path)
    return Path(path)


def _student_from_state(saved: dict):
    from anomaly_distill.pipeline import Student

    state = saved["state_dict"]
    net = StudentNet(len(state["keep"]), saved["hidden"], saved["squash"])
    model = ScoringModel.from_state(saved["input_columns"], net, state)
    return Student(model.eval(), saved["threshold"])


def load_student(path: str | Path):
    saved = torch.load(path, weights_only=True)
    if "series" in saved:
        from anomaly_distill.series_pipeline import SeriesStudent
        from anomaly_distill.timeseries import Normaliser

        recipe = saved["series"]
        normaliser = Normaliser(np.asarray(recipe["center"]), np.asarray(recipe["scale"]))
        return SeriesStudent(_student_from_state(saved["student"]), normaliser, recipe["window"],
                             recipe["timestamp_column"], recipe["value_columns"])
    if "segments" in saved:
        return Segmented(saved["segment_column"],
                         {name: _student_from_state(state) for name, state in saved["segments"].items()})
    return _student_from_state(saved)
