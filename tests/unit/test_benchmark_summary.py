"""Across-set statistics of the benchmark: seed means, average rank, win/tie/loss, Wilcoxon."""

import numpy as np
import pytest
from scipy.stats import wilcoxon

from benchmarking.benchmark_summary import average_ranks, per_set, summary, wilcoxon_p, win_tie_loss


def records(table: dict[str, dict[str, list[float]]]) -> list[dict]:
    """{dataset: {method: AUROC per seed}} as benchmark records (AUPRC = AUROC / 2)."""
    return [
        {"dataset": d, "method": m, "seed": s, "auroc": v, "auprc": v / 2}
        for d, by in table.items()
        for m, values in by.items()
        for s, v in enumerate(values)
    ]


TABLE = {
    "a": {"student": [0.9, 0.8], "iforest": [0.7, 0.7], "ecod": [0.85, 0.85]},
    "b": {"student": [0.6, 0.6], "iforest": [0.6, 0.6], "ecod": [0.5, 0.7]},
    "c": {"student": [0.5, 0.7], "iforest": [0.9, 0.9], "ecod": [0.4, 0.4]},
}


def test_per_set_keeps_seed_order():
    shuffled = list(reversed(records(TABLE)))
    assert per_set(shuffled)["a"]["student"].tolist() == [0.9, 0.8]


def test_average_rank_shares_ties():
    means = {"a": {"x": 0.9, "y": 0.8, "z": 0.8}, "b": {"x": 0.5, "y": 0.7, "z": 0.6}}
    # a: x 1, y 2.5, z 2.5; b: x 3, y 1, z 2
    assert average_ranks(means, ["x", "y", "z"]) == {"x": 2.0, "y": 1.75, "z": 2.25}


def test_win_tie_loss_uses_the_tie_margin():
    assert win_tie_loss(np.array([0.9, 0.6, 0.5]), np.array([0.7, 0.6005, 0.9])) == (1, 1, 1)


def test_wilcoxon_is_scipys_and_one_when_nothing_differs():
    a, b = np.array([0.9, 0.8, 0.7, 0.95, 0.6]), np.array([0.85, 0.81, 0.6, 0.9, 0.5])
    assert wilcoxon_p(a, b) == pytest.approx(wilcoxon(a, b).pvalue)
    assert wilcoxon_p(a, a) == 1.0


def test_summary_rows():
    rows = {r["method"]: r for r in summary(records(TABLE))}
    assert rows["student"]["mean_auroc"] == pytest.approx((0.85 + 0.6 + 0.6) / 3)
    assert rows["iforest"]["mean_auprc"] == pytest.approx((0.7 + 0.6 + 0.9) / 3 / 2)
    # student vs iforest per set: +0.15 win, 0 tie, -0.3 loss; vs ecod: 0 tie, 0 tie (0.6 vs 0.6), +0.2 win
    assert rows["iforest"]["win_tie_loss"] == (1, 1, 1) and rows["ecod"]["win_tie_loss"] == (1, 2, 0)
    assert "win_tie_loss" not in rows["student"]
    ranks = [rows[m]["average_rank"] for m in ("student", "iforest", "ecod")]
    assert sum(ranks) == pytest.approx(6.0)  # 1 + 2 + 3 on every set
