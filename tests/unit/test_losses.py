"""Golden values computed by hand (binary cross-entropy = -[p·log q + (1-p)·log(1-q)])."""

import math

import pytest
import torch

from anomaly_distill.losses import distillation_loss, hard_loss, hint_loss, positive_weight, schedule_alpha, soft_loss


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


def test_weighted_hard_loss_golden_value():
    """pos_weight multiplies the label-1 rows' terms: (3·bce(1, ½) + bce(0, σ(1))) / 2."""
    logits, labels = torch.tensor([0.0, 1.0]), torch.tensor([1, 0])
    expected = (3 * bce(1, 0.5) + bce(0, sigmoid(1.0))) / 2
    assert hard_loss(logits, labels, pos_weight=3.0).item() == pytest.approx(expected, rel=1e-6)
    assert expected == pytest.approx(1.6964, abs=1e-4)
    assert hard_loss(logits, labels, pos_weight=1.0).item() == pytest.approx(hard_loss(logits, labels).item())


def test_class_weight_balanced_is_normal_rows_per_anomaly_row():
    labels = torch.tensor([0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0])
    assert positive_weight("balanced", labels) == 3.0
    assert positive_weight("none", labels) == 1.0 and positive_weight(2.5, labels) == 2.5
    assert positive_weight("balanced", torch.zeros(4)) == 1.0  # no anomaly row: nothing to weight


def test_the_alternating_schedule_trains_soft_and_hard_terms_on_alternate_epochs():
    assert [schedule_alpha("alternating", 0.7, epoch) for epoch in range(4)] == [1.0, 0.0, 1.0, 0.0]
    assert [schedule_alpha("weighted", 0.7, epoch) for epoch in range(3)] == [0.7, 0.7, 0.7]
    student, teacher, labels = torch.tensor([0.0, 2.0]), torch.tensor([2.0, -2.0]), torch.tensor([1, 0])
    soft_epoch = distillation_loss(student, teacher, labels, 2.0, schedule_alpha("alternating", 0.7, 0))
    hard_epoch = distillation_loss(student, teacher, labels, 2.0, schedule_alpha("alternating", 0.7, 1), pos_weight=2)
    assert soft_epoch["total"].item() == pytest.approx(0.8688, abs=1e-4)  # the soft golden value above
    assert hard_epoch["total"].item() == pytest.approx((2 * bce(1, 0.5) + bce(0, sigmoid(2.0))) / 2, rel=1e-6)
