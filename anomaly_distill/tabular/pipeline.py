"""The training steps, in order. The CLI, the Prefect flows and the MLflow project all run these.

The training-only modules (PyOD teachers, soft labels, distillation) are imported in the steps that use them:
loading a Student to score rows needs none of them (batch scoring's memory fell by ~180 MB)."""

from dataclasses import dataclass

import numpy as np
import pandas as pd

from anomaly_distill.config import EngineConfig
from anomaly_distill.data import Preprocessor, Table, fit_preprocessor, split_table
from anomaly_distill.metrics import detection_metrics, fidelity, has_both_classes, threshold_at_contamination
from anomaly_distill.tabular.tabular_student import Student


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
    from anomaly_distill.soft_labels import soft_label_table, synthesizer_for

    synthesize = synthesizer_for(config, trained.preprocessor)
    return soft_label_table(trained.teacher, trained.preprocessor, train, config, synthesize)


def distill_student(soft_labels: pd.DataFrame, trained: TrainedTeacher, train: Table, config: EngineConfig) -> Student:
    from anomaly_distill.distill import train_student

    model, history = train_student(soft_labels, trained.preprocessor, config)
    student = Student(model, 0.0, history)
    if config.student.compress != "none":
        from anomaly_distill.tabular.compress import compress_student

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
