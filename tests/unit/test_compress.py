"""Compressed students: pruned units and int8 weights keep what the student does, and stay whole detectors."""

import pickle

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from anomaly_distill.config import DistillConfig, EngineConfig, StudentConfig, TeacherConfig
from anomaly_distill.detector import load_detector, save_detector, size_bytes
from anomaly_distill.export import OnnxDetector
from anomaly_distill.models.student import StudentNet
from anomaly_distill.tabular import pipeline
from anomaly_distill.tabular.compress import Int8Student, hidden_widths, prune_units
from anomaly_distill.tabular.explain import integrated_gradients

FAST = EngineConfig(distill=DistillConfig(epochs=15, min_rows=3000), teacher=TeacherConfig(epochs=10))


def compressed(thyroid, method: str):
    config = FAST.model_copy(update={"student": StudentConfig(compress=method, prune_epochs=10)})
    train, test = pipeline.split(thyroid, config)
    trained = pipeline.train_teacher(train, config)
    soft = pipeline.generate_soft_labels(trained, train, config)
    plain = pipeline.distill_student(soft, trained, train, FAST)
    return plain, pipeline.distill_student(soft, trained, train, config), trained, test


@pytest.fixture(scope="module")
def int8(thyroid):
    return compressed(thyroid, "int8")


def test_pruning_units_that_feed_nothing_leaves_the_function_unchanged():
    torch.manual_seed(0)
    net = StudentNet(5, [8, 4], 5.0).eval()
    with torch.no_grad():
        net.body[2].weight[:, :4] = 0  # units 0-3 of the first hidden layer feed nothing
        net.head.weight[:, :2] = 0  # units 0-1 of the second feed nothing
    pruned = prune_units(net, 0.5).eval()
    assert hidden_widths(pruned) == [4, 2]
    x = torch.randn(50, 5)
    torch.testing.assert_close(pruned(x), net(x))


def test_pruning_keeps_at_least_one_unit_per_layer():
    assert hidden_widths(prune_units(StudentNet(3, [4, 2], 5.0), 0.9)) == [1, 1]


def test_a_pruned_student_is_smaller_and_still_follows_the_teacher(thyroid):
    plain, pruned, trained, test = compressed(thyroid, "prune")
    assert hidden_widths(pruned.model.net) == [32, 16] and pruned.n_params < plain.n_params / 3
    assert size_bytes(pruned) < size_bytes(plain)
    result = pipeline.evaluate(pruned, trained, test)
    assert result["student"]["fidelity"] > 0.9 and result["student"]["auroc"] > 0.9
    assert any(h["epoch"] >= len(plain.history) for h in pruned.history)  # fine-tuning continues the curve


def test_int8_scores_rank_rows_as_the_float_student_does(int8):
    plain, quantised, trained, test = int8
    assert isinstance(quantised, Int8Student)
    float_scores, int8_scores = plain.score(test.features), quantised.score(test.features)
    assert spearmanr(float_scores, int8_scores)[0] > 0.99
    assert not np.array_equal(float_scores, int8_scores)  # the int8 graph scores, not a float copy
    assert size_bytes(quantised) < 0.75 * size_bytes(plain)
    assert pipeline.evaluate(quantised, trained, test)["student"]["auroc"] > 0.9


def test_an_int8_row_scores_the_same_alone_as_in_any_batch(int8):
    _, quantised, _, test = int8
    rows = test.features.head(50)
    alone = np.array([quantised.score(rows.iloc[[i]])[0] for i in range(len(rows))])
    np.testing.assert_array_equal(alone, quantised.score(rows))
    np.testing.assert_array_equal(quantised.score(rows.iloc[::-1])[::-1], quantised.score(rows))


def test_int8_threshold_is_set_on_its_own_scores(int8, thyroid):
    _, quantised, _, _ = int8
    train, _ = pipeline.split(thyroid, FAST)
    assert np.mean(quantised.score(train.features) > quantised.threshold) == pytest.approx(FAST.contamination, abs=0.01)


def test_an_int8_student_saves_loads_pickles_and_exports_unchanged(int8, tmp_path):
    _, quantised, _, test = int8
    back = load_detector(save_detector(quantised, tmp_path / "detector.pt"))
    assert isinstance(back, Int8Student) and back.threshold == quantised.threshold
    np.testing.assert_array_equal(back.score(test.features), quantised.score(test.features))
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(quantised)).score(test.features), back.score(test.features))
    onnx = OnnxDetector(quantised.export_onnx(tmp_path / "student.onnx"))
    np.testing.assert_allclose(onnx.score(test.features), quantised.score(test.features), atol=1e-6)
    assert onnx.members[None].metadata["threshold"] == pytest.approx(quantised.threshold)


def test_int8_explanations_differentiate_the_dequantised_weights(int8):
    plain, quantised, _, test = int8
    raw = test.features.head(20).to_numpy(dtype=np.float32, copy=True)
    with torch.no_grad():  # the dequantised network is the int8 graph up to activation rounding
        float_logits = quantised.model(torch.from_numpy(raw)).numpy()
    assert spearmanr(float_logits, quantised.model.score(raw))[0] > 0.99
    assert not np.allclose(integrated_gradients(quantised.model, raw), integrated_gradients(plain.model, raw))
    flagged = quantised.predict(test.features, explain=2)
    assert (flagged.explanation[flagged.is_anomaly] != "").all()
