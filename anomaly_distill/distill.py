"""Training the student on a soft-label table, with early stopping on a held-out part of it."""

import copy

import numpy as np
import pandas as pd
import torch
from torch import nn

from anomaly_distill.config import EngineConfig
from anomaly_distill.data import Preprocessor
from anomaly_distill.losses import distillation_loss, positive_weight, schedule_alpha
from anomaly_distill.models.student import ScoringModel, StudentNet
from anomaly_distill.soft_labels import FEATURE_PREFIX

LOGIT_CLIP = 1e-6


def distillation_tensors(table: pd.DataFrame, preprocessor: Preprocessor) -> dict[str, torch.Tensor]:
    soft = table["soft_target"].to_numpy(dtype=np.float64).clip(LOGIT_CLIP, 1 - LOGIT_CLIP)
    # The hard term learns from true labels only: a row nobody reviewed is NaN there and left out of it.
    hard = table["true_label"].astype("Float64").to_numpy(dtype=np.float32, na_value=np.nan)
    tensors = {
        "x": torch.as_tensor(preprocessor.transform(table)),
        "teacher_logits": torch.as_tensor(np.log(soft / (1 - soft)), dtype=torch.float32),
        "hard": torch.as_tensor(hard),
    }
    feature_columns = [c for c in table.columns if c.startswith(FEATURE_PREFIX)]
    if feature_columns:
        features = table[feature_columns].to_numpy(dtype=np.float32)
        # Standardised so the hint weight β means the same whatever the teacher's feature scale.
        features = (features - features.mean(axis=0)) / (features.std(axis=0) + 1e-6)
        tensors["teacher_features"] = torch.as_tensor(features)
    return tensors


class _Distiller(nn.Module):
    """Student plus the hint projection, which is used in training only and not shipped."""

    def __init__(self, student: StudentNet, hint_dim: int | None):
        super().__init__()
        self.student = student
        self.projection = nn.Linear(student.head.in_features, hint_dim) if hint_dim else None

    def losses(
        self, batch: dict[str, torch.Tensor], config: EngineConfig, alpha: float, pos_weight: float
    ) -> dict[str, torch.Tensor]:
        hidden, logits = self.student.hidden_and_logit(batch["x"])
        cfg = config.distill
        return distillation_loss(
            logits,
            batch["teacher_logits"],
            batch["hard"],
            cfg.temperature,
            alpha,
            cfg.beta,
            projected_hidden=None if self.projection is None else self.projection(hidden),
            teacher_features=batch.get("teacher_features"),
            pos_weight=pos_weight,
        )


def _mean_losses(model: _Distiller, tensors, index: torch.Tensor, config: EngineConfig, pos_weight) -> dict:
    """Validation losses, always α-weighted as configured (an alternating schedule's steps are not comparable)."""
    batch = {k: t[index] for k, t in tensors.items()}
    with torch.no_grad():
        return {k: float(v) for k, v in model.losses(batch, config, config.distill.alpha, pos_weight).items()}


def train_student(
    table: pd.DataFrame,
    preprocessor: Preprocessor,
    config: EngineConfig,
    start: StudentNet | None = None,
    epochs: int | None = None,
) -> tuple[ScoringModel, list[dict[str, float]]]:
    """Fit the student (from `start`'s weights when given, e.g. a pruned student, for at most `epochs` instead of
    the configured epochs); returns the best-validation model and one history record per epoch."""
    torch.manual_seed(config.seed)
    cfg = config.distill
    tensors = distillation_tensors(table, preprocessor)
    hint = tensors.get("teacher_features")
    student = start or StudentNet(len(preprocessor.columns), config.student.hidden, config.student.squash)
    model = _Distiller(student, None if hint is None else hint.shape[1])
    generator = torch.Generator().manual_seed(config.seed)
    order = torch.randperm(len(table), generator=generator)
    n_val = max(1, int(len(table) * cfg.val_fraction))
    val_index, train_index = order[:n_val], order[n_val:]
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    # Halving the rate on plateaus lets the student settle on the teacher's fine ranking before stopping.
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.5, patience=max(1, cfg.patience // 3))
    pos_weight = positive_weight(cfg.class_weight, tensors["hard"][train_index])
    history, best_loss, best_state, stale = [], float("inf"), None, 0
    for epoch in range(epochs or cfg.epochs):
        model.train()
        alpha = schedule_alpha(cfg.schedule, cfg.alpha, epoch)
        for batch in train_index[torch.randperm(len(train_index), generator=generator)].split(cfg.batch_size):
            optimizer.zero_grad()
            model.losses({k: t[batch] for k, t in tensors.items()}, config, alpha, pos_weight)["total"].backward()
            optimizer.step()
        model.eval()
        val = _mean_losses(model, tensors, val_index, config, pos_weight)
        history.append({"epoch": epoch, **{f"val_{k}": v for k, v in val.items()}})
        scheduler.step(val["total"])
        if val["total"] < best_loss - 1e-5:
            best_loss, best_state, stale = val["total"], copy.deepcopy(student.state_dict()), 0
        else:
            stale += 1
            if stale >= cfg.patience:
                break
    student.load_state_dict(best_state)
    return ScoringModel.from_preprocessor(preprocessor, student.eval()), history
