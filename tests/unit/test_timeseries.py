"""Time series: windows, chronological splits, labels, event metrics, the sequence teacher, bad series input."""

import json

import numpy as np
import pandas as pd
import pytest

from anomaly_distill.config import EngineConfig, SeriesConfig
from anomaly_distill.data import DataError
from anomaly_distill.metrics import event_metrics
from anomaly_distill.series.timeseries import label_windows, point_labels, series_from_frame, window_features, windowed


def make_frame(n=600, seed=0, freq="5min"):
    rng = np.random.default_rng(seed)
    stamps = pd.date_range("2024-01-01", periods=n, freq=freq)
    values = np.sin(np.arange(n) / 20) + rng.normal(0, 0.05, n)
    return pd.DataFrame({"timestamp": stamps.astype(str), "value": values})


def test_row_t_is_the_window_ending_at_t():
    values = np.arange(10, dtype=float)[:, None]
    rows = window_features(values, 4)
    assert rows.shape == (7, 4 + 7)
    assert rows[0, :4].tolist() == [0, 1, 2, 3] and rows[-1, :4].tolist() == [6, 7, 8, 9]
    assert rows[0, 4] == pytest.approx(1.5)  # mean
    assert rows[0, -1] == 1.0  # last step


def test_split_is_chronological_and_normalisation_sees_only_the_training_period():
    frame = make_frame()
    config = SeriesConfig(window=8, min_train_windows=50)
    data = windowed(series_from_frame(frame, "timestamp", 8), config)
    assert data.end[data.train].max() < data.end[data.validation].min() < data.end[data.test].min()
    assert data.train.sum() + data.validation.sum() + data.test.sum() == len(frame) - 7
    spiked = frame.copy()
    spiked.loc[500:, "value"] += 100  # only the test period changes
    again = windowed(series_from_frame(spiked, "timestamp", 8), config)
    assert np.allclose(again.normaliser.center, data.normaliser.center)
    assert np.allclose(again.table.features[again.train], data.table.features[data.train])


@pytest.mark.parametrize(
    "change, message",
    [
        (
            lambda f: f.iloc[[0, 2, 1, *range(3, len(f))]],
            "timestamps are not sorted: row 3 (2024-01-01 00:05:00) is earlier than row 2",
        ),
        (
            lambda f: f.assign(timestamp=f["timestamp"].where(f.index != 5, f["timestamp"][4])),
            "duplicate timestamps, e.g. row 6",
        ),
        (
            lambda f: f.assign(value=f["value"].astype(object).where(f.index != 7, "n/a")),
            "non-numeric or non-finite values, e.g. row 8: 'n/a'",
        ),
        (
            lambda f: f.assign(value=f["value"].where(f.index != 3, np.inf)),
            "non-numeric or non-finite values, e.g. row 4",
        ),
        (lambda f: f.head(5), "the series has 5 points; one window needs 8"),
        (
            lambda f: f.assign(timestamp=f["timestamp"].where(f.index != 9, "yesterday-ish")),
            "1 timestamps do not parse, e.g. row 10",
        ),
        (lambda f: f.rename(columns={"timestamp": "time"}), "timestamp column 'timestamp' not found"),
    ],
)
def test_bad_series_input_is_refused_with_the_row_at_fault(change, message):
    with pytest.raises(DataError, match=message.replace("(", r"\(").replace(")", r"\)")):
        series_from_frame(change(make_frame()).reset_index(drop=True), "timestamp", 8)


def test_file_order_policy_keeps_repeated_timestamps_as_given():
    frame = make_frame()
    frame.loc[5, "timestamp"] = frame.loc[4, "timestamp"]
    series = series_from_frame(frame, "timestamp", 8, timestamp_policy="file_order")
    assert len(series) == len(frame)


def test_stride_thins_training_windows_only():
    series = series_from_frame(make_frame(), "timestamp", 8)
    dense = windowed(series, SeriesConfig(window=8, min_train_windows=50))
    sparse = windowed(series, SeriesConfig(window=8, min_train_windows=50, stride=4))
    assert sparse.train.sum() == -(-dense.train.sum() // 4)
    assert (np.diff(sparse.end[sparse.train]) == 4).all()
    assert (sparse.test == dense.test).all() and (sparse.validation == dense.validation).all()


def test_too_short_for_training_says_how_many_windows_it_needs():
    with pytest.raises(DataError, match=r"holds 41 windows of 8 \(stride 1\), fewer than the 200 needed"):
        windowed(series_from_frame(make_frame(120), "timestamp", 8), SeriesConfig(window=8))


def test_nab_label_windows_become_point_labels(tmp_path):
    frame = make_frame(20, freq="1h")
    labels_file = tmp_path / "windows.json"
    labels_file.write_text(json.dumps({"realKnownCause/x.csv": [["2024-01-01 03:00:00", "2024-01-01 05:00:00"]]}))
    windows = label_windows(labels_file, tmp_path / "realKnownCause" / "x.csv")
    labels = point_labels(pd.to_datetime(frame["timestamp"]), windows)
    assert labels.tolist() == [0, 0, 0, 1, 1, 1] + [0] * 14
    with pytest.raises(DataError, match="no label windows for other/x.csv"):
        label_windows(labels_file, tmp_path / "other" / "x.csv")


def test_event_metrics_golden_values():
    stamps = pd.date_range("2024-01-01", periods=12, freq="1h").to_numpy()
    labels = np.array([0, 0, 1, 1, 1, 0, 0, 0, 1, 1, 0, 0])
    scores = np.array([0, 5, 0, 0, 5, 5, 0, 5, 0, 0, 5, 0], dtype=float)
    result = event_metrics(labels, scores, stamps, threshold=1.0)
    assert result["event_recall"] == 0.5  # the first window fires (2 h after its start), the second does not
    assert result["mean_delay_minutes"] == 120
    # false alarms: t1, t5 (run continuing out of the window), t7, t10 → 4 over 11 hours
    assert result["false_alarms_per_day"] == pytest.approx(4 / (11 / 24))


def test_sequence_teacher_scores_a_broken_window_higher_and_the_student_is_a_tenth_of_its_size():
    from anomaly_distill.data import Table
    from anomaly_distill.series.series_pipeline import engine_for
    from anomaly_distill.tabular import pipeline

    series = series_from_frame(make_frame(1500), "timestamp", 16)
    config = SeriesConfig(window=16, teacher="conv_autoencoder")
    engine = engine_for(series, config, EngineConfig(teacher={"epochs": 15}), "conv_autoencoder")
    data = windowed(series, config)
    train = Table(data.part(data.train).features)
    trained = pipeline.train_teacher(train, engine)
    rows = data.part(data.test).features.to_numpy(dtype=np.float64).copy()
    broken = rows.copy()
    broken[:, 15] += 3.0  # the newest point jumps
    pre = trained.preprocessor
    assert np.median(trained.teacher.score(pre.transform_array(broken))) > 2 * np.median(
        trained.teacher.score(pre.transform_array(rows))
    )
    from anomaly_distill.models.student import StudentNet

    student_params = sum(
        p.numel() for p in StudentNet(train.features.shape[1], config.student_hidden, 5.0).parameters()
    )
    assert student_params * 10 <= trained.teacher.n_params


def test_gaps_longer_than_the_tolerance_are_reported():
    from anomaly_distill.series.timeseries import gaps

    frame = make_frame(50)
    frame = frame.drop(index=range(20, 25)).reset_index(drop=True)  # 30 minutes missing after 01:35
    found = gaps(series_from_frame(frame, "timestamp", 8), tolerance=3.0)
    assert found == [("2024-01-01 01:35:00", "2024-01-01 02:05:00")]
    assert gaps(series_from_frame(frame, "timestamp", 8), tolerance=7.0) == []


def test_teacher_choice_uses_validation_auroc_only_when_the_period_has_both_classes():
    from anomaly_distill.data import Table
    from anomaly_distill.series.series_pipeline import choose_teacher

    class Fixed:
        def __init__(self, scores):
            self.scores = np.asarray(scores, dtype=float)

        def score(self, rows):
            return self.scores

    candidates = {"ensemble": Fixed([0, 1, 0, 1]), "conv_autoencoder": Fixed([0, 0, 1, 1])}
    rows = pd.DataFrame({"x": range(4)})
    kind, why = choose_teacher(candidates, Table(rows, np.array([0, 0, 1, 1])))
    assert kind == "conv_autoencoder" and "conv_autoencoder 1.0000" in why
    kind, why = choose_teacher(candidates, Table(rows, np.zeros(4, dtype=int)))
    assert kind == "ensemble" and "no labelled anomalies" in why


def test_auto_trains_the_autoencoder_only_when_labels_can_choose_between_the_teachers():
    from anomaly_distill.data import Table
    from anomaly_distill.series.series_pipeline import choose_teacher, teacher_kinds

    assert teacher_kinds("auto", np.array([0, 1, 0])) == ["ensemble", "conv_autoencoder"]
    assert teacher_kinds("auto", np.zeros(3)) == teacher_kinds("auto", None) == ["ensemble"]
    assert teacher_kinds("conv_autoencoder", None) == ["conv_autoencoder"]
    kind, why = choose_teacher({"ensemble": object()}, Table(pd.DataFrame({"x": [0.0]}), np.zeros(1)))
    assert (
        kind == "ensemble" and why == "the only candidate (no labelled anomalies in the validation period to choose by)"
    )


def test_merged_history_is_in_time_order_and_newer_rows_win_repeated_timestamps():
    from anomaly_distill.series.timeseries import merged_history

    older = pd.DataFrame(
        {
            "timestamp": ["2024-01-01 00:00", "2024-01-01 00:05", "2024-01-01 00:10"],
            "value": [1.0, 2.0, 3.0],
            "score": [0.1, 0.2, 0.3],
        }
    )
    newer = pd.DataFrame(
        {
            "timestamp": ["2024-01-01 02:00", "2024-01-01 00:10", "2024-01-01 02:05", "2024-01-01 02:00"],
            "value": [10.0, 30.0, 11.0, 12.0],
            "model_name": "m",
        }
    )
    merged = merged_history(older, newer, "timestamp", ["value"])
    assert list(merged.columns) == ["timestamp", "value"]
    assert merged["timestamp"].tolist() == [
        "2024-01-01 00:00",
        "2024-01-01 00:05",
        "2024-01-01 00:10",
        "2024-01-01 02:00",
        "2024-01-01 02:05",
    ]
    assert merged["value"].tolist() == [1.0, 2.0, 30.0, 12.0, 11.0]  # the latest row of a repeated point wins
    series_from_frame(merged, "timestamp", 2)  # a valid series (the two-hour gap is reported, not refused)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda f: f.drop(columns="timestamp"), "lack columns ['timestamp']"),
        (lambda f: f.assign(timestamp=["soon", "2024-01-01 00:05"]), "timestamps do not parse, e.g. 'soon'"),
    ],
)
def test_merged_history_refuses_rows_it_cannot_place_in_time(change, message):
    from anomaly_distill.series.timeseries import merged_history

    older = pd.DataFrame({"timestamp": ["2024-01-01 00:00", "2024-01-01 00:05"], "value": [1.0, 2.0]})
    with pytest.raises(DataError, match=message.replace("[", r"\[").replace("]", r"\]")):
        merged_history(older, change(older.copy()), "timestamp", ["value"])
