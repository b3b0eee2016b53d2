"""Teachers: strong, slow anomaly scorers whose function the student learns.

All teachers take robust-scaled float32 rows (see `data.Preprocessor`) and return scores where higher means
more anomalous. Neural teachers also expose hidden features for the hint loss.
"""

import functools

import numpy as np
import torch
from pyod.models.copod import COPOD
from pyod.models.ecod import ECOD
from pyod.models.hbos import HBOS
from pyod.models.iforest import IForest
from pyod.models.knn import KNN
from scipy.stats import rankdata
from torch import nn

from anomaly_distill.config import TeacherConfig
from anomaly_distill.data import DataError
from anomaly_distill.models.base import EcdfCalibrator, NeuralTeacher, subsample
from anomaly_distill.models.labelled import LabelledBlend, keep_labelled, labelled_anomalies
from anomaly_distill.models.layers import mlp
from anomaly_distill.models.sequence import ConvAutoencoderTeacher


def _tail_log_probabilities(sorted_train: np.ndarray, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """-log of the left and right empirical tail probability of each value against the training column."""
    n = sorted_train.shape[0]
    left = np.empty(X.shape)
    right = np.empty(X.shape)
    for j in range(X.shape[1]):
        column = sorted_train[:, j]
        left[:, j] = np.searchsorted(column, X[:, j], side="right")
        right[:, j] = n - np.searchsorted(column, X[:, j], side="left")
    return -np.log((left + 1) / (n + 1)), -np.log((right + 1) / (n + 1))


class _InductiveTailMixin:
    """PyOD's ECOD/COPOD re-fit their ECDFs on train+query rows at every call, so a row's score depends on the
    batch it comes in. A teacher must be a fixed function, so queries are scored against the training ECDFs."""

    def fit(self, X, y=None):
        self.sorted_train_ = np.sort(X, axis=0)
        mean, std = X.mean(axis=0), X.std(axis=0) + 1e-12
        self.skew_sign_ = np.sign((((X - mean) / std) ** 3).mean(axis=0))
        self.decision_scores_ = self.decision_function(X)
        self._process_decision_scores()
        return self

    def _tails(self, X):
        u_left, u_right = _tail_log_probabilities(self.sorted_train_, X)
        u_skew = u_left * -np.sign(self.skew_sign_ - 1) + u_right * np.sign(self.skew_sign_ + 1)
        return u_left, u_right, u_skew


class InductiveECOD(_InductiveTailMixin, ECOD):
    def decision_function(self, X):
        u_left, u_right, u_skew = self._tails(X)
        return np.maximum(np.maximum(u_left, u_right), u_skew).sum(axis=1)


class InductiveCOPOD(_InductiveTailMixin, COPOD):
    def decision_function(self, X):
        u_left, u_right, u_skew = self._tails(X)
        return np.maximum(u_skew, (u_left + u_right) / 2).sum(axis=1)


def make_detector(name: str, seed: int):
    return {
        "iforest": lambda: IForest(random_state=seed, n_jobs=1),
        "ecod": InductiveECOD,
        "copod": InductiveCOPOD,
        "knn": lambda: KNN(n_jobs=1),
        "hbos": HBOS,
    }[name]()


def fit_detector(name: str, X: np.ndarray, seed: int):
    return make_detector(name, seed).fit(X)


def detector_params(detector) -> int:
    """Stored numbers a fitted PyOD detector needs at scoring time (tree nodes count as one each)."""
    if hasattr(detector, "detector_") and hasattr(detector.detector_, "estimators_"):
        return int(sum(tree.tree_.node_count for tree in detector.detector_.estimators_))
    if hasattr(detector, "sorted_train_"):
        return int(detector.sorted_train_.size)
    if hasattr(detector, "X_train"):
        return int(np.asarray(detector.X_train).size)
    if hasattr(detector, "tree_"):  # KNN keeps its training rows, in a NearestNeighbors or a Ball/KD tree
        tree = detector.tree_
        if hasattr(tree, "n_samples_fit_"):
            return int(tree.n_samples_fit_ * tree.n_features_in_)
        return int(np.asarray(tree.data).size)
    if hasattr(detector, "hist_"):
        return int(np.asarray(detector.hist_).size + np.asarray(detector.bin_edges_).size)
    if hasattr(getattr(detector, "detector_", None), "n_samples_fit_"):  # LOF keeps rows and their reach distances
        inner = detector.detector_
        return int(inner.n_samples_fit_ * (inner.n_features_in_ + 1))
    raise TypeError(f"unknown detector {type(detector).__name__}")


TAIL_FLOOR = 1e-4  # smallest tail probability the fisher rule tells apart (ECDF values of 1 are clipped to it)


def agreement_weights(reference: np.ndarray, rule: str) -> np.ndarray:
    """Label-free member weights from training rows: each member's Spearman correlation with the mean of the
    others (a member that ranks rows like nobody else is more likely to be wrong than to be alone right).
    `most_agreeing` keeps only the member that agrees best."""
    ranks = np.apply_along_axis(rankdata, 0, reference)
    m = ranks.shape[1]
    agreement = np.array([np.corrcoef(ranks[:, j], np.delete(ranks, j, axis=1).mean(axis=1))[0, 1] for j in range(m)])
    agreement = np.nan_to_num(agreement, nan=0.0).clip(min=0)
    if rule == "most_agreeing":
        return np.eye(m)[int(np.argmax(agreement))]
    return agreement / agreement.sum() if agreement.sum() > 0 else np.full(m, 1 / m)


AGREEMENT_RULES = ("agreement", "most_agreeing")


def combine_members(scores: np.ndarray, reference: np.ndarray | None, rule: str) -> np.ndarray:
    """Calibrated member scores (rows x members) -> one score per row; `reference` (training rows' member
    scores) sets the weights of the agreement rules."""
    if scores.shape[1] == 1 or rule == "mean":
        return scores.mean(axis=1)
    if rule == "median":
        return np.median(scores, axis=1)
    if rule == "max":
        return scores.max(axis=1)
    if rule == "fisher":  # Fisher's combination of the members' tail probabilities: confident members dominate
        return -np.log1p(-scores.clip(max=1 - TAIL_FLOOR)).mean(axis=1)
    return scores @ agreement_weights(reference, rule)


class EnsembleTeacher:
    """Unsupervised PyOD detectors; each score mapped through its own training-score ECDF, then averaged."""

    def __init__(self, config: TeacherConfig, seed: int = 0):
        self.config, self.seed = config, seed

    def fit(self, X: np.ndarray, y: np.ndarray | None = None, map_fn=map) -> "EnsembleTeacher":
        """`map_fn` lets an orchestrator fit the members in parallel (e.g. on a Dask cluster). With labelled
        anomalies in `y` (and `labels: use`), a classifier learns from them too (models/labelled.py)."""
        rows, _ = subsample(X, None, self.config.max_fit_rows, self.seed)
        self.detectors = list(map_fn(functools.partial(fit_detector, X=rows, seed=self.seed), self.config.detectors))
        self.calibrators = [EcdfCalibrator(d.decision_scores_) for d in self.detectors]
        reference = np.column_stack([cal(d.decision_scores_) for d, cal in zip(self.detectors, self.calibrators)])
        self.weights = (
            agreement_weights(reference, self.config.combine)
            if self.config.combine in AGREEMENT_RULES and len(self.detectors) > 1
            else None
        )
        self.labelled = None
        if self.config.labels == "use" and labelled_anomalies(y) > 0:
            rows, y = keep_labelled(X, y, self.config.max_fit_rows, self.seed)
            members = self.member_scores(rows)
            self.labelled = LabelledBlend(self.config.label_prior, self.seed).fit(
                rows, members, self._unsupervised(members), y
            )
        return self

    def member_scores(self, X: np.ndarray) -> np.ndarray:
        return np.column_stack([cal(d.decision_function(X)) for d, cal in zip(self.detectors, self.calibrators)])

    def _unsupervised(self, members: np.ndarray) -> np.ndarray:
        # getattr: a teacher pickled before `combine` existed has neither attribute and averaged its members
        if getattr(self, "weights", None) is not None:
            return members @ self.weights
        return combine_members(members, None, getattr(self.config, "combine", "mean"))

    def score(self, X: np.ndarray) -> np.ndarray:
        members = self.member_scores(X)
        unsupervised = self._unsupervised(members)
        labelled = getattr(self, "labelled", None)  # None: no labelled anomalies, or pickled before labels
        return unsupervised if labelled is None else labelled.score(X, members, unsupervised)

    def features(self, X: np.ndarray) -> np.ndarray | None:
        return self.member_scores(X) if self.config.member_hints else None

    @property
    def n_params(self) -> int:
        return sum(detector_params(d) for d in self.detectors) + sum(len(c.values) for c in self.calibrators)


class AutoencoderNet(nn.Module):
    def __init__(self, n_features: int, hidden: list[int], bottleneck: int):
        super().__init__()
        self.encoder = mlp([n_features, *hidden, bottleneck], final_activation=True)
        self.decoder = mlp([bottleneck, *reversed(hidden), n_features])

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        code = self.encoder(x)
        return self.decoder(code), code


class AutoencoderTeacher(NeuralTeacher):
    """Deep autoencoder; the anomaly score is the reconstruction error, the hint features its bottleneck."""

    def fit(self, X: np.ndarray, y: np.ndarray | None = None, map_fn=map) -> "AutoencoderTeacher":
        torch.manual_seed(self.seed)
        X, _ = subsample(X, None, self.config.max_fit_rows, self.seed)
        # A code as wide as the input can learn the identity and reconstruct anomalies too.
        bottleneck = min(self.config.bottleneck, max(1, X.shape[1] // 2))
        self.net = AutoencoderNet(X.shape[1], self.config.hidden, bottleneck)
        self._train(lambda x: ((self.net(x)[0] - x) ** 2).mean(), [self._inputs(X)])
        return self

    @torch.no_grad()
    def score(self, X: np.ndarray) -> np.ndarray:
        x = self._inputs(X)
        return ((self.net(x)[0] - x) ** 2).mean(dim=1).numpy().astype(np.float64)

    @torch.no_grad()
    def features(self, X: np.ndarray) -> np.ndarray:
        return self.net(self._inputs(X))[1].numpy()


class SupervisedTeacher(NeuralTeacher):
    """MLP classifier on known labels; the score is its logit, the hint features its last hidden layer."""

    def fit(self, X: np.ndarray, y: np.ndarray | None = None, map_fn=map) -> "SupervisedTeacher":
        """Rows nobody reviewed count as normal (positive-unlabelled learning: they mostly are)."""
        if labelled_anomalies(y) == 0 or not (y != 1).any():
            raise DataError("the supervised teacher needs a label column with labelled anomalies (1) and other rows")
        y = np.where(y == 1, 1, 0)
        torch.manual_seed(self.seed)
        X, y = subsample(X, y, self.config.max_fit_rows, self.seed)
        self.net = mlp([X.shape[1], *self.config.hidden, 1], final_activation=False)
        pos_weight = torch.tensor((y == 0).sum() / max((y == 1).sum(), 1), dtype=torch.float32)
        loss = nn.BCEWithLogitsLoss(pos_weight=pos_weight)
        targets = torch.as_tensor(y, dtype=torch.float32)
        self._train(lambda x, t: loss(self.net(x).squeeze(1), t), [self._inputs(X), targets])
        return self

    @torch.no_grad()
    def score(self, X: np.ndarray) -> np.ndarray:
        return self.net(self._inputs(X)).squeeze(1).numpy().astype(np.float64)

    @torch.no_grad()
    def features(self, X: np.ndarray) -> np.ndarray:
        return self.net[:-1](self._inputs(X)).numpy()


def build_teacher(config: TeacherConfig, seed: int = 0, squash_scale: float = 5.0):
    if config.kind == "ensemble":
        return EnsembleTeacher(config, seed)
    if config.kind == "autoencoder":
        return AutoencoderTeacher(config, seed, squash_scale)
    if config.kind == "conv_autoencoder":
        return ConvAutoencoderTeacher(config, seed, squash_scale)
    return SupervisedTeacher(config, seed, squash_scale)
