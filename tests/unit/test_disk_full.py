"""A full disk is an error, not a loss: the write-ahead log, the series state and table files keep exactly what
was acknowledged, and work again once there is room (a real tmpfs filled up, see tests/small_disk.py)."""

from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from stores.live_store import ROW_ID, LiveStore
from stores.series_state import SeriesStateStore
from stores.storage import StorageError
from stores.table_files import StreamedTable
from stores.wal import WriteAheadLog, encode_columns, frame_columns
from tests.small_disk import FULL_ERRORS, SmallDisk
from tests.unit.test_online import noisy, served_model

REFUSED = "|".join(FULL_ERRORS)


@pytest.fixture
def disk(tmp_path):
    small = SmallDisk(tmp_path / "disk")
    yield small
    small.close()


def line(rows: int, name: str) -> bytes:
    frame = pd.DataFrame({"a": np.arange(rows, dtype=float), ROW_ID: [f"{name}-{i}" for i in range(rows)]})
    return encode_columns(frame_columns(frame), pd.Timestamp("2026-11-01T12:00:00Z").value)


def segment_sizes(wal: WriteAheadLog) -> list[int]:
    return [p.stat().st_size for p in sorted(wal.directory.glob("*.jsonl"))]


def test_a_write_the_disk_refuses_is_cut_off_and_the_log_keeps_exactly_the_acknowledged_lines(disk):
    store = LiveStore(str(disk.path / "live"))
    wal = WriteAheadLog(store.wal_dir, store.compact_segment, seal_seconds=3600)
    wal.append(line(5, "one"))
    assert wal.append_now(line(5, "two"))
    before = segment_sizes(wal)
    disk.fill(leave=8 << 10)  # a line larger than the room left: part of it is written before the refusal
    with pytest.raises(StorageError, match=f"write-ahead log at .*({REFUSED}); nothing from this request was stored"):
        wal.append(line(20_000, "refused"))
    with pytest.raises(StorageError, match=REFUSED):
        wal.append_now(line(20_000, "refused-too"))
    assert segment_sizes(wal) == before  # no torn line for the next append to land behind
    disk.free()
    wal.append(line(5, "three"))
    expected = {f"{name}-{i}" for name in ("one", "two", "three") for i in range(5)}
    assert set(store.read()[ROW_ID]) == expected and len(store.read()) == 15
    wal.close()  # sealed and compacted into Parquet now that there is room
    assert set(store.read()[ROW_ID]) == expected and len(store.read()) == 15


def test_a_line_whose_commit_fails_is_cut_off_again(tmp_path):
    wal = WriteAheadLog(tmp_path / "wal", lambda path: None, seal_seconds=3600)
    wal.append(line(3, "kept"))
    before = segment_sizes(wal)

    def failing_commit():
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        wal.append_then(line(3, "cut"), failing_commit)
    assert segment_sizes(wal) == before
    wal.append_then(line(3, "committed"), lambda: None)
    assert segment_sizes(wal)[0] > before[0]


def stamps_from(start: int, n: int) -> list[datetime]:
    first = datetime(2031, 1, 1, tzinfo=timezone.utc)
    return [first + timedelta(minutes=5 * (start + i)) for i in range(n)]


def test_the_series_state_does_not_move_when_the_log_line_cannot_be_written(disk, tmp_path):
    model, values = served_model(), noisy(40, seed=5)[:, None]
    states = SeriesStateStore(tmp_path / "state.sqlite")
    wal = WriteAheadLog(disk.path / "wal", lambda path: None, seal_seconds=3600)

    def advance(start: int, n: int):
        def log(alarms, calibrated, commit):
            wal.append_then(line(2_000, f"points-{start}"), commit)  # over the page the last began
            return calibrated

        return states.advance(model, "m", "1", "s", stamps_from(start, n), values[start : start + n], "", log)

    taken = list(advance(0, 20))
    disk.fill()
    with pytest.raises(StorageError, match=REFUSED):
        advance(20, 20)
    assert states.summary("m")[0]["points"] == 20
    disk.free()
    taken += list(advance(20, 20))  # the same points again: scored from the state before the refused request
    np.testing.assert_allclose(taken, model.advance(None, values)[1], atol=1e-12)


def test_a_full_state_database_refuses_the_request_and_logs_nothing(tmp_path):
    model, values = served_model(), noisy(10, seed=6)[:, None]
    states = SeriesStateStore(tmp_path / "state.sqlite")
    wal = WriteAheadLog(tmp_path / "wal", lambda path: None, seal_seconds=3600)

    def log(alarms, calibrated, commit):
        wal.append_then(line(len(calibrated), "logged"), commit)

    states.advance(model, "m", "1", "first", stamps_from(0, 5), values[:5], "", log)
    before = segment_sizes(wal)
    pages = states.db.execute("PRAGMA page_count").fetchone()[0]
    states.db.execute(f"PRAGMA max_page_count = {pages}")  # SQLite's own SQLITE_FULL once a page is needed
    with pytest.raises(StorageError, match="series state at .*database or disk is full"):
        states.advance(model, "m", "1", "second", stamps_from(5, 5), values[5:], "", log)
    assert segment_sizes(wal) == before and [s["series"] for s in states.summary("m")] == ["first"]


def test_a_table_file_the_disk_refuses_leaves_nothing_behind(disk):
    fs = LiveStore(str(disk.path)).fs
    disk.fill(leave=64 << 10)
    batch = pa.table({"a": np.random.default_rng(0).normal(size=100_000)})
    with pytest.raises(OSError, match=REFUSED), StreamedTable(fs, str(disk.path / "out.parquet")) as table:
        for _ in range(20):
            table.write(batch)
        table.commit()
    assert [p.name for p in disk.path.iterdir() if p != disk.filler] == []
