"""Time series as a table of windows: the row of point t holds the window of values ending at t (plus a few
window statistics), so a point's score needs only its past and scoring can run online.

Normalisation statistics come from the training period only; splits are chronological, never shuffled.
"""

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from numpy.lib.stride_tricks import sliding_window_view

from anomaly_distill.config import SeriesConfig
from anomaly_distill.data import DataError, Table, read_frame

STATS = ("mean", "std", "min", "max", "last_z", "abs_diff_mean", "last_diff")


@dataclass
class Series:
    timestamps: pd.Series
    values: pd.DataFrame  # one column per value series, float64

    def __len__(self) -> int:
        return len(self.timestamps)


def series_from_frame(
    frame: pd.DataFrame,
    timestamp_column: str,
    window: int,
    value_columns: list[str] | None = None,
    timestamp_policy: str = "strict",
) -> Series:
    """Checked series: timestamps parse, strictly increase (no duplicates), values numeric and finite, and at
    least one full window. Each failure names the rows at fault.

    timestamp_policy="file_order" accepts repeated or backward timestamps and keeps the rows as the file orders
    them (real exports have them: a clock set back for daylight saving); parsing and values are still checked."""
    if timestamp_column not in frame.columns:
        raise DataError(f"timestamp column {timestamp_column!r} not found; columns are {list(frame.columns)}")
    stamps = pd.to_datetime(frame[timestamp_column], errors="coerce", format="mixed")
    bad = np.flatnonzero(stamps.isna().to_numpy())
    if len(bad):
        raise DataError(
            f"{len(bad)} timestamps do not parse, e.g. row {bad[0] + 1}: {frame[timestamp_column].iloc[bad[0]]!r}"
        )
    steps = stamps.diff().iloc[1:]
    if timestamp_policy == "file_order":
        steps = steps.abs() + pd.Timedelta(1, "ns")
    duplicates = np.flatnonzero((steps == pd.Timedelta(0)).to_numpy()) + 1
    if len(duplicates):
        raise DataError(
            f"{len(duplicates)} duplicate timestamps, e.g. row {duplicates[0] + 1}: {stamps.iloc[duplicates[0]]}"
        )
    backwards = np.flatnonzero((steps < pd.Timedelta(0)).to_numpy()) + 1
    if len(backwards):
        row = backwards[0]
        raise DataError(
            f"timestamps are not sorted: row {row + 1} ({stamps.iloc[row]}) is earlier than row {row} "
            f"({stamps.iloc[row - 1]}); {len(backwards)} such rows"
        )
    columns = value_columns or [c for c in frame.columns if c != timestamp_column]
    values = pd.DataFrame({c: _numeric(frame, c) for c in columns})
    if len(frame) < window:
        raise DataError(f"the series has {len(frame)} points; one window needs {window}")
    return Series(stamps.reset_index(drop=True), values.reset_index(drop=True))


def _numeric(frame: pd.DataFrame, column: str) -> np.ndarray:
    if column not in frame.columns:
        raise DataError(f"value column {column!r} not found; columns are {list(frame.columns)}")
    values = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(values))
    if len(bad):
        raise DataError(
            f"value column {column!r} has {len(bad)} non-numeric or non-finite values, "
            f"e.g. row {bad[0] + 1}: {frame[column].iloc[bad[0]]!r}"
        )
    return values


def gaps(series: Series, tolerance: float) -> list[tuple[str, str]]:
    """Intervals longer than `tolerance` x the median step (reported, not refused: sensors do go quiet)."""
    steps = series.timestamps.diff()
    limit = steps.median() * tolerance
    return [
        (str(series.timestamps[i - 1]), str(series.timestamps[i])) for i in np.flatnonzero((steps > limit).to_numpy())
    ]


def read_series(
    path: str | Path,
    timestamp_column: str,
    window: int,
    value_columns: list[str] | None = None,
    timestamp_policy: str = "strict",
) -> Series:
    return series_from_frame(read_frame(path), timestamp_column, window, value_columns, timestamp_policy)


@dataclass
class Normaliser:
    """Per value column: (x - median) / IQR of the training period."""

    center: np.ndarray
    scale: np.ndarray

    @classmethod
    def fit(cls, values: np.ndarray) -> "Normaliser":
        q1, median, q3 = np.percentile(values, [25, 50, 75], axis=0)
        spread = np.where(q3 - q1 > 0, q3 - q1, values.std(axis=0))
        return cls(median, np.where(spread > 0, spread, 1.0))

    def __call__(self, values: np.ndarray) -> np.ndarray:
        return (values - self.center) / self.scale


def window_columns(value_columns: list[str], window: int) -> list[str]:
    steps = [f"{c}_t-{window - 1 - j}" for c in value_columns for j in range(window)]
    return steps + [f"{c}_{s}" for c in value_columns for s in STATS]


def window_features(values: np.ndarray, window: int) -> np.ndarray:
    """(n, k) normalised values -> (n - window + 1, k*window + k*len(STATS)); row i = window ending at i+window-1.

    The raw window comes first, channel by channel, oldest to newest: sequence teachers read it from there."""
    return window_rows(sliding_window_view(values, window, axis=0))


def window_rows(windows: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
    """(n, k, window) windows -> (n, k*window + k*len(STATS)) rows: the windows flattened, then their stats.

    Computed in torch, float64: the exported ONNX graph of a series model runs this same function, so the rows
    it builds are the rows training and the pyfunc build. A numpy array in gives a numpy array out."""
    given_tensor = torch.is_tensor(windows)
    windows = windows if given_tensor else torch.from_numpy(np.ascontiguousarray(windows, dtype=np.float64))
    mean, std = windows.mean(dim=2), windows.std(dim=2, correction=0)
    steps = windows[:, :, 1:] - windows[:, :, :-1]
    stats = [
        mean,
        std,
        windows.amin(dim=2),
        windows.amax(dim=2),
        (windows[:, :, -1] - mean) / (std + 1e-6),
        steps.abs().mean(dim=2),
        steps[:, :, -1],
    ]
    rows = torch.cat([windows.reshape(windows.shape[0], -1), *stats], dim=1)
    return rows if given_tensor else rows.numpy()


@dataclass
class Windowed:
    """A series as window rows, with each row's end point and the chronological split of those end points."""

    series: Series
    table: Table  # one row per point from window-1 on
    end: np.ndarray  # index in the series of each row's last point
    train: np.ndarray  # row masks
    validation: np.ndarray
    test: np.ndarray
    normaliser: Normaliser

    def part(self, mask: np.ndarray) -> Table:
        return self.table.take(np.flatnonzero(mask))


def chronological_split(n_points: int, config: SeriesConfig) -> tuple[int, int]:
    """End (exclusive) of the training and of the validation period, in points."""
    train_end = int(n_points * config.train_fraction)
    return train_end, int(n_points * (config.train_fraction + config.validation_fraction))


def windowed(series: Series, config: SeriesConfig, point_labels: np.ndarray | None = None) -> Windowed:
    train_end, val_end = chronological_split(len(series), config)
    train_windows = max(train_end - config.window + 1, 0)
    if -(-train_windows // config.stride) < config.min_train_windows:
        raise DataError(
            f"the series has {len(series)} points: its training period ({train_end} points) holds "
            f"{-(-train_windows // config.stride)} windows of {config.window} (stride {config.stride}), "
            f"fewer than the {config.min_train_windows} needed"
        )
    values = series.values.to_numpy()
    normaliser = Normaliser.fit(values[:train_end])
    features = window_features(normaliser(values), config.window)
    end = np.arange(config.window - 1, len(series))
    frame = pd.DataFrame(features, columns=window_columns(list(series.values.columns), config.window))
    labels = None if point_labels is None else point_labels[end].astype(np.int64)
    strided = (end - end[0]) % config.stride == 0  # training windows only: every point is still scored
    return Windowed(
        series,
        Table(frame, labels),
        end,
        (end < train_end) & strided,
        (end >= train_end) & (end < val_end),
        end >= val_end,
        normaliser,
    )


def merged_history(
    older: pd.DataFrame,
    newer: pd.DataFrame,
    timestamp_column: str,
    value_columns: list[str],
    names: tuple[str, str] = ("older", "newer"),
) -> pd.DataFrame:
    """Two stretches of one series as one history in time order (e.g. a model's training period + live points).

    A timestamp present more than once (in both, or scored twice from overlapping histories) keeps the row from
    `newer`, latest last; the gap between the stretches stays a gap (the series contract reports it)."""
    columns = [timestamp_column, *value_columns]
    for name, part in zip(names, (older, newer)):
        missing = [c for c in columns if c not in part.columns]
        if missing:
            raise DataError(f"the {name} rows lack columns {missing} needed to rebuild the series")
    history = pd.concat([older[columns], newer[columns]], ignore_index=True)
    stamps = pd.to_datetime(history[timestamp_column], errors="coerce", format="mixed", utc=True)
    if stamps.isna().any():
        raise DataError(
            f"{int(stamps.isna().sum())} timestamps do not parse, e.g. "
            f"{history[timestamp_column][stamps.isna()].iloc[0]!r}"
        )
    keep = ~stamps.duplicated(keep="last")
    order = stamps[keep].sort_values(kind="stable").index
    return history.loc[order].reset_index(drop=True)


def series_windows(series: Series, normaliser: Normaliser, window: int) -> pd.DataFrame:
    """Window rows of a (recent history) series with a fitted normaliser: what a deployed model scores."""
    features = window_features(normaliser(series.values.to_numpy()), window)
    return pd.DataFrame(features, columns=window_columns(list(series.values.columns), window))


def label_windows(path: str | Path, series_path: str | Path) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
    """NAB-style label JSON: keys are paths ending in `<folder>/<file>.csv`, values [start, end] pairs."""
    key = "/".join(Path(series_path).parts[-2:])
    try:
        windows = json.loads(Path(path).read_text())
    except (OSError, ValueError) as error:
        raise DataError(f"label windows {path} cannot be read ({type(error).__name__}: {error})") from None
    if key not in windows:
        raise DataError(f"{path} has no label windows for {key}")
    return [(pd.Timestamp(start), pd.Timestamp(end)) for start, end in windows[key]]


def point_labels(timestamps: pd.Series, windows: list[tuple[pd.Timestamp, pd.Timestamp]]) -> np.ndarray:
    labels = np.zeros(len(timestamps), dtype=np.int64)
    for start, end in windows:
        labels[((timestamps >= start) & (timestamps <= end)).to_numpy()] = 1
    return labels
