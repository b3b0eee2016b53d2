"""Golden values computed by hand (binary cross-entropy = -[p·log q + (1-p)·log(1-q)])."""

import math

import pytest
import torch

from anomaly_distill.losses import distillation_loss, hard_loss, hint_loss, soft_loss


def bce(p, q):
    return -(p * math.log(q) + (1 - p) * math.log(1 - q))


def sigmoid(x):
    return 1 / (1 + math.exp(-x))


def test_soft_loss_golden_value():
    student, teacher, T = torch.tensor([0.0, 2.0]), torch.tensor([2.0, -2.0]), 2.0
    expected = (bce(sigmoid(1.0), sigmoid(0.0)) + bce(sigmoid(-1.0), sigmoid(1.0))) / 2
    assert soft_loss(student, teacher, T).item() == pytest.approx(expected, rel=1e-6)
    assert expected == pytest.approx(0.8688, abs=1e-4)


def test_soft_loss_is_smallest_when_student_matches_teacher():
    teacher = torch.tensor([1.5, -0.5])
    at_match = soft_loss(teacher.clone(), teacher, 3.0)
    assert at_match < soft_loss(teacher + 0.3, teacher, 3.0)
    assert at_match < soft_loss(teacher - 0.3, teacher, 3.0)


def test_hard_loss_golden_value():
    logits, labels = torch.tensor([0.0, 1.0, -1.0]), torch.tensor([1, 0, 0])
    expected = (bce(1, 0.5) + bce(0, sigmoid(1.0)) + bce(0, sigmoid(-1.0))) / 3
    assert hard_loss(logits, labels).item() == pytest.approx(expected, rel=1e-6)
    assert expected == pytest.approx(0.7732, abs=1e-4)


def test_hint_loss_golden_value():
    projected = torch.tensor([[1.0, 2.0], [0.0, 0.0]])
    features = torch.tensor([[0.0, 2.0], [1.0, 3.0]])
    assert hint_loss(projected, features).item() == pytest.approx((1 + 0 + 1 + 9) / 4)


def test_total_loss_weights_the_terms():
    student, teacher, labels = torch.tensor([0.0, 2.0]), torch.tensor([2.0, -2.0]), torch.tensor([1, 0])
    projected, features = torch.tensor([[1.0]]), torch.tensor([[3.0]])
    terms = distillation_loss(
        student,
        teacher,
        labels,
        temperature=2.0,
        alpha=0.7,
        beta=0.5,
        projected_hidden=projected,
        teacher_features=features,
    )
    expected = 0.7 * terms["soft"] + 0.3 * terms["hard"] + 0.5 * 4.0
    assert terms["total"].item() == pytest.approx(expected.item(), rel=1e-6)
    assert terms["hint"].item() == pytest.approx(4.0)


def test_hint_is_ignored_without_teacher_features():
    terms = distillation_loss(torch.zeros(2), torch.zeros(2), torch.tensor([0, 1]), 1.0, 0.5, beta=1.0)
    assert "hint" not in terms
    assert terms["total"].item() == pytest.approx(math.log(2), rel=1e-6)
