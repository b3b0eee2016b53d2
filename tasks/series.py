"""The time-series first steps of the training pipeline: the series contract, labels, and the series as window
rows for the shared teacher → soft labels → student → evaluate tasks; plus what the registry keeps of it."""

from dataclasses import dataclass

import numpy as np
import pandas as pd
from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from anomaly_distill.config import SeriesConfig
from anomaly_distill.contract import SeriesContract
from anomaly_distill.data import DataError, frame_digest
from anomaly_distill.series.timeseries import Windowed, gaps, label_windows, point_labels, series_from_frame, windowed
from tasks import tracking
from tasks.common import IO_RETRIES, digest_of
from tasks.validation import ValidationFailed, validate_series_frame


@task(cache_policy=NO_CACHE, **IO_RETRIES)
def validate_series(
    frame: pd.DataFrame, config: SeriesConfig, timestamp_column: str, value_columns: list[str], run_id: str
) -> SeriesContract:
    """GX series contract (raises ValidationFailed listing every failure); gaps are reported, not refused."""
    report = validate_series_frame(frame, timestamp_column, value_columns, config.window, config.timestamp_policy)
    tracking.log_json(run_id, report.result, "ge_result.json", "validation")
    if not report.success:
        create_markdown_artifact(report.markdown(), key="data-validation", description="Great Expectations result")
        tracking.set_tags(run_id, {"validation": "failed"})
        raise ValidationFailed(report.failures + order_hint(report.failures, timestamp_column, config))
    series = series_from_frame(frame, timestamp_column, config.window, value_columns, config.timestamp_policy)
    found = gaps(series, config.gap_tolerance)
    create_markdown_artifact(
        report.markdown() + f"\n\n{len(found)} gaps longer than {config.gap_tolerance} median "
        "steps" + "".join(f"\n- {a} → {b}" for a, b in found[:20]),
        key="data-validation",
    )
    digest = frame_digest(frame)
    tracking.log_dataset(run_id, frame, "series", None, digest)
    tracking.log_params(run_id, {"data_digest": digest})  # the model card's, too
    return SeriesContract(
        timestamp_column=timestamp_column,
        value_columns=value_columns,
        series=config,
        gaps=len(found),
        digest=digest,
    )


def order_hint(failures: list[str], timestamp_column: str, config: SeriesConfig) -> list[str]:
    """Repeated or backward timestamps are often a clock change, not bad data: say how to train on them."""
    ordering = ("expect_column_values_to_be_unique", "expect_column_values_to_be_increasing")
    if config.timestamp_policy == "strict" and any(f.startswith(ordering) and timestamp_column in f for f in failures):
        return [
            "if the file's row order is right (e.g. a clock set back for daylight saving), train with "
            "`series: {timestamp_policy: file_order}` in the --config YAML"
        ]
    return []


@task(cache_policy=NO_CACHE)
def window_rows(
    frame: pd.DataFrame,
    config: SeriesConfig,
    timestamp_column: str,
    value_columns: list[str],
    labels: np.ndarray | None,
) -> Windowed:
    series = series_from_frame(frame, timestamp_column, config.window, value_columns, config.timestamp_policy)
    return windowed(series, config, labels)


def series_digest(frame_digest: str, config: SeriesConfig) -> str:
    """The data and how it became window rows (window, stride, splits): the teacher's cache key."""
    return digest_of(frame_digest, config.model_dump_json())


def series_labels(
    frame: pd.DataFrame, timestamp_column: str, label_column: str | None, labels_path: str | None, data_path: str
) -> np.ndarray | None:
    """Point labels: a 0/1 column of the file, or NAB-style label windows (evaluation and teacher choice only)."""
    if label_column and label_column in frame.columns:
        return frame[label_column].to_numpy(dtype=np.int64)
    if labels_path:
        stamps = pd.to_datetime(frame[timestamp_column], format="mixed")
        return point_labels(stamps, label_windows(labels_path, data_path))
    return None


def test_stamps(data: Windowed) -> np.ndarray:
    return data.series.timestamps.iloc[data.end[data.test]].to_numpy()


def history(frame: pd.DataFrame, data: Windowed, window: int, mask: np.ndarray) -> pd.DataFrame:
    """The raw rows behind the window rows in `mask` (with window-1 rows of context before the first)."""
    ends = data.end[mask]
    return frame.iloc[ends[0] - window + 1 : ends[-1] + 1].reset_index(drop=True)


@dataclass
class SeriesGateRows:
    """The test period, for scoring the champion on the same test points as the challenger: the champion gets
    its own window of history before the first test point (its window may differ), and its scores are matched
    to the test points by timestamp."""

    frame: pd.DataFrame  # the raw series, up to the last test point
    first_test: int  # row of the first test point
    timestamp_column: str
    labels: np.ndarray | None  # per test point

    def champion_scores(self, model, contract) -> tuple[np.ndarray, np.ndarray | None]:
        n_test = len(self.frame) - self.first_test
        scored = model.predict(self.frame.iloc[max(0, self.first_test - contract.window + 1) :])
        if len(scored) < n_test:
            raise DataError(
                f"the champion's window ({contract.window}) needs more history than the {self.first_test} points "
                "before the test period"
            )
        wanted = pd.to_datetime(self.frame[self.timestamp_column].iloc[self.first_test :], format="mixed")
        got = pd.to_datetime(scored[contract.timestamp_column].iloc[-n_test:], format="mixed")
        if not (wanted.to_numpy() == got.to_numpy()).all():
            raise DataError("the champion scored other timestamps than the test points")
        return scored["score"].to_numpy()[-n_test:], self.labels


def gate_rows(frame: pd.DataFrame, data: Windowed, timestamp_column: str) -> SeriesGateRows:
    ends = data.end[data.test]
    return SeriesGateRows(frame.iloc[: ends[-1] + 1], int(ends[0]), timestamp_column, data.part(data.test).labels)


def reference(frame: pd.DataFrame, data: Windowed, detector) -> pd.DataFrame:
    """Training-period points (timestamp, values) and their scores: the drift monitor's reference, and the start
    of the history a drift-triggered retrain trains on."""
    rows = history(frame, data, detector.window, data.train)
    scored = detector.predict(rows)
    columns = [detector.timestamp_column, *detector.value_columns]
    values = rows.iloc[detector.window - 1 :].reset_index(drop=True)[columns]
    return pd.concat([values, scored[["score", "is_anomaly"]]], axis=1)
