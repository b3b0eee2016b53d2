"""The pure pieces of `make bench-labels`: who gets labelled, the feedback loop's bookkeeping, selection across
sets only, and the win/tie/loss tables."""

import numpy as np
import pytest

from benchmarking import label_benchmark as lb


def test_partial_labels_label_at_least_one_anomaly_and_nothing_else():
    y = np.zeros(1000, dtype=int)
    y[:30] = 1
    for fraction in (0.001, 0.01, 0.05):
        labels = lb.partial_labels(y, fraction, seed=0)
        assert labels.dtype == np.int8
        assert (labels == 1).sum() == max(1, round(fraction * 30))
        assert set(np.unique(labels)) == {lb.UNLABELLED, 1}  # no row is labelled normal
        assert np.all(y[labels == 1] == 1)


def test_partial_labels_are_nested_across_fractions_and_differ_across_seeds():
    y = np.zeros(2000, dtype=int)
    y[::10] = 1
    small, large = (lb.partial_labels(y, f, seed=3) == 1 for f in (0.05, 0.25))
    assert small.sum() == 10 and large.sum() == 50 and np.all(large[small])
    assert not np.array_equal(small, lb.partial_labels(y, 0.05, seed=4) == 1)


def test_n_labelled_bounds():
    assert lb.n_labelled(3, 0.01) == 1
    assert lb.n_labelled(3, 1.0) == 3
    assert lb.n_labelled(200, 0.25) == 50
    with pytest.raises(ValueError):
        lb.n_labelled(0, 0.05)


def test_pu_targets_treat_unlabelled_as_negative():
    assert lb.pu_targets(np.array([-1, 1, 0, -1, 1], dtype=np.int8)).tolist() == [0, 1, 0, 0, 1]


def test_feedback_bookkeeping():
    assert lb.review_size(50) == 1 and lb.review_size(20_000) == 200
    reviewed = np.zeros(100, dtype=bool)
    reviewed[:90] = True
    queue = lb.random_queue(reviewed, 5, np.random.default_rng(0))
    assert len(queue) == 5 and np.all(queue >= 90)
    assert len(lb.random_queue(reviewed, 50, np.random.default_rng(0))) == 10
    y = np.zeros(100, dtype=int)
    y[[91, 95]] = 1
    assert lb.queue_precision(y, np.array([91, 92, 95, 96])) == 0.5
    labels = np.full(100, lb.UNLABELLED, dtype=np.int8)
    labelled = lb.label_rows(labels, y, np.array([91, 92]))
    assert labelled[91] == 1 and labelled[92] == 0 and (labelled == lb.UNLABELLED).sum() == 98
    assert (labels == lb.UNLABELLED).all()  # the input is left alone


def scores_table(values: dict[str, dict[str, float]], seeds=(0, 1)) -> list[dict]:
    return [
        {"dataset": d, "seed": s, "setting": setting, "score": v + 0.001 * s}
        for setting, by in values.items()
        for d, v in by.items()
        for s in seeds
    ]


def test_set_folds_partition_the_sets():
    sets = [f"s{i}" for i in range(30)]
    folds = lb.set_folds(sets, 5)
    assert [len(f) for f in folds] == [6] * 5
    assert sorted(x for f in folds for x in f) == sorted(sets)
    assert folds == lb.set_folds(reversed(sets), 5)  # the order given does not matter


def test_leave_sets_out_never_scores_a_set_with_a_choice_made_on_it():
    sets = [f"s{i:02d}" for i in range(30)]
    # "a" wins on 29 sets by a little; "b" wins hugely on one set, which lifts b's overall mean above a's.
    values = {"a": {d: 0.8 for d in sets}, "b": {d: 0.79 for d in sets}}
    values["b"]["s07"] = 1.0
    values["a"]["s07"] = 0.5
    result = lb.leave_sets_out(scores_table(values))
    assert result["setting_means"]["b"] > result["setting_means"]["a"]
    held_out_with = {d: f["chosen"] for f in result["folds"] for d in f["held_out"]}
    # s07's own fold cannot see s07, so it picks a there (and scores 0.5): the in-sample winner does not leak
    assert held_out_with["s07"] == "a" and result["per_set"]["s07"]["score"] == pytest.approx(0.5005)
    expected = np.mean([result["per_set"][d]["score"] for d in sets])
    assert result["out_of_fold_mean"] == pytest.approx(expected)
    assert result["sets"] == 30 and len(result["folds"]) == 5
    assert all(len(f["held_out"]) == 6 for f in result["folds"])
    assert "out-of-fold mean" in lb.format_selection(result)


def test_leave_sets_out_uses_only_sets_every_setting_has():
    values = {"a": {f"s{i}": 0.7 for i in range(12)}, "b": {f"s{i}": 0.6 for i in range(10)}}
    result = lb.leave_sets_out(scores_table(values), n_folds=5)
    assert result["sets"] == 10 and result["out_of_fold_mean"] == pytest.approx(0.7005)


def grid(table: dict[str, dict[str, float]]) -> list[dict]:
    return [
        {"dataset": d, "seed": 0, "method": m, "auroc": v, "auprc": v / 2, "fraction": 0.05}
        for d, by in table.items()
        for m, v in by.items()
    ]


def test_compare_win_tie_loss_and_partial_methods():
    table = {
        "a": {"student": 0.90, "teacher": 0.95, "iforest": 0.80, "prenet": 0.70},
        "b": {"student": 0.70, "teacher": 0.7005, "iforest": 0.75},
        "c": {"student": 0.60, "teacher": 0.55, "iforest": 0.60},
    }
    rows = {r["method"]: r for r in lb.compare(grid(table))}
    assert rows["iforest"]["win_tie_loss"] == (1, 1, 1)  # tie: |Δ| < 0.001
    assert rows["teacher"]["win_tie_loss"] == (1, 1, 1)
    assert rows["iforest"]["sets"] == 3 and rows["iforest"]["average_rank"] is not None
    # prenet ran on one set: compared there only, without a rank
    assert rows["prenet"]["sets"] == 1 and rows["prenet"]["average_rank"] is None
    assert rows["prenet"]["win_tie_loss"] == (1, 0, 0) and rows["prenet"]["reference_auroc_same_sets"] == 0.9
    assert "win_tie_loss" not in rows["student"]
    assert lb.near_teacher(grid(table)) == (2, 3)  # a trails its teacher by 0.05
    text = lb.format_compare(lb.compare(grid(table)), 3)
    assert "| prenet | **1** |" in text


def test_by_fraction_repeats_label_free_methods():
    records = [
        {"dataset": "a", "seed": 0, "method": "iforest", "fraction": None, "auroc": 0.7},
        {"dataset": "a", "seed": 0, "method": "student", "fraction": 0.01, "auroc": 0.8},
        {"dataset": "a", "seed": 0, "method": "student", "fraction": 0.25, "auroc": 0.9},
    ]
    split = lb.by_fraction(records, [0.01, 0.25])
    assert [(r["method"], r["auroc"]) for r in split[0.25]] == [("iforest", 0.7), ("student", 0.9)]
    assert all(r["fraction"] == 0.01 for r in split[0.01])


def test_feedback_gains_against_random():
    rows = []
    for d, start, top, rnd in (("a", 0.2, 0.5, 0.25), ("b", 0.4, 0.6, 0.6), ("c", 0.1, 0.3, 0.1)):
        for strategy, end in (("top", top), ("random", rnd)):
            rows += [
                {"dataset": d, "seed": 0, "strategy": strategy, "round": 0, "auprc": start},
                {"dataset": d, "seed": 0, "strategy": strategy, "round": 5, "auprc": end, "precision": 0.5},
            ]
    gains = lb.feedback_gains(rows, last_round=5)
    assert gains["top"]["vs_random"] == (2, 1, 0)
    assert gains["top"]["mean_ratio"] == pytest.approx(np.mean([2.5, 1.5, 3.0]))
    assert gains["top"]["ratio_of_means"] == pytest.approx(1.4 / 0.7)
    table = lb.feedback_table(rows)
    assert table["top"][5]["precision"] == 0.5 and "precision" not in table["top"][0]
    assert "round 5" in lb.ascii_curve(table)
