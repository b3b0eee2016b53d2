"""Distillation losses: L = α·L_soft + (1−α)·L_hard + β·L_hint.

Anomaly scores are binary-class logits, so the cross-entropies are binary cross-entropies.
"""

import torch
import torch.nn.functional as F


def soft_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Cross-entropy of the temperature-softened student against the temperature-softened teacher targets."""
    soft_targets = torch.sigmoid(teacher_logits / temperature)
    return F.binary_cross_entropy_with_logits(student_logits / temperature, soft_targets)


def hard_loss(student_logits: torch.Tensor, hard_labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy against 0/1 labels (true labels where known, else the teacher's)."""
    return F.binary_cross_entropy_with_logits(student_logits, hard_labels.float())


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
) -> dict[str, torch.Tensor]:
    terms = {
        "soft": soft_loss(student_logits, teacher_logits, temperature),
        "hard": hard_loss(student_logits, hard_labels),
    }
    total = alpha * terms["soft"] + (1 - alpha) * terms["hard"]
    if projected_hidden is not None and beta > 0:
        terms["hint"] = hint_loss(projected_hidden, teacher_features)
        total = total + beta * terms["hint"]
    terms["total"] = total
    return terms
