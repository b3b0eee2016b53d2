"""Time-series training: window rows → teacher(s) → pick on the validation period → soft labels → student.

The same engine as tables (pipeline.py) runs on the window rows; this module adds the series-specific steps and
`SeriesStudent`, the shippable detector that takes a recent history frame and scores each point online."""

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from anomaly_distill.config import EngineConfig, SeriesConfig
from anomaly_distill.data import Table
from anomaly_distill.metrics import has_both_classes
from anomaly_distill.series.series_export import export_series_graph
from anomaly_distill.series.timeseries import Normaliser, Series, Windowed, series_from_frame, series_windows, windowed
from anomaly_distill.tabular import pipeline
from anomaly_distill.tabular.compress import load_tabular


@dataclass
class SeriesStudent:
    """Student over window rows plus what turns a history frame into them (normaliser, window, columns)."""

    student: pipeline.Student
    normaliser: Normaliser
    window: int
    timestamp_column: str
    value_columns: list[str]

    threshold = property(lambda self: self.student.threshold)
    history = property(lambda self: self.student.history)
    n_params = property(lambda self: self.student.n_params)
    kind = "timeseries"
    contract_kind = "timeseries"
    explains = False
    onnx_name = "detector.onnx"

    def score_rows(self, rows: np.ndarray) -> np.ndarray:
        """Window rows (already normalised), as the rows student scores them."""
        return self.student.score_rows(rows)

    def state(self) -> dict:
        return {
            "series": {
                "center": self.normaliser.center.tolist(),
                "scale": self.normaliser.scale.tolist(),
                "window": self.window,
                "timestamp_column": self.timestamp_column,
                "value_columns": self.value_columns,
            },
            "student": self.student.state(),
        }

    @classmethod
    def from_state(cls, saved: dict) -> "SeriesStudent":
        recipe = saved["series"]
        normaliser = Normaliser(np.asarray(recipe["center"]), np.asarray(recipe["scale"]))
        return cls(
            load_tabular(saved["student"]),
            normaliser,
            recipe["window"],
            recipe["timestamp_column"],
            recipe["value_columns"],
        )

    def export_onnx(self, path: str | Path) -> Path:
        return export_series_graph(self, path)

    def windows(self, frame: pd.DataFrame) -> tuple[pd.Series, pd.DataFrame]:
        series = series_from_frame(frame, self.timestamp_column, self.window, self.value_columns)
        return series.timestamps.iloc[self.window - 1 :].reset_index(drop=True), series_windows(
            series, self.normaliser, self.window
        )

    def score(self, frame: pd.DataFrame) -> np.ndarray:
        """One score per point that has a full window behind it (the first window-1 points get none)."""
        return self.student.score(self.windows(frame)[1])

    def predict(self, frame: pd.DataFrame, threshold: float | None = None) -> pd.DataFrame:
        stamps, rows = self.windows(frame)
        scored = self.student.predict(rows, threshold)
        return scored.assign(**{self.timestamp_column: stamps})[[self.timestamp_column, "score", "is_anomaly"]]


@dataclass
class SeriesFit:
    data: Windowed
    trained: pipeline.TrainedTeacher
    student: SeriesStudent
    teacher_kind: str
    choice: str  # why this teacher
    candidates: dict[str, pipeline.TrainedTeacher] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)  # fit time of the teacher(s) and of the student


def engine_for(series: Series, config: SeriesConfig, engine: EngineConfig, kind: str) -> EngineConfig:
    """The engine settings of one teacher candidate: those in SERIES_OWNS come from the series settings."""
    teacher = engine.teacher.model_copy(
        update={"kind": kind, "sequence": (series.values.shape[1], config.window), "member_hints": True}
    )
    student = engine.student.model_copy(update={"hidden": config.student_hidden})
    distill = engine.distill.model_copy(
        update={
            "min_rows": config.distill_rows,
            "temperature": config.temperature,
            "beta": config.hint_weight,
            "synthetic": "windows" if config.augment else "perturb",
        }
    )
    return engine.model_copy(
        update={"teacher": teacher, "student": student, "distill": distill, "contamination": config.contamination}
    )


NO_LABELS_TO_CHOOSE_BY = " (no labelled anomalies in the validation period to choose by)"


def teacher_kinds(setting: str, validation_labels: np.ndarray | None) -> list[str]:
    """The teacher candidates to train. auto trains both only when the validation period has labels of both
    classes to choose by; without them it would pick the ensemble, so the autoencoder is not trained for nothing."""
    if setting != "auto":
        return [setting]
    return ["ensemble", "conv_autoencoder"] if has_both_classes(validation_labels) else ["ensemble"]


def choose_teacher(candidates: dict[str, pipeline.TrainedTeacher], validation: Table) -> tuple[str, str]:
    """The better teacher by validation AUROC when the validation period has labels of both classes."""
    # scikit-learn's metrics (~1 s) only to choose a teacher by labels
    from sklearn.metrics import roc_auc_score

    if len(candidates) == 1:
        unlabelled = validation is not None and not has_both_classes(validation.labels)
        return next(iter(candidates)), "the only candidate" + (NO_LABELS_TO_CHOOSE_BY if unlabelled else "")
    if not has_both_classes(validation.labels):
        return "ensemble", "no labelled anomalies in the validation period: ensemble by default"
    aurocs = {kind: roc_auc_score(validation.labels, t.score(validation.features)) for kind, t in candidates.items()}
    best = max(aurocs, key=aurocs.get)
    return best, "validation AUROC " + ", ".join(f"{k} {v:.4f}" for k, v in aurocs.items())


def train_series(
    series: Series,
    config: SeriesConfig,
    engine: EngineConfig,
    labels: np.ndarray | None = None,
    timestamp_column: str = "timestamp",
    map_fn=map,
) -> SeriesFit:
    """Labels (per point) are used to pick the teacher on the validation period only; fitting is unsupervised."""
    data = windowed(series, config, labels)
    train = Table(data.part(data.train).features)
    kinds = teacher_kinds(config.teacher, data.part(data.validation).labels)
    start = time.perf_counter()
    candidates = {k: pipeline.train_teacher(train, engine_for(series, config, engine, k), map_fn) for k in kinds}
    kind, why = choose_teacher(candidates, data.part(data.validation))
    chosen = engine_for(series, config, engine, kind)
    trained = candidates[kind]
    teachers_done = time.perf_counter()
    soft_labels = pipeline.generate_soft_labels(trained, train, chosen)
    student = pipeline.distill_student(soft_labels, trained, train, chosen)
    shippable = SeriesStudent(student, data.normaliser, config.window, timestamp_column, list(series.values.columns))
    seconds = {"teacher": teachers_done - start, "student": time.perf_counter() - teachers_done}
    return SeriesFit(data, trained, shippable, kind, why, candidates, seconds)
