"""Why a row was flagged: integrated gradients of the student's score, from the typical row to this one.

The student is a tiny MLP over raw columns, so attributions are cheap and exact in the sense that matters to an
analyst: they add up (to the accuracy of the path integral) to score(row) − score(typical row), where the typical
row is the training median of every column (the student's own robust centre). A column's attribution is how much
of that rise its move from the median explains; the explanation names the k columns that raise the score most.
"""

import numpy as np
import pandas as pd
import torch

from anomaly_distill.models.student import ScoringModel

EXPLANATION = "explanation"


def typical_row(model: ScoringModel) -> torch.Tensor:
    """The training median of each input column (columns the student ignores stay at 0: they cannot matter)."""
    baseline = torch.zeros(len(model.input_columns))
    baseline[model.keep] = model.center
    return baseline


def integrated_gradients(model: ScoringModel, raw: np.ndarray, steps: int = 32, chunk_rows: int = 2048) -> np.ndarray:
    """(rows, columns) attributions of each row's score, midpoint rule with `steps` points on the straight path."""
    baseline = typical_row(model)
    alphas = ((torch.arange(steps, dtype=torch.float32) + 0.5) / steps)[:, None, None]
    parts = []
    for chunk in torch.as_tensor(np.asarray(raw, dtype=np.float32)).split(chunk_rows):
        delta = chunk - baseline
        path = (baseline + alphas * delta).reshape(-1, chunk.shape[1]).requires_grad_(True)
        (gradients,) = torch.autograd.grad(model(path).sum(), path)
        parts.append((delta * gradients.reshape(steps, *chunk.shape).mean(0)).detach())
    return torch.cat(parts).numpy() if parts else np.zeros((0, len(model.input_columns)), dtype=np.float32)


def top_features(attributions: np.ndarray, columns: list[str], k: int) -> list[str]:
    """Per row, the k columns that raise its score most, e.g. "amount (+3.12); hour (+0.41)" (only raising ones)."""
    order = np.argsort(-attributions, axis=1)[:, :k]
    texts = []
    for row, picks in zip(attributions, order):
        texts.append("; ".join(f"{columns[j]} ({row[j]:+.3g})" for j in picks if row[j] > 0))
    return texts


def explain_rows(model: ScoringModel, raw: np.ndarray, flagged: np.ndarray, k: int) -> np.ndarray:
    """An explanation for every flagged row of `raw` (the model's input columns, in order), "" for the others:
    explaining a row costs about as much as scoring it 30 times, so only alerts are explained."""
    texts = np.full(len(raw), "", dtype=object)
    rows = np.flatnonzero(flagged)
    if len(rows) and k > 0:
        texts[rows] = top_features(integrated_gradients(model, raw[rows]), model.input_columns, k)
    return texts


def explain_flagged(model: ScoringModel, features: pd.DataFrame, flagged: np.ndarray, k: int) -> pd.Series:
    raw = features[model.input_columns].to_numpy(dtype=np.float32)
    return pd.Series(explain_rows(model, raw, flagged, k), index=features.index, name=EXPLANATION)
