"""Alarm scores fire at the onset of a lasting change, use only the past, and stay in [0, 1]."""

import numpy as np

from anomaly_distill.series.alarm_scores import likelihood, onset


def level_shift(n=3000, at=2000, seed=0):
    rng = np.random.default_rng(seed)
    raw = rng.normal(0, 1, n)
    raw[at:] += 8  # the detector scores everything after the change as far out
    return raw


def test_likelihood_fires_at_the_change_then_falls_back():
    out = likelihood(level_shift(), long_window=500, short_window=5)
    assert out.min() >= 0 and out.max() <= 1
    assert out[2000:2010].max() > 0.999  # the onset
    assert np.median(out[2700:]) < 0.9  # the history is now the new level: no alarm for ever
    assert np.mean(out[1000:2000] > 0.999) < 0.01  # rare before the change


def test_likelihood_and_onset_use_only_the_past():
    raw = level_shift()
    changed = raw.copy()
    changed[2500:] = 0
    assert np.array_equal(likelihood(raw, 500, 5)[:2500], likelihood(changed, 500, 5)[:2500])
    assert np.array_equal(onset(raw, 10)[:2500], onset(changed, 10)[:2500])


def test_likelihood_up_to_a_fork_ignores_what_follows_it():
    """Two streams share a past (flat, then a small wiggle) but not a future (one calm, one wild): the scores up to
    the fork are identical, even where the spread floor decides them."""
    past = np.r_[np.ones(600), 1.001, np.ones(99)]
    calm, wild = np.r_[past, np.ones(300)], np.r_[past, np.linspace(0, 1e6, 300)]
    assert np.array_equal(likelihood(calm, 500, 1)[:700], likelihood(wild, 500, 1)[:700])
    assert likelihood(calm, 500, 1)[600] > 0.99  # the wiggle on a flat history is seen


def test_unscored_points_give_zero():
    raw = level_shift()
    raw[:31] = np.nan
    assert (likelihood(raw, 500, 5)[:31] == 0).all() and (onset(raw, 10)[:31] == 0).all()


def test_onset_keeps_rises_only():
    scores = np.array([0.1, 0.5, 0.9, 0.9, 0.8, 0.95, 0.2])
    assert onset(scores, hold=3).tolist() == [0.1, 0.5, 0.9, 0.0, 0.0, 0.95, 0.0]
