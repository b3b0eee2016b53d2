"""Window augmentations for series distillation: what each one changes, and that rows stay real windows."""

import numpy as np
import pandas as pd
import pytest

from anomaly_distill.config import EngineConfig, SeriesConfig, TeacherConfig
from anomaly_distill.series.timeseries import STATS, series_from_frame, window_rows, windowed
from anomaly_distill.series.window_augment import amplitude, level_shift, random_walk, synthetic_windows, time_warp


def windows(n=200, length=16, seed=0):
    rng = np.random.default_rng(seed)
    phase = rng.uniform(0, 2 * np.pi, (n, 1, 1))
    return np.sin(np.arange(length) / 3 + phase) + rng.normal(0, 0.05, (n, 1, length))


def test_time_warp_keeps_the_newest_point_and_replays_the_window_at_another_speed():
    w = windows()
    warped = time_warp(w, np.random.default_rng(1))
    np.testing.assert_allclose(warped[:, :, -1], w[:, :, -1])
    assert warped.shape == w.shape and not np.allclose(warped, w)
    assert warped.min() >= w.min() - 1e-12 and warped.max() <= w.max() + 1e-12  # interpolation, no new values


def test_time_warp_at_speed_one_is_the_identity():
    w = windows(5)

    class SpeedOne:  # uniform(log .6, log 1.6) -> always 0, so exp(...) = 1
        def uniform(self, low, high, size):
            return np.zeros(size)

    np.testing.assert_allclose(time_warp(w, SpeedOne()), w)


def test_level_shift_moves_a_suffix_of_each_window_by_one_constant():
    w = windows()
    shifted = level_shift(w, np.random.default_rng(2))
    delta = (shifted - w)[:, 0, :]
    for row in delta:
        moved = np.flatnonzero(row != 0)
        assert moved[-1] == len(row) - 1 and np.all(np.diff(moved) == 1)  # a contiguous run to the newest point
        assert 0.1 - 1e-9 <= abs(row[moved[0]]) <= 5 + 1e-9 and np.allclose(row[moved], row[moved[0]])


def test_amplitude_and_random_walk_change_shape_statistics():
    w = windows()
    rng = np.random.default_rng(3)
    assert not np.allclose(amplitude(w, rng).std(axis=2), w.std(axis=2))
    walked = random_walk(w, rng)
    assert walked.shape == w.shape and np.abs(walked - w).max() > 0.05


def test_synthetic_windows_are_seeded_and_mix_all_augmentations():
    w = windows()
    first = synthetic_windows(w, 400, np.random.default_rng(4))
    np.testing.assert_array_equal(first, synthetic_windows(w, 400, np.random.default_rng(4)))
    assert first.shape == (400, 1, 16) and np.isfinite(first).all()
    # only the time warp keeps a window's newest point: about a quarter of the rows come from it
    assert 0.15 < np.mean(np.isin(first[:, 0, -1], w[:, 0, -1])) < 0.35


def test_series_distillation_rows_are_real_windows_with_their_stats_recomputed():
    from anomaly_distill.data import Table
    from anomaly_distill.series.series_pipeline import engine_for
    from anomaly_distill.tabular import pipeline

    rng = np.random.default_rng(0)
    n = 1200
    frame = pd.DataFrame(
        {
            "timestamp": pd.date_range("2024-01-01", periods=n, freq="5min").astype(str),
            "value": np.sin(np.arange(n) / 20) + rng.normal(0, 0.05, n),
        }
    )
    config = SeriesConfig(window=16, distill_rows=3000)
    series = series_from_frame(frame, "timestamp", 16)
    data = windowed(series, config)
    train = Table(data.part(data.train).features)
    engine = engine_for(series, config, EngineConfig(teacher=TeacherConfig(detectors=["iforest", "ecod"])), "ensemble")
    assert engine.distill.synthetic == "windows" and engine.teacher.sequence == (1, 16)
    trained = pipeline.train_teacher(train, engine)
    soft = pipeline.generate_soft_labels(trained, train, engine)
    assert len(soft) == 3000 and set(soft.source) == {"train", "augmented"}
    augmented = soft[soft.source == "augmented"][list(train.features.columns)].to_numpy()
    recomputed = window_rows(augmented[:, :16].reshape(-1, 1, 16))
    np.testing.assert_allclose(augmented[:, 16:], recomputed[:, 16:], rtol=1e-4, atol=1e-4)
    assert len(STATS) == augmented.shape[1] - 16
    # each ensemble member's calibrated score is a hint target
    hints = soft.filter(like="teacher_feature_").to_numpy()
    assert hints.shape == (3000, 2)
    np.testing.assert_allclose(hints.mean(axis=1), soft.teacher_score, rtol=1e-5)


def test_member_hints_are_off_for_tables():
    from anomaly_distill.models.teachers import EnsembleTeacher

    X = np.random.default_rng(0).normal(size=(300, 4)).astype(np.float32)
    teacher = EnsembleTeacher(TeacherConfig(detectors=["iforest", "ecod"])).fit(X)
    assert teacher.features(X) is None
    hinted = EnsembleTeacher(TeacherConfig(detectors=["iforest", "ecod"], member_hints=True)).fit(X)
    assert hinted.features(X).shape == (300, 2)
    assert hinted.features(X).mean(axis=1) == pytest.approx(hinted.score(X))
