"""Loading, checking, splitting and scaling tabular data."""

import csv
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from anomaly_distill.errors import DataError  # noqa: F401 (re-exported: where callers import it from)

NPZ_LABEL = "label"
UNLABELLED = -1  # an empty label cell: the row was not reviewed, it is neither normal nor anomaly


def labelled_mask(labels: np.ndarray | None) -> np.ndarray | None:
    """Rows whose label a person gave (0 or 1); None when there is no label column."""
    return None if labels is None else np.asarray(labels) != UNLABELLED


@dataclass
class Table:
    features: pd.DataFrame
    labels: np.ndarray | None = None
    segments: pd.Series | None = None  # segment of each row (e.g. merchant, machine) when models are per segment

    def __len__(self) -> int:
        return len(self.features)

    def take(self, index: np.ndarray) -> "Table":
        labels = None if self.labels is None else self.labels[index]
        segments = None if self.segments is None else self.segments.iloc[index].reset_index(drop=True)
        return Table(self.features.iloc[index].reset_index(drop=True), labels, segments)

    def scoring_frame(self) -> pd.DataFrame:
        """What a model scores: the features, plus the segment column for per-segment models."""
        if self.segments is None:
            return self.features
        return self.features.assign(**{self.segments.name: self.segments.to_numpy()})


def read_frame(path: str | Path) -> pd.DataFrame:
    """A CSV/Parquet/.npz file as a frame; whatever cannot be read is a DataError that says why."""
    path = _readable(path)
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            _check_header(column_names(path), path)
            return pd.read_csv(path)
        if suffix in (".parquet", ".pq"):
            _check_header(column_names(path), path)
            return pd.read_parquet(path)
        if suffix == ".npz":
            return _npz_frame(path)
    except DataError:
        raise
    except Exception as error:  # the readers' own errors: say which file and what, not where in pandas
        raise DataError(f"{path}: cannot be read as {suffix[1:]} ({_reader_error(error)})") from None
    raise DataError(f"{path}: unsupported file type {suffix!r} (use .csv, .parquet or .npz)")


def iter_frames(path: str | Path, rows: int) -> Iterator[tuple[int, pd.DataFrame]]:
    """A CSV/Parquet/.npz file as frames of at most `rows` rows, each with the file row it starts at: memory holds
    one batch, not the file (an .npz is read whole: numpy cannot read part of it)."""
    path = _readable(path)
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".parquet", ".pq"):
        frame = read_frame(path)
        yield from ((begin, frame.iloc[begin : begin + rows]) for begin in range(0, len(frame), rows))
        return
    _check_header(column_names(path), path)
    first_row = 0
    try:
        for batch in _batches(path, suffix, rows):
            yield first_row, batch
            first_row += len(batch)
    except DataError:
        raise
    except Exception as error:
        reason = _reader_error(error)
        raise DataError(f"{path}: cannot be read as {suffix[1:]} after row {first_row:,} ({reason})") from None


def _batches(path: Path, suffix: str, rows: int) -> Iterator[pd.DataFrame]:
    if suffix == ".csv":
        with pd.read_csv(path, chunksize=rows) as reader:
            yield from reader
        return
    # pyarrow.parquet (~0.2 s) only for Parquet files
    import pyarrow.parquet as pq

    # pre_buffer off: with it, every batch read stayed allocated (RSS grew ~16 MB per batch of 200k rows);
    # a read buffer: column chunks are read page by page, not whole (a row group of 1M rows held ~90 MB less)
    with pq.ParquetFile(path, pre_buffer=False, buffer_size=1 << 20) as parquet:
        for batch in parquet.iter_batches(batch_size=rows):
            yield batch.to_pandas()


@dataclass
class ColumnCounts:
    missing: int = 0
    infinite: int = 0
    text: int = 0  # values that are not numbers
    first_bad_row: int | None = None


@dataclass
class FileProfile:
    """Whole-file facts gathered while a file streams past: what a sample alone cannot vouch for."""

    rows: int = 0
    sampled: int = 0
    digest: str = ""  # of every cell and the column names
    columns: dict[str, ColumnCounts] = field(default_factory=dict)

    def problems(self, skip: tuple[str | None, ...] = ()) -> list[str]:
        """Missing, infinite or non-numeric cells anywhere in the file, per column (`skip`: text columns)."""
        found = []
        for name, counts in self.columns.items():
            kinds = [f"{n:,} {kind}" for kind, n in vars(counts).items() if kind != "first_bad_row" and n]
            if name not in skip and kinds:
                found.append(f"column {name!r}: {', '.join(kinds)} (first in row {counts.first_bad_row:,})")
        return found


def sample_file(
    path: str | Path, max_rows: int, seed: int, batch_rows: int = 200_000
) -> tuple[pd.DataFrame, FileProfile]:
    """A uniform random sample of at most `max_rows` rows of a file read in batches (in file order), and the whole
    file's profile. A file of at most `max_rows` rows comes back whole; memory holds the sample and one batch.

    Each row gets a random key and the rows with the smallest keys are kept: uniform without knowing the row count."""
    rng, profile, digest = np.random.default_rng(seed), FileProfile(), hashlib.sha256()
    kept, keys, rows = None, np.empty(0), np.empty(0, dtype=np.int64)
    for first_row, batch in iter_frames(path, batch_rows):
        _profile_batch(profile, batch, first_row)
        digest.update(pd.util.hash_pandas_object(batch, index=False).to_numpy().tobytes())
        batch_keys = rng.random(len(batch))
        entering = batch_keys < keys.max() if len(keys) >= max_rows else np.ones(len(batch), bool)
        kept = batch[entering] if kept is None else pd.concat([kept, batch[entering]], ignore_index=True)
        keys = np.concatenate([keys, batch_keys[entering]])
        rows = np.concatenate([rows, first_row + np.flatnonzero(entering)])
        if len(keys) > max_rows:
            keep = np.sort(np.argpartition(keys, max_rows)[:max_rows])
            kept, keys, rows = kept.iloc[keep].reset_index(drop=True), keys[keep], rows[keep]
    if kept is None:
        raise DataError(f"{path}: the file has a header but no rows")
    digest.update("\x1f".join(map(str, kept.columns)).encode())
    profile.sampled, profile.digest = len(kept), digest.hexdigest()[:16]
    return kept.iloc[np.argsort(rows, kind="stable")].reset_index(drop=True), profile


def _profile_batch(profile: FileProfile, batch: pd.DataFrame, first_row: int) -> None:
    profile.rows += len(batch)
    for name in batch.columns:
        counts = profile.columns.setdefault(str(name), ColumnCounts())
        values = batch[name]
        missing = values.isna().to_numpy()
        if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
            infinite, text = np.isinf(values.to_numpy(dtype=np.float64, na_value=np.nan)), np.zeros(len(values), bool)
        else:
            infinite = np.zeros(len(values), bool)
            text = ~missing & pd.to_numeric(values.astype(str), errors="coerce").isna().to_numpy()
        bad = missing | infinite | text
        if bad.any() and counts.first_bad_row is None:
            counts.first_bad_row = first_row + int(np.flatnonzero(bad)[0]) + 1  # 1-based
        counts.missing += int(missing.sum())
        counts.infinite += int(infinite.sum())
        counts.text += int(text.sum())


def _readable(path: str | Path) -> Path:
    path = Path(path)
    if path.is_dir():
        raise DataError(f"{path} is a directory; give the data file itself (.csv, .parquet or .npz)")
    if not path.is_file():
        raise DataError(f"data file not found: {path}")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: the file is empty (0 bytes)")
    return path


def _reader_error(error: Exception) -> str:
    if isinstance(error, UnicodeDecodeError):
        return f"it is not UTF-8 text: byte {error.object[error.start]:#04x} at offset {error.start}; save it as UTF-8"
    if isinstance(error, pd.errors.EmptyDataError):
        return "no columns: the file has no header line"
    return f"{type(error).__name__}: {str(error)[:200]}"


def _check_header(columns: list[str], path: Path) -> None:
    duplicated = sorted({c for c in columns if columns.count(c) > 1})
    if duplicated:
        raise DataError(f"{path}: columns {duplicated} appear more than once; each column needs its own name")


def _npz_frame(path: Path) -> pd.DataFrame:
    arrays = np.load(path, allow_pickle=False)
    if "X" not in arrays:
        raise DataError(f"{path}: an .npz needs an array 'X' (and optionally 'y')")
    X = np.asarray(arrays["X"])
    if X.ndim != 2:
        raise DataError(f"{path}: 'X' must be 2-D, got shape {X.shape}")
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(X.shape[1])])
    if "y" in arrays:
        frame[NPZ_LABEL] = np.asarray(arrays["y"]).ravel()
    return frame


def column_names(path: str | Path) -> list[str]:
    """The columns of a file as written in its header/schema (duplicates kept: pandas would rename them)."""
    path = _readable(path)
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            with path.open(newline="", encoding="utf-8-sig") as handle:
                return next(csv.reader(handle), [])
        if suffix in (".parquet", ".pq"):
            # pyarrow.parquet (~0.2 s) only for Parquet files
            import pyarrow.parquet as pq

            return list(pq.read_schema(path).names)
    except Exception as error:
        raise DataError(f"{path}: cannot be read as {suffix[1:]} ({_reader_error(error)})") from None
    return [str(c) for c in read_frame(path).columns]


def load_table(path: str | Path, label_column: str | None = None) -> Table:
    """Read a CSV/Parquet/.npz file into checked features and optional 0/1 labels.

    For .npz files the label column is `label` (from array `y`) unless told otherwise.
    """
    frame = read_frame(path)
    if label_column is None and Path(path).suffix.lower() == ".npz" and NPZ_LABEL in frame:
        label_column = NPZ_LABEL
    return table_from_frame(frame, label_column)


def table_from_frame(frame: pd.DataFrame, label_column: str | None = None, segment_column: str | None = None) -> Table:
    segments = None
    if segment_column is not None:
        segments = check_segments(frame, segment_column)
        frame = frame.drop(columns=[segment_column])
    labels = None
    if label_column is not None:
        if label_column not in frame.columns:
            raise DataError(f"label column {label_column!r} not found; columns are {list(frame.columns)}")
        labels = check_labels(frame[label_column])
        frame = frame.drop(columns=[label_column])
    return Table(check_features(frame), labels, segments)


def check_segments(frame: pd.DataFrame, column: str) -> pd.Series:
    if column not in frame.columns:
        raise DataError(f"segment column {column!r} not found; columns are {list(frame.columns)}")
    missing = int(frame[column].isna().sum())
    if missing:
        raise DataError(f"segment column {column!r} has {missing} empty values; every row needs a segment")
    return frame[column].astype(str).reset_index(drop=True).rename(column)


def check_features(frame: pd.DataFrame, min_rows: int = 2) -> pd.DataFrame:
    """Numeric, finite, non-empty; training needs 2+ rows, scoring one record is fine (min_rows=1)."""
    if frame.shape[0] == 0 or frame.shape[1] == 0:
        raise DataError(f"the table is empty ({frame.shape[0]} rows, {frame.shape[1]} feature columns)")
    non_numeric = [
        str(c)
        for c in frame.columns
        if not pd.api.types.is_numeric_dtype(frame[c]) or pd.api.types.is_bool_dtype(frame[c])
    ]
    if non_numeric:
        raise DataError(f"non-numeric feature columns: {non_numeric} (only numeric features are supported)")
    values = frame.to_numpy(dtype=np.float64)
    bad = ~np.isfinite(values)
    if bad.any():
        columns = [str(c) for c in frame.columns[bad.any(axis=0)]]
        raise DataError(f"NaN or infinite values in columns {columns} ({int(bad.sum())} cells)")
    if frame.shape[0] < min_rows:
        raise DataError(f"the table has a single row; at least {min_rows} are needed")
    frame = frame.copy()
    frame.columns = [str(c) for c in frame.columns]
    return frame


def check_labels(labels: pd.Series) -> np.ndarray:
    """0 (normal), 1 (anomaly) or an empty cell (not reviewed, returned as UNLABELLED); anything else is refused."""
    missing = labels.isna() | labels.astype(str).str.strip().eq("")
    values = pd.to_numeric(labels.where(~missing), errors="coerce")
    invalid = sorted({str(v) for v, bad in zip(labels, ~missing & ~values.isin([0, 1])) if bad})
    if invalid:
        raise DataError(
            f"label column {labels.name!r} must hold 0 (normal), 1 (anomaly) or an empty cell (not reviewed); "
            f"found {invalid[:10]}"
        )
    return values.fillna(UNLABELLED).to_numpy(dtype=np.int8)


def split_table(
    table: Table, test_fraction: float, seed: int, candidates: np.ndarray | None = None
) -> tuple[Table, Table]:
    """Deterministic split, stratified on the labels when some rows of both classes are labelled. With `candidates`
    (a boolean mask), the held-out rows are drawn from those rows only; every other row trains."""
    pool = np.arange(len(table)) if candidates is None else np.flatnonzero(candidates)
    if len(pool) < 2:
        raise DataError(f"{len(pool)} rows may be held out for evaluation; at least 2 are needed")
    labels = None if table.labels is None else table.labels[pool]
    from sklearn.model_selection import train_test_split  # here: scoring reads data too, and needs no sklearn

    from anomaly_distill.metrics import has_both_classes

    # Stratified on every label value, "not reviewed" included: held-out rows get their share of the labelled ones.
    counts = np.unique(labels, return_counts=True)[1] if labels is not None else None
    stratify = labels if has_both_classes(labels) and counts.min() >= 2 else None
    _, test = train_test_split(pool, test_size=test_fraction, random_state=seed, stratify=stratify)
    train = np.setdiff1d(np.arange(len(table)), test)
    return table.take(train), table.take(np.sort(test))


class Preprocessor:
    """Drops constant columns and robust-scales the rest, with statistics from training rows only."""

    def fit(self, features: pd.DataFrame) -> "Preprocessor":
        values = features.to_numpy(dtype=np.float64)
        constant = np.ptp(values, axis=0) == 0
        self.input_columns = list(features.columns)
        self.dropped_columns = [c for c, k in zip(self.input_columns, constant) if k]
        self.columns = [c for c, k in zip(self.input_columns, constant) if not k]
        if len(self.columns) < 2:
            raise DataError(
                f"fewer than 2 features left after dropping constant columns "
                f"{self.dropped_columns} (kept {self.columns})"
            )
        self.constant_values = {c: float(v) for c, v, k in zip(self.input_columns, values[0], constant) if k}
        self._kept_positions = np.flatnonzero(~constant)
        kept = values[:, ~constant]
        self.center = np.median(kept, axis=0)
        q75, q25 = np.percentile(kept, [75, 25], axis=0)
        scale = q75 - q25
        # Many real features are mostly-constant (IQR 0): fall back to std, which is > 0 here.
        scale = np.where(scale > 0, scale, kept.std(axis=0))
        self.scale = scale
        return self

    def transform(self, features: pd.DataFrame) -> np.ndarray:
        missing = [c for c in self.columns if c not in features.columns]
        if missing:
            raise DataError(f"missing feature columns: {missing}")
        return self._scale(features[self.columns].to_numpy(dtype=np.float64))

    def transform_array(self, raw: np.ndarray) -> np.ndarray:
        """Like `transform`, for an array holding all input columns in their original order."""
        return self._scale(np.asarray(raw)[:, self._kept_positions])

    def _scale(self, values: np.ndarray) -> np.ndarray:
        return ((values - self.center) / self.scale).astype(np.float32)

    def inverse_transform(self, scaled: np.ndarray) -> pd.DataFrame:
        values = scaled.astype(np.float64) * self.scale + self.center
        frame = pd.DataFrame(values, columns=self.columns)
        for column in self.dropped_columns:
            frame[column] = self.constant_values[column]
        return frame[self.input_columns]


def fit_preprocessor(features: pd.DataFrame) -> Preprocessor:
    return Preprocessor().fit(features)


def frame_digest(frame: pd.DataFrame, labels: np.ndarray | None = None) -> str:
    """Content hash of every cell, the column names and the labels: the cache key of trained teachers."""
    digest = hashlib.sha256(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    digest.update("\x1f".join(map(str, frame.columns)).encode())
    if labels is not None:
        digest.update(np.ascontiguousarray(labels).tobytes())
    return digest.hexdigest()[:16]
