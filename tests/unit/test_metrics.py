import time

import numpy as np
import pytest
from scipy.stats import spearmanr
from sklearn.metrics import average_precision_score, f1_score, precision_score, recall_score, roc_auc_score

from anomaly_distill.metrics import (
    detection_metrics,
    fidelity,
    recall_at_fpr,
    rows_per_second,
    threshold_at_contamination,
)


@pytest.fixture
def scored():
    rng = np.random.default_rng(1)
    y = (rng.random(2000) < 0.05).astype(int)
    return y, rng.normal(size=2000) + 2.5 * y


def test_detection_metrics_match_scikit_learn(scored):
    y, scores = scored
    threshold = 1.5
    m = detection_metrics(y, scores, threshold)
    predicted = scores > threshold
    assert m["auroc"] == pytest.approx(roc_auc_score(y, scores))
    assert m["auprc"] == pytest.approx(average_precision_score(y, scores))
    assert m["precision"] == pytest.approx(precision_score(y, predicted))
    assert m["recall"] == pytest.approx(recall_score(y, predicted))
    assert m["f1"] == pytest.approx(f1_score(y, predicted))


def test_recall_at_fpr_by_hand():
    y = np.array([0] * 100 + [1] * 4)
    scores = np.r_[np.arange(100) / 100, [2.0, 1.5, 0.995, 0.1]]
    # One false positive (score 0.99) is allowed at 1 % FPR: scores above 0.99 catch 3 of the 4 anomalies.
    assert recall_at_fpr(y, scores, 0.01) == pytest.approx(0.75)


def test_threshold_flags_the_contamination_share():
    scores = np.arange(1000, dtype=float)
    threshold = threshold_at_contamination(scores, 0.05)
    assert (scores > threshold).mean() == pytest.approx(0.05, abs=0.001)


def test_fidelity_is_spearman(scored):
    _, scores = scored
    other = scores**3 + np.random.default_rng(2).normal(scale=0.5, size=len(scores))
    assert fidelity(scores, other) == pytest.approx(spearmanr(scores, other).statistic)
    assert fidelity(scores, np.exp(scores)) == pytest.approx(1.0)


def test_rows_per_second_counts_rows():
    rows = np.zeros((5000, 3))
    # 50 ms per call of whatever size: len(rows) / 0.05 s, give or take the sleep's overshoot
    measured = rows_per_second(lambda r: time.sleep(0.05), rows)
    assert len(rows) / 0.05 * 0.7 < measured <= len(rows) / 0.05
