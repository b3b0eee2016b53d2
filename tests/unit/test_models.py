import numpy as np
import pytest
import torch

from anomaly_distill.config import EngineConfig, StudentConfig, TeacherConfig
from anomaly_distill.data import DataError
from anomaly_distill.models.student import StudentNet
from anomaly_distill.models.teachers import (
    AutoencoderTeacher,
    EcdfCalibrator,
    EnsembleTeacher,
    InductiveECOD,
    SupervisedTeacher,
    build_teacher,
)


@pytest.fixture
def rows():
    """Normal rows near a 2-D plane in 5-D (structure an autoencoder can learn); 20 anomalies off the plane."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(600, 2)) @ rng.normal(size=(2, 5)) + rng.normal(scale=0.1, size=(600, 5))
    X[:20] += 4 * np.linalg.svd(X[20:], full_matrices=True)[2][-1]  # along the least-used direction
    return X.astype(np.float32)


def test_ecdf_calibrator_by_hand():
    calibrate = EcdfCalibrator(np.array([1.0, 2.0, 2.0, 4.0]))
    np.testing.assert_allclose(calibrate(np.array([0.0, 1.0, 2.0, 3.0, 4.0, 9.0])), [0.0, 0.25, 0.75, 0.875, 1.0, 1.0])


def test_inductive_ecod_scores_a_row_the_same_in_any_batch(rows):
    ecod = InductiveECOD().fit(rows)
    alone = ecod.decision_function(rows[:1])
    in_batch = ecod.decision_function(np.vstack([rows[:1], rows[:1] * 10, rows[100:400]]))[:1]
    np.testing.assert_allclose(alone, in_batch)


def test_inductive_ecod_ranks_like_pyod_on_training_rows(rows):
    from pyod.models.ecod import ECOD
    from scipy.stats import spearmanr

    ours = InductiveECOD().fit(rows).decision_scores_
    assert spearmanr(ours, ECOD().fit(rows).decision_scores_).statistic > 0.99


@pytest.mark.parametrize("kind", ["ensemble", "autoencoder", "supervised"])
def test_every_teacher_ranks_planted_anomalies_high(rows, kind):
    y = np.zeros(len(rows), dtype=int)
    y[:20] = 1
    teacher = build_teacher(TeacherConfig(kind=kind, epochs=20), seed=0).fit(rows, y)
    scores = teacher.score(rows)
    assert scores[:20].mean() > np.quantile(scores[20:], 0.9)
    features = teacher.features(rows)
    assert (features is None) == (kind == "ensemble")
    if features is not None:
        assert features.shape[0] == len(rows)


def test_ensemble_teacher_averages_calibrated_members(rows):
    teacher = EnsembleTeacher(TeacherConfig(detectors=["iforest", "ecod", "knn"])).fit(rows)
    members = teacher.member_scores(rows)
    assert members.shape == (len(rows), 3) and members.min() >= 0 and members.max() <= 1
    np.testing.assert_allclose(teacher.score(rows), members.mean(axis=1))


def test_supervised_teacher_needs_both_classes(rows):
    with pytest.raises(DataError, match="needs a label column"):
        SupervisedTeacher(TeacherConfig(kind="supervised")).fit(rows, None)
    with pytest.raises(DataError, match="needs a label column"):
        SupervisedTeacher(TeacherConfig(kind="supervised")).fit(rows, np.zeros(len(rows), dtype=int))


@pytest.mark.parametrize("n_features", [3, 6, 10, 21, 50, 200])
def test_default_student_is_under_a_tenth_of_the_autoencoder(n_features):
    config = EngineConfig()
    X = np.random.default_rng(0).normal(size=(50, n_features)).astype(np.float32)
    teacher = AutoencoderTeacher(config.teacher.model_copy(update={"epochs": 1})).fit(X)
    student = StudentNet(n_features, config.student.hidden, config.student.squash)
    student_params = sum(p.numel() for p in student.parameters())
    assert student_params * 10 <= teacher.n_params
    if n_features <= 21:  # the ADBench widths: a few thousand parameters
        assert student_params < 4000


def test_student_outputs_one_logit_per_row():
    net = StudentNet(4, StudentConfig().hidden, 5.0)
    hidden, logits = net.hidden_and_logit(torch.zeros(7, 4))
    assert logits.shape == (7,) and hidden.shape == (7, StudentConfig().hidden[-1])


def test_segmented_routes_rows_to_their_segment_and_unknown_ones_to_the_global_member():
    import pandas as pd

    from anomaly_distill.tabular.segments import GLOBAL, Segmented

    class Constant:
        def __init__(self, value, threshold):
            self.value, self.threshold = value, threshold

        def score(self, rows):
            return np.full(len(rows), self.value)

    model = Segmented("machine", {GLOBAL: Constant(0.0, 0.5), "A": Constant(1.0, 0.5), "B": Constant(2.0, 2.5)})
    rows = pd.DataFrame({"x": range(5), "machine": ["A", "B", "Z", "A", 7]})
    assert model.score(rows).tolist() == [1.0, 2.0, 0.0, 1.0, 0.0]
    assert model.predict(rows)["is_anomaly"].tolist() == [True, False, False, True, False]
    assert model.predict(rows, threshold=1.5)["is_anomaly"].tolist() == [False, True, False, False, False]


def test_ensemble_combination_rules():
    from anomaly_distill.models.teachers import agreement_weights, combine_members

    scores = np.array([[0.1, 0.9, 0.5], [0.99, 0.2, 0.6]])
    assert combine_members(scores, None, "mean") == pytest.approx([0.5, 0.59666667])
    assert combine_members(scores, None, "median") == pytest.approx([0.5, 0.6])
    assert combine_members(scores, None, "max") == pytest.approx([0.9, 0.99])
    # fisher: mean of -log(1 - p); a member at p = 1 is clipped to the tail floor instead of infinity
    assert combine_members(scores, None, "fisher")[0] == pytest.approx(-np.log([0.9, 0.1, 0.5]).mean())
    assert np.isfinite(combine_members(np.array([[1.0, 0.0]]), None, "fisher")).all()
    # three members that rank training rows alike and one that ranks them backwards: the odd one gets no weight
    rows = np.arange(20, dtype=float)
    reference = np.column_stack([rows, rows + 3 * np.sin(rows), rows**2, -rows])
    weights = agreement_weights(reference, "agreement")
    assert weights[3] == 0 and weights.sum() == pytest.approx(1) and (weights[:3] > 0).all()
    most = agreement_weights(reference, "most_agreeing")
    assert sorted(most.tolist()) == [0, 0, 0, 1] and most[3] == 0


@pytest.mark.parametrize("rule", ["mean", "max", "agreement"])
def test_ensemble_teacher_combines_by_its_rule(rule):
    from anomaly_distill.config import TeacherConfig
    from anomaly_distill.models.teachers import EnsembleTeacher, combine_members

    X = np.random.default_rng(0).normal(size=(300, 4))
    teacher = EnsembleTeacher(TeacherConfig(combine=rule), seed=0).fit(X)
    members = teacher.member_scores(X[:10])
    expected = members @ teacher.weights if rule == "agreement" else combine_members(members, None, rule)
    assert teacher.score(X[:10]) == pytest.approx(expected)
