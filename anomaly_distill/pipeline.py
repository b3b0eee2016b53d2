"""The training steps, in order. The CLI, the Prefect flows and the MLflow project all run these.

The training-only modules (PyOD teachers, soft labels, distillation) are imported in the steps that use them:
loading a Student to score rows needs none of them (batch scoring's memory fell by ~180 MB)."""

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from anomaly_distill.config import EngineConfig
from anomaly_distill.data import Preprocessor, Table, fit_preprocessor, split_table
from anomaly_distill.export import export_table_graph
from anomaly_distill.metrics import detection_metrics, fidelity, has_both_classes, threshold_at_contamination
from anomaly_distill.models.student import ScoringModel, StudentNet


@dataclass
class Student:
    """The shippable tabular detector: scoring model (preprocessing inside) plus its alarm threshold."""

    model: ScoringModel
    threshold: float
    history: list[dict] = field(default_factory=list)
    compressed_from: dict | None = None  # params and size_bytes of the float student it was compressed from
    kind = "tabular"

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
        if "graph" in saved:  # an int8 student (anomaly_distill/compress.py)
            from anomaly_distill.compress import Int8Student

            return Int8Student.from_state(saved)
        state = saved["state_dict"]
        net = StudentNet(len(state["keep"]), saved["hidden"], saved["squash"])
        return cls(ScoringModel.from_state(saved["input_columns"], net, state).eval(), saved["threshold"])

    def export_onnx(self, path: str | Path) -> Path:
        return export_table_graph(self.model, self.threshold, path)

    def score(self, features: pd.DataFrame) -> np.ndarray:
        return self.model.score(features[self.model.input_columns].to_numpy(dtype=np.float32))

    def predict(self, features: pd.DataFrame, threshold: float | None = None, explain: int = 0) -> pd.DataFrame:
        """`score` and `is_anomaly` per row; with `explain` k > 0 also `explanation`: for each flagged row the k
        columns that raise its score most (see anomaly_distill/explain.py), "" for the others."""
        scores = self.score(features)
        cut = self.threshold if threshold is None else threshold
        scored = pd.DataFrame({"score": scores, "is_anomaly": scores > cut})
        if explain > 0:
            from anomaly_distill.explain import explain_flagged

            scored["explanation"] = explain_flagged(
                self.model, features, scored["is_anomaly"].to_numpy(), explain
            ).to_numpy()
        return scored


@dataclass
class TrainedTeacher:
    teacher: object
    preprocessor: Preprocessor
    threshold: float

    def score(self, features: pd.DataFrame) -> np.ndarray:
        return self.teacher.score(self.preprocessor.transform(features))


def split(table: Table, config: EngineConfig, candidates: np.ndarray | None = None) -> tuple[Table, Table]:
    return split_table(table, config.test_fraction, config.seed, candidates)


def train_teacher(train: Table, config: EngineConfig, map_fn=map) -> TrainedTeacher:
    """`map_fn` (default: the builtin) fits ensemble members; pass a parallel map to spread them out."""
    preprocessor = fit_preprocessor(train.features)
    X = preprocessor.transform(train.features)
    from anomaly_distill.models.teachers import build_teacher

    teacher = build_teacher(config.teacher, config.seed, config.student.squash).fit(X, train.labels, map_fn)
    return TrainedTeacher(teacher, preprocessor, threshold_at_contamination(teacher.score(X), config.contamination))


def generate_soft_labels(trained: TrainedTeacher, train: Table, config: EngineConfig) -> pd.DataFrame:
    from anomaly_distill.soft_labels import soft_label_table
    from anomaly_distill.window_augment import window_synthesizer

    synthesize = None
    if config.distill.synthetic == "windows":
        if config.teacher.sequence is None:
            raise ValueError("windows as synthetic rows need teacher.sequence = (channels, window)")
        synthesize = window_synthesizer(trained.preprocessor, *config.teacher.sequence)
    return soft_label_table(trained.teacher, trained.preprocessor, train, config, synthesize)


def distill_student(soft_labels: pd.DataFrame, trained: TrainedTeacher, train: Table, config: EngineConfig) -> Student:
    from anomaly_distill.distill import train_student

    model, history = train_student(soft_labels, trained.preprocessor, config)
    student = Student(model, 0.0, history)
    if config.student.compress != "none":
        from anomaly_distill.compress import compress_student

        student = compress_student(student, soft_labels, trained.preprocessor, config)
    train_scores = student.model.score(train.features[model.input_columns].to_numpy(dtype=np.float32))
    student.threshold = threshold_at_contamination(train_scores, config.contamination)
    return student


def train_segment(train: Table, config: EngineConfig, map_fn=map) -> tuple[TrainedTeacher, Student]:
    """Teacher, soft labels and student for one segment's rows (no caching: segments are trained together)."""
    trained = train_teacher(train, config, map_fn)
    return trained, distill_student(generate_soft_labels(trained, train, config), trained, train, config)


def held_out_scores(student: Student, trained: TrainedTeacher, test: Table) -> tuple[np.ndarray, np.ndarray]:
    rows = test.scoring_frame()
    return trained.score(rows), student.score(rows)


def evaluate(
    student: Student, trained: TrainedTeacher, test: Table, scores: tuple[np.ndarray, np.ndarray] | None = None
) -> dict[str, dict[str, float]]:
    """Teacher and student metrics on held-out rows (detection metrics need labels of both classes).

    `scores` are `held_out_scores(...)` when the caller has them already (the teacher can be slow to score)."""
    teacher_scores, student_scores = scores or held_out_scores(student, trained, test)
    result = {"teacher": {}, "student": {"fidelity": fidelity(teacher_scores, student_scores)}}
    if has_both_classes(test.labels):
        result["teacher"].update(detection_metrics(test.labels, teacher_scores, trained.threshold))
        result["student"].update(detection_metrics(test.labels, student_scores, student.threshold))
    return result
