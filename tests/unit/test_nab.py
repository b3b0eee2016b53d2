"""NAB score: hand-computed golden values, and the corpus sweep against a brute force over every threshold."""

import itertools

import numpy as np
import pandas as pd
import pytest

from benchmarking.nab import (
    PROFILES,
    ScoredFile,
    corpus_sweep,
    nab_scores,
    probation_length,
    scaled_sigmoid,
    unit_scores,
    window_bounds,
)

STANDARD = PROFILES["standard"]


def test_probation_is_15_percent_capped_at_750_points():
    assert probation_length(100) == 15 and probation_length(4032) == 604 and probation_length(22695) == 750


def test_scaled_sigmoid_golden_values():
    # NAB's documented points: left edge 0.98661, halfway 0.84828, right edge 0, one width past -0.98661
    assert scaled_sigmoid(-1.0) == pytest.approx(0.98661, abs=1e-5)
    assert scaled_sigmoid(-0.5) == pytest.approx(0.84828, abs=1e-5)
    assert scaled_sigmoid(0.0) == pytest.approx(0.0)
    assert scaled_sigmoid(1.0) == pytest.approx(-0.98661, abs=1e-5)
    assert scaled_sigmoid(3.5) == -1.0


def one_detection(n, window, detections) -> ScoredFile:
    scores = np.zeros(n)
    scores[list(detections)] = 1.0
    return ScoredFile("f", scores, [window])


def test_detection_at_the_window_start_is_perfect():
    result = nab_scores([one_detection(100, (40, 49), [40])])
    assert result["standard"]["score"] == pytest.approx(100.0)
    assert result["reward_low_FN_rate"]["score"] == pytest.approx(100.0)


def test_golden_raw_scores_for_a_late_detection_and_false_positives():
    # detection halfway (index 45 of window 40..49): position -(49-45+1)/10 = -0.5 -> 0.84828/0.98661
    # false positive at 20 (no window before it): -0.11; at 59: 10/9 widths past the window -> 0.11*S(1.111)
    file = one_detection(100, (40, 49), [20, 45, 59])
    threshold, raw, per_file = corpus_sweep([file], STANDARD)
    expected = 0.84828 / 0.98661 - 0.11 + 0.11 * (2 / (1 + np.exp(5 * 10 / 9)) - 1)
    assert threshold == 1.0 and raw == pytest.approx(expected, abs=1e-4) and per_file["f"] == pytest.approx(raw)
    score = nab_scores([file])["standard"]["score"]
    assert score == pytest.approx(100 * (expected + 1) / 2, abs=1e-2)


def test_never_firing_scores_zero_and_probationary_detections_do_not_count():
    assert nab_scores([one_detection(100, (40, 49), [])])["standard"]["score"] == pytest.approx(0.0)
    assert nab_scores([one_detection(100, (40, 49), [3, 10])])["standard"]["score"] == pytest.approx(0.0)


def test_a_window_inside_the_probationary_period_is_not_scored():
    file = ScoredFile("f", np.zeros(100), [(2, 8), (40, 49)])
    file.scores[40] = 1
    assert nab_scores([file])["standard"]["score"] == pytest.approx(100.0)


def brute_force(files: list[ScoredFile], profile: dict) -> float:
    """Best summed raw score over every threshold, counting each point directly (slow, obviously right)."""
    best = -np.inf
    for threshold in sorted({s for f in files for s in f.scores} | {1.1}):
        total = 0.0
        for f in files:
            n, start = len(f.scores), probation_length(len(f.scores))
            fired = [i for i in range(start, n) if f.scores[i] >= threshold]
            for left, right in f.windows:
                if right < start:
                    continue
                hits = [i for i in fired if left <= i <= right]
                width = right - left + 1
                total += (
                    scaled_sigmoid(-(right - hits[0] + 1) / width) / scaled_sigmoid(-1.0) * profile["tp"]
                    if hits
                    else -profile["fn"]
                )
            for i in fired:
                if any(left <= i <= right for left, right in f.windows):
                    continue
                before = [(left, right) for left, right in f.windows if right < i]
                if not before:
                    total -= profile["fp"]
                    continue
                left, right = before[-1]
                total += scaled_sigmoid(abs(right - i) / max(right - left, 1)) * profile["fp"]
        best = max(best, total)
    return best


@pytest.mark.parametrize("seed, profile", itertools.product(range(4), PROFILES))
def test_corpus_sweep_matches_a_brute_force(seed, profile):
    rng = np.random.default_rng(seed)
    files = []
    for k in range(3):
        n = int(rng.integers(60, 120))
        starts = sorted(rng.choice(np.arange(5, n - 12), 2, replace=False))
        windows = [(int(s), int(s) + 5) for s in starts if True]
        if windows[1][0] <= windows[0][1]:
            windows = windows[:1]
        scores = np.round(rng.random(n), 1)  # ties, as NAB detectors have
        files.append(ScoredFile(f"f{k}", scores, windows))
    _, raw, per_file = corpus_sweep(files, PROFILES[profile])
    assert raw == pytest.approx(brute_force(files, PROFILES[profile]), abs=1e-9)
    assert sum(per_file.values()) == pytest.approx(raw)


def test_window_bounds_match_the_file_timestamps():
    stamps = pd.Series(pd.date_range("2020-01-01", periods=10, freq="5min"))
    assert window_bounds(stamps, [("2020-01-01 00:10:00", "2020-01-01 00:20:00.000000")]) == [(2, 4)]
    assert window_bounds(stamps, [("2021-01-01", "2021-01-02")]) == []


def test_unit_scores_stay_in_0_1_and_keep_order_beyond_the_training_range():
    reference = np.arange(100, dtype=float)
    scores = np.array([-5.0, 50.0, 99.0, 120.0, 500.0])
    unit = unit_scores(reference, scores)
    assert np.all((unit >= 0) & (unit <= 1)) and np.all(np.diff(unit) > 0)
    assert unit[0] == 0 and unit[1] == pytest.approx(51 / 101)
