"""What the ensemble teacher learns from the few anomalies a person labelled (the XGBOD idea, kept smooth).

A logistic regression sees each row's squashed features plus the unsupervised members' calibrated scores, and
tells labelled anomalies from every other row, labelled normal or not reviewed (positive-unlabelled learning: the
unlabelled rows are mostly normal). Its calibrated score is blended with the unsupervised one, with weight
n / (n + label_prior) for n labelled anomalies.

Why a linear model and not boosted trees (XGBOD's choice): on eight ADBench sets with 5 % of the anomalies
labelled, boosted trees lost to the unlabelled ensemble on half of them (cardio: 0.77 against 0.90 AUROC), the
logistic regression on none; and a student learns a smooth teacher closely (fidelity), a tree's steps poorly.
BENCHMARKS.md ("Learning from the labels people give") has the exploration and the full comparison.
"""

import numpy as np

from anomaly_distill.metrics import UNLABELLED
from anomaly_distill.models.base import EcdfCalibrator

SQUASH = 5.0  # robust-scaled inputs through tanh(x / SQUASH): outliers bounded, the bulk nearly linear


class LabelledBlend:
    def __init__(self, label_prior: float, seed: int):
        self.label_prior, self.seed = label_prior, seed

    def fit(self, X: np.ndarray, members: np.ndarray, unsupervised: np.ndarray, y: np.ndarray) -> "LabelledBlend":
        # scikit-learn's linear models (~1 s) only when labels are given
        from sklearn.linear_model import LogisticRegression

        positives = int((y == 1).sum())
        self.weight = positives / (positives + self.label_prior)
        inputs = self._inputs(X, members)
        self.classifier = LogisticRegression(C=1.0, class_weight="balanced", max_iter=2000, random_state=self.seed)
        self.classifier.fit(inputs, (y == 1).astype(int))
        self.unsupervised_ecdf = EcdfCalibrator(unsupervised)
        self.classifier_ecdf = EcdfCalibrator(self.classifier.decision_function(inputs))
        return self

    @staticmethod
    def _inputs(X: np.ndarray, members: np.ndarray) -> np.ndarray:
        return np.column_stack([np.tanh(X / SQUASH), members])

    def score(self, X: np.ndarray, members: np.ndarray, unsupervised: np.ndarray) -> np.ndarray:
        supervised = self.classifier_ecdf(self.classifier.decision_function(self._inputs(X, members)))
        return (1 - self.weight) * self.unsupervised_ecdf(unsupervised) + self.weight * supervised


def labelled_anomalies(y: np.ndarray | None) -> int:
    return 0 if y is None else int((np.asarray(y) == 1).sum())


def keep_labelled(X: np.ndarray, y: np.ndarray, max_rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """At most `max_rows` rows, every labelled one kept (they are the few the classifier learns from)."""
    labelled = np.flatnonzero(y != UNLABELLED)
    rest = np.flatnonzero(y == UNLABELLED)
    room = max(max_rows - len(labelled), 0)
    if len(rest) > room:
        rest = np.random.default_rng(seed).choice(rest, room, replace=False)
    index = np.sort(np.concatenate([labelled, rest]))
    return X[index], y[index]
