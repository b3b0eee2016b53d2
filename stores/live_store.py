"""Append-only store of scored rows: Parquet files partitioned by date, on any fsspec URL (local path, s3://…).

Every append writes a new uniquely named file under a temporary name and renames it into place, so readers
never see half a file, a killed writer leaves only an ignored temp file, and concurrent writers cannot collide.
The online service writes through a write-ahead log (`stores/wal.py`) instead; `read` returns the rows of log
segments not yet compacted as well, so an acknowledged row is visible at once.
"""

import os
import uuid
from datetime import date, datetime, timezone
from pathlib import Path

import fsspec
import numpy as np
import pandas as pd
import pyarrow as pa
from fsspec.implementations.local import LocalFileSystem

from stores.table_files import StreamedTable
from stores.wal import SEGMENT_SUFFIX, decode_segment, segment_id, try_lock

TIMESTAMP, ROW_ID = "scored_at", "row_id"  # scored_at: not "timestamp", which series data often uses
LIVE_STORE_ENV = "ANOMALY_DISTILL_LIVE_STORE"


def live_store_url(url: str | None = None) -> str:
    return url or os.environ.get(LIVE_STORE_ENV) or "live-store"


class LiveStore:
    def __init__(self, url: str, wal_dir: str | None = None):
        self.url = url
        self.fs, self.root = fsspec.core.url_to_fs(url)
        self.wal_dir = Path(wal_dir) if wal_dir else default_wal_dir(self.fs, self.root)

    def append(self, frame: pd.DataFrame, when: datetime | None = None) -> pd.DataFrame:
        """Stamps the rows (time, and a new id unless they have one) and writes them atomically."""
        when = when or datetime.now(timezone.utc)
        stamped = frame.reset_index(drop=True).assign(**{TIMESTAMP: pd.Timestamp(when)})
        if ROW_ID not in stamped:
            stamped[ROW_ID] = [uuid.uuid4().hex for _ in range(len(frame))]
        self._write_part(stamped, when.date(), f"part-{when.strftime('%H%M%S%f')}-{uuid.uuid4().hex}.parquet")
        return stamped

    def _write_part(self, rows: pd.DataFrame, day: date, name: str) -> None:
        """One Parquet file in the day's folder, written under a temporary name and renamed into place."""
        with self.open_part(day, name) as part:
            part.write(pa.Table.from_pandas(rows, preserve_index=False))
            part.commit()

    def open_part(self, day: date, name: str | None = None) -> StreamedTable:
        """A part written batch by batch (a batch job's rows): invisible to readers until committed."""
        name = name or f"part-{datetime.now(timezone.utc).strftime('%H%M%S%f')}-{uuid.uuid4().hex}.parquet"
        return StreamedTable(self.fs, f"{self.root}/date={day.isoformat()}/{name}")

    def read(self, since: datetime | None = None, until: datetime | None = None) -> pd.DataFrame:
        logged, segments = self._read_segments()  # before the parts: a segment compacted meanwhile left its parts
        files = sorted(
            f
            for f in self.fs.glob(f"{self.root}/date=*/part-*.parquet")
            if _in_window(f, since, until) and _wal_segment_of(f) not in segments
        )
        frames = [logged] if len(logged) else []
        for path in files:
            with self.fs.open(path, "rb") as handle:
                frames.append(pd.read_parquet(handle))
        if not frames:
            return pd.DataFrame()
        frames = [f.assign(**{TIMESTAMP: pd.to_datetime(f[TIMESTAMP], utc=True).dt.as_unit("ns")}) for f in frames]
        rows = pd.concat(frames, ignore_index=True).sort_values(TIMESTAMP, kind="stable", ignore_index=True)
        if since is not None:
            rows = rows[rows[TIMESTAMP] >= pd.Timestamp(since)]
        if until is not None:
            rows = rows[rows[TIMESTAMP] < pd.Timestamp(until)]
        return rows.reset_index(drop=True)

    def _segment_paths(self) -> list[str]:
        return sorted(str(p) for p in self.wal_dir.glob(f"*{SEGMENT_SUFFIX}")) if self.wal_dir else []

    def _read_segments(self) -> tuple[pd.DataFrame, set[str]]:
        frames, read = [], set()
        for path in self._segment_paths():
            try:
                data = Path(path).read_bytes()
            except FileNotFoundError:  # compacted since listed: its parts are complete
                continue
            frames.append(decode_segment(data, TIMESTAMP))
            read.add(segment_id(path))
        frames = [f for f in frames if len(f)]
        return (pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()), read

    def compact_segment(self, path: str) -> bool:
        """Moves a sealed or orphaned log segment into the Parquet store; False when another process holds it."""
        handle = try_lock(path)
        if handle is None:
            return False
        try:
            rows = decode_segment(handle.read(), TIMESTAMP)
            for day, part in rows.groupby(rows[TIMESTAMP].dt.date) if len(rows) else ():
                self._write_part(part, day, f"part-wal-{segment_id(path)}.parquet")
            Path(path).unlink(missing_ok=True)  # only now: until here the segment is the truth
        finally:
            handle.close()
        return True

    def compact(self) -> int:
        """Compacts every segment no live writer holds (what a killed service left); the number compacted."""
        return sum(self.compact_segment(path) for path in self._segment_paths())


def default_wal_dir(fs, root: str) -> Path | None:
    """`<store>/_wal` for a local store; a remote store's service logs to ./live-wal (see `serve-api --wal-dir`)."""
    return Path(root) / "_wal" if isinstance(fs, LocalFileSystem) else None


def _wal_segment_of(path: str) -> str | None:
    name = path.rsplit("/", 1)[-1]
    return name[len("part-wal-") : -len(".parquet")] if name.startswith("part-wal-") else None


def _in_window(path: str, since: datetime | None, until: datetime | None) -> bool:
    day = path.rsplit("date=", 1)[1].split("/", 1)[0]
    return (since is None or day >= since.date().isoformat()) and (until is None or day <= until.date().isoformat())


def stamped_batch(
    rows: pd.DataFrame | list[pd.DataFrame], model_name: str, version: str, when: datetime, job_id: str, first_row: int
) -> pa.Table:
    """A batch job's scored rows as the store keeps them; row ids are the job's id and the row's number in the
    file (unique, and built in Arrow: a uuid per row would cost more than scoring it). `rows`: one frame, or
    frames of equal length side by side (not joined in pandas first: one copy less of every batch)."""
    # pyarrow.compute (~0.2 s) only for a batch job's rows
    import pyarrow.compute as pc

    frames = rows if isinstance(rows, list | tuple) else [rows]
    table = pa.Table.from_pandas(frames[0], preserve_index=False)
    for frame in frames[1:]:
        other = pa.Table.from_pandas(frame, preserve_index=False)
        for name, column in zip(other.column_names, other.columns):
            table = table.append_column(name, column)
    stamp = pa.scalar(pd.Timestamp(when).as_unit("us").to_pydatetime(), pa.timestamp("us", "UTC"))
    numbers = pc.cast(pa.array(np.arange(first_row, first_row + table.num_rows)), pa.string())
    columns = {
        "model_name": pa.repeat(pa.scalar(model_name), table.num_rows),
        "model_version": pa.repeat(pa.scalar(str(version)), table.num_rows),
        TIMESTAMP: pa.repeat(stamp, table.num_rows),
        ROW_ID: pc.binary_join_element_wise(f"{job_id}-", numbers, ""),
    }
    for name, column in columns.items():
        table = table.append_column(name, column)
    return table


def scored_rows(features: pd.DataFrame, scored: pd.DataFrame, model_name: str, version: str) -> pd.DataFrame:
    """Input rows beside their scores and the version that scored them; a series model scores only the points
    with a full window behind them (the last len(scored) rows)."""
    features = features.iloc[len(features) - len(scored) :].reset_index(drop=True)
    scored = scored.drop(columns=[c for c in scored.columns if c in features.columns])
    rows = pd.concat([features, scored.reset_index(drop=True)], axis=1)
    return rows.assign(model_name=model_name, model_version=version)
