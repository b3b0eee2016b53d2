"""Partly labelled data (issue 31): an empty label cell means "not reviewed", everywhere labels are used."""

import numpy as np
import pandas as pd
import pytest
import torch

from anomaly_distill.config import EngineConfig, TeacherConfig
from anomaly_distill.data import UNLABELLED, DataError, check_labels, split_table, table_from_frame
from anomaly_distill.losses import hard_loss, positive_weight
from anomaly_distill.metrics import detection_metrics, has_both_classes, labelled_count
from anomaly_distill.models.teachers import EnsembleTeacher
from anomaly_distill.review import review_queue


def test_empty_cells_are_not_reviewed_and_other_values_are_refused():
    labels = check_labels(pd.Series([0, 1, None, "", " ", 1.0], name="label", dtype=object))
    assert labels.tolist() == [0, 1, UNLABELLED, UNLABELLED, UNLABELLED, 1]
    with pytest.raises(DataError, match=r"found \['-1.0'\]"):
        check_labels(pd.Series([0, -1, None], name="label"))  # -1 is our internal mark, never a file's value


def test_both_classes_and_metrics_count_labelled_rows_only():
    labels = np.array([UNLABELLED, 0, UNLABELLED, 1])
    assert has_both_classes(labels) and not has_both_classes(np.array([UNLABELLED, 1, 1]))
    assert labelled_count(labels) == 2
    # The unlabelled rows score highest: counted as anything, they would move AUROC away from 1.
    assert detection_metrics(labels, np.array([9.0, 0.1, 8.0, 0.9]), 0.5)["auroc"] == 1.0


def test_split_keeps_unlabelled_rows_and_spreads_labelled_ones():
    frame = pd.DataFrame({"x": np.arange(200.0), "label": [1] * 10 + [0] * 30 + [None] * 160})
    train, test = split_table(table_from_frame(frame, "label"), 0.3, seed=0)
    assert len(train) + len(test) == 200
    assert (test.labels == 1).sum() == 3 and (test.labels == UNLABELLED).sum() == 48


def test_hard_loss_golden_value_uses_labelled_rows_only():
    logits = torch.tensor([2.0, -1.0, 5.0, 0.5])
    labels = torch.tensor([1.0, 0.0, float("nan"), float("nan")])
    expected = (np.log1p(np.exp(-2.0)) + np.log1p(np.exp(-1.0))) / 2  # BCE of the two labelled rows
    assert hard_loss(logits, labels).item() == pytest.approx(expected, rel=1e-6)
    nothing = hard_loss(logits, torch.full((4,), float("nan")))
    assert nothing.item() == 0.0 and nothing.requires_grad is False  # a plain tensor: no logits need grad here
    assert positive_weight("balanced", labels) == 1.0
    assert positive_weight("balanced", torch.tensor([1.0, 0.0, 0.0, 0.0, float("nan")])) == 3.0


def _planted(n=1500, seed=0):
    """Normal rows, global outliers the unsupervised members see, and a tight cluster of quiet anomalies they
    miss (inside the normal range on every feature); only some of the quiet ones are labelled."""
    rng = np.random.default_rng(seed)
    normal = rng.normal(0, 1, (n, 4))
    quiet = rng.normal([0.8, -0.8, 0.8, -0.8], 0.05, (40, 4))
    X = np.vstack([normal, quiet]).astype(np.float32)
    y = np.r_[np.zeros(n), np.ones(40)].astype(np.int8)
    return X, y


def test_labelled_anomalies_teach_the_ensemble_what_its_members_miss():
    X, y = _planted()
    partial = np.full(len(y), UNLABELLED, dtype=np.int8)
    partial[np.flatnonzero(y == 1)[:10]] = 1  # a quarter of the quiet anomalies labelled
    unseen = np.flatnonzero(y == 1)[10:]
    config = TeacherConfig(max_fit_rows=5000)
    unsupervised = EnsembleTeacher(config).fit(X, None)
    taught = EnsembleTeacher(config).fit(X, partial)
    ignoring = EnsembleTeacher(config.model_copy(update={"labels": "ignore"})).fit(X, partial)

    def auroc(teacher):
        scores = teacher.score(X)
        keep = np.r_[np.arange(1500), unseen]  # the labelled ten are not scored
        return detection_metrics(y[keep], scores[keep], 0.5)["auroc"]

    assert auroc(taught) > auroc(unsupervised) + 0.1
    assert np.array_equal(ignoring.score(X), unsupervised.score(X))
    assert taught.labelled.weight == pytest.approx(10 / 13)


def test_without_labelled_anomalies_the_teacher_is_todays():
    X, _ = _planted()
    only_normal = np.where(np.arange(len(X)) < 50, 0, UNLABELLED).astype(np.int8)
    assert EnsembleTeacher(TeacherConfig()).fit(X, only_normal).labelled is None
    assert EngineConfig().teacher.labels == "use"


@pytest.mark.parametrize("strategy, expected", [("top", [4, 1, 3]), ("uncertain", [3, 2, 1])])
def test_review_queue_offers_unreviewed_rows_by_strategy(strategy, expected):
    scores = np.array([0.1, 0.8, 0.4, 0.6, 0.95, 0.99])
    reviewed = np.array([False, False, False, False, False, True])
    assert review_queue(scores, 0.55, 3, strategy, reviewed).tolist() == expected


def test_review_queue_refuses_nonsense():
    with pytest.raises(ValueError, match="strategy"):
        review_queue(np.zeros(3), 0.5, 1, "oldest")
    with pytest.raises(ValueError, match="at least 1"):
        review_queue(np.zeros(3), 0.5, 0)
    assert review_queue(np.zeros(2), 0.5, 5).tolist() == [0, 1]


def test_great_expectations_accepts_empty_label_cells_and_refuses_other_values():
    from tasks.validation import validate_frame

    frame = pd.DataFrame({"x": np.arange(20.0), "label": [1.0, 0.0] + [np.nan] * 18})
    assert validate_frame(frame, "label", None).success
    report = validate_frame(frame.assign(label=[2.0, 0.0] + [np.nan] * 18), "label", None)
    assert not report.success and any("label" in failure for failure in report.failures)
