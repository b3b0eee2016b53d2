"""The training steps end to end on small data: soft labels, distillation, determinism, ONNX parity."""

import numpy as np
import pytest

from anomaly_distill.config import DistillConfig, EngineConfig, TeacherConfig
from anomaly_distill.data import table_from_frame
from anomaly_distill.export import OnnxScorer
from anomaly_distill.soft_labels import FEATURE_PREFIX, META_COLUMNS
from anomaly_distill.tabular import pipeline

FAST = EngineConfig(distill=DistillConfig(epochs=15, min_rows=3000), teacher=TeacherConfig(epochs=10))


def train_all(table, config=FAST):
    train, test = pipeline.split(table, config)
    trained = pipeline.train_teacher(train, config)
    soft = pipeline.generate_soft_labels(trained, train, config)
    return train, test, trained, soft, pipeline.distill_student(soft, trained, train, config)


def test_soft_label_table(small_frame):
    train, _, trained, soft, _ = train_all(table_from_frame(small_frame, "label"))
    assert list(soft.columns[:4]) == ["a", "b", "c", "d"] and set(META_COLUMNS) <= set(soft.columns)
    real = soft[soft.source == "train"]
    assert len(real) == len(train) and len(soft) >= FAST.distill.min_rows
    assert set(soft.source) == {"train", "perturbed", "uniform"}
    assert soft.soft_target.between(0, 1).all()
    assert real.teacher_label.mean() == pytest.approx(FAST.contamination, abs=0.01)
    assert real.true_label.notna().all() and soft[soft.source != "train"].true_label.isna().all()
    np.testing.assert_allclose(real[["a", "b", "c", "d"]].to_numpy(), train.features.to_numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(real.teacher_score, trained.score(train.features))


def test_neural_teacher_features_go_into_the_table_and_the_hint_loss(small_frame):
    config = FAST.model_copy(update={"teacher": TeacherConfig(kind="autoencoder", epochs=5)})
    *_, soft, student = train_all(table_from_frame(small_frame, "label"), config)
    assert sum(c.startswith(FEATURE_PREFIX) for c in soft.columns) == 2  # 4 features -> bottleneck 4 // 2
    assert all("val_hint" in h for h in student.history)


def test_student_learns_the_teacher(thyroid):
    _, test, trained, _, student = train_all(thyroid)
    result = pipeline.evaluate(student, trained, test)
    assert result["student"]["fidelity"] > 0.9
    assert result["student"]["auroc"] > 0.9 and result["teacher"]["auroc"] > 0.9


def test_alternating_schedule_and_class_weight_train_a_student_that_still_learns(thyroid):
    """With labels (thyroid has them): soft and hard epochs alternate, anomaly rows weigh normal÷anomaly more."""
    distill = FAST.distill.model_copy(update={"schedule": "alternating", "class_weight": "balanced", "alpha": 0.5})
    train, test, trained, soft, student = train_all(thyroid, FAST.model_copy(update={"distill": distill}))
    result = pipeline.evaluate(student, trained, test)
    assert result["student"]["auroc"] > 0.9 and len(student.history) >= 2
    *_, weighted = train_all(thyroid)
    assert not np.allclose(student.score(test.features), weighted.score(test.features))


def test_same_seed_same_model(small_frame):
    table = table_from_frame(small_frame, "label")
    *_, a = train_all(table)
    *_, b = train_all(table)
    *_, c = train_all(table, FAST.model_copy(update={"seed": 1}))
    np.testing.assert_array_equal(a.score(table.features), b.score(table.features))
    assert not np.allclose(a.score(table.features), c.score(table.features))


def test_threshold_is_stored_and_overridable(small_frame):
    table = table_from_frame(small_frame, "label")
    train, _, _, _, student = train_all(table)
    flagged = student.predict(train.features)
    assert flagged.is_anomaly.mean() == pytest.approx(FAST.contamination, abs=0.01)
    everything = student.predict(train.features, threshold=float(flagged.score.min()) - 1)
    assert everything.is_anomaly.all()


def test_onnx_matches_torch_on_random_and_real_rows(tmp_path, thyroid):
    _, test, _, _, student = train_all(thyroid)
    scorer = OnnxScorer(student.export_onnx(tmp_path / "student.onnx"))
    real = test.features.to_numpy(dtype=np.float32)
    rng = np.random.default_rng(0)
    random = (rng.normal(size=(500, real.shape[1])) * real.std(axis=0) * 3 + real.mean(axis=0)).astype(np.float32)
    for rows in (real, random):
        np.testing.assert_allclose(scorer.score(rows), student.model.score(rows), rtol=1e-5, atol=1e-5)
