"""Distillation losses: L = α·L_soft + (1−α)·L_hard + β·L_hint.

Anomaly scores are binary-class logits, so the cross-entropies are binary cross-entropies. The hard term may
weight anomaly rows (`pos_weight`, for imbalanced labels); the alternating schedule sets α to 1 and 0 on
alternate epochs (`schedule_alpha`).
"""

import torch
import torch.nn.functional as F


def soft_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Cross-entropy of the temperature-softened student against the temperature-softened teacher targets."""
    soft_targets = torch.sigmoid(teacher_logits / temperature)
    return F.binary_cross_entropy_with_logits(student_logits / temperature, soft_targets)


def hard_loss(student_logits: torch.Tensor, hard_labels: torch.Tensor, pos_weight: float = 1.0) -> torch.Tensor:
    """Cross-entropy against the true 0/1 labels, averaged over the labelled rows only (NaN: nobody reviewed the
    row; a batch without labelled rows adds 0); a label-1 row's term is multiplied by `pos_weight`."""
    known = ~torch.isnan(hard_labels)
    if not known.any():
        return student_logits.sum() * 0.0  # keeps the graph: the total's backward needs every term connected
    weight = None if pos_weight == 1.0 else torch.tensor(pos_weight)
    return F.binary_cross_entropy_with_logits(student_logits[known], hard_labels[known].float(), pos_weight=weight)


def schedule_alpha(schedule: str, alpha: float, epoch: int) -> float:
    """The soft term's weight in an epoch: α throughout ("weighted"), or 1, 0, 1, 0, … ("alternating")."""
    if schedule == "alternating":
        return 1.0 if epoch % 2 == 0 else 0.0
    return alpha


def positive_weight(class_weight, hard_labels: torch.Tensor) -> float:
    """`class_weight` as the hard term's weight of label-1 rows: "none" → 1, "balanced" → labelled normal ÷
    labelled anomaly rows (1 when either is missing)."""
    if class_weight == "none":
        return 1.0
    if class_weight == "balanced":
        known = hard_labels[~torch.isnan(hard_labels)]
        anomalies = float(known.sum())
        normal = len(known) - anomalies
        return normal / anomalies if anomalies and normal else 1.0
    return float(class_weight)


def hint_loss(projected_hidden: torch.Tensor, teacher_features: torch.Tensor) -> torch.Tensor:
    """MSE between a projection of the student's hidden layer and the teacher's features."""
    return F.mse_loss(projected_hidden, teacher_features)


def distillation_loss(
    student_logits,
    teacher_logits,
    hard_labels,
    temperature,
    alpha,
    beta=0.0,
    projected_hidden=None,
    teacher_features=None,
    pos_weight=1.0,
) -> dict[str, torch.Tensor]:
    terms = {
        "soft": soft_loss(student_logits, teacher_logits, temperature),
        "hard": hard_loss(student_logits, hard_labels, pos_weight),
    }
    total = alpha * terms["soft"] + (1 - alpha) * terms["hard"]
    if projected_hidden is not None and beta > 0:
        terms["hint"] = hint_loss(projected_hidden, teacher_features)
        total = total + beta * terms["hint"]
    terms["total"] = total
    return terms
