"""Soft labels: the teacher's verdict on training rows and on synthetic rows around them."""

import pkgutil
from typing import Callable

import numpy as np
import pandas as pd

from anomaly_distill.config import EngineConfig
from anomaly_distill.data import UNLABELLED, Preprocessor, Table
from anomaly_distill.models.base import EcdfCalibrator

META_COLUMNS = ["source", "teacher_score", "soft_target", "teacher_label", "true_label"]
FEATURE_PREFIX = "teacher_feature_"


Synthesizer = Callable[[np.ndarray, int, np.random.Generator], np.ndarray]

# Synthetic-row makers a kind supplies, by `distill.synthetic`: "module:callable(preprocessor, channels, window)".
# Imported only when chosen, because the kind that owns one (series) builds on this shared module, as with
# `detector.LOADERS`. "perturb", the default, is `distillation_rows`' own.
SYNTHESIZERS = {"windows": "anomaly_distill.series.window_augment:window_synthesizer"}


def synthesizer_for(config: EngineConfig, preprocessor: Preprocessor) -> Synthesizer | None:
    name = config.distill.synthetic
    if name not in SYNTHESIZERS:
        return None
    if config.teacher.sequence is None:
        raise ValueError(f"{name} as synthetic rows need teacher.sequence = (channels, window)")
    return pkgutil.resolve_name(SYNTHESIZERS[name])(preprocessor, *config.teacher.sequence)


def distillation_rows(
    X: np.ndarray, config: EngineConfig, synthesize: Synthesizer | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Real (scaled) training rows plus synthetic rows: perturbed and uniform ones by default, or
    `synthesize(real_rows, n, rng)`'s when given (e.g. window augmentations for a series).

    Returns the rows, each row's source and the indices into X of the real rows used.
    """
    cfg, rng = config.distill, np.random.default_rng(config.seed)
    real_index = np.arange(len(X))
    if len(X) > cfg.max_real_rows:
        real_index = np.sort(rng.choice(len(X), cfg.max_real_rows, replace=False))
    X = X[real_index]
    n_synthetic = max(int(cfg.synthetic_ratio * len(X)), cfg.min_rows - len(X), 0)
    if synthesize is not None:
        rows = np.vstack([X, synthesize(X, n_synthetic, rng)]).astype(np.float32)
        return rows, np.repeat(["train", "augmented"], [len(X), n_synthetic]), real_index
    n_uniform = int(round(cfg.uniform_fraction * n_synthetic))
    n_perturbed = n_synthetic - n_uniform
    perturbed = X[rng.integers(0, len(X), n_perturbed)] + rng.normal(0, cfg.noise_scale, (n_perturbed, X.shape[1]))
    uniform = rng.uniform(X.min(axis=0), X.max(axis=0), (n_uniform, X.shape[1]))
    rows = np.vstack([X, perturbed, uniform]).astype(np.float32)
    source = np.repeat(["train", "perturbed", "uniform"], [len(X), n_perturbed, n_uniform])
    return rows, source, real_index


def soft_label_table(
    teacher, preprocessor: Preprocessor, train: Table, config: EngineConfig, synthesize: Synthesizer | None = None
) -> pd.DataFrame:
    """One row per distillation row: raw features, teacher score, soft target in [0, 1], teacher hard label,
    true label (training rows with known labels only) and the teacher's features when it has them (hints)."""
    X = preprocessor.transform(train.features)
    rows, source, real_index = distillation_rows(X, config, synthesize)
    scores = teacher.score(rows)
    is_real = source == "train"
    soft_target = EcdfCalibrator(scores[is_real])(scores)
    table = preprocessor.inverse_transform(rows)
    table["source"] = source
    table["teacher_score"] = scores
    table["soft_target"] = soft_target
    table["teacher_label"] = (soft_target > 1 - config.contamination).astype(np.int8)
    table["true_label"] = pd.array([pd.NA] * len(rows), dtype="Int8")
    if train.labels is not None:  # rows nobody reviewed stay <NA>
        known = train.labels[real_index]
        table.loc[is_real, "true_label"] = pd.array(np.where(known == UNLABELLED, None, known), dtype="Int8")
    features = teacher.features(rows)
    if features is not None:
        for j in range(features.shape[1]):
            table[f"{FEATURE_PREFIX}{j}"] = features[:, j]
    return table
