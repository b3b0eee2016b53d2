"""The write-ahead log in front of the live store: group commit, torn lines, compaction that cannot duplicate."""

import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from stores.live_store import ROW_ID, TIMESTAMP, LiveStore
from stores.wal import WriteAheadLog, encode_columns, frame_columns, try_lock

DAY = pd.Timestamp("2026-11-01T12:00:00Z")


def line(n: int, seed: int, when: pd.Timestamp = DAY) -> bytes:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "a": rng.normal(size=n),
            "score": rng.normal(size=n),
            "is_anomaly": rng.random(n) > 0.5,
            "model_version": "1",
            ROW_ID: [f"{seed}-{i}" for i in range(n)],
        }
    )
    return encode_columns(frame_columns(frame), when.value)


def segments(store: LiveStore) -> list[Path]:
    return sorted(store.wal_dir.glob("*.jsonl"))


def test_concurrent_appends_are_grouped_and_all_readable(tmp_path):
    store = LiveStore(str(tmp_path / "live"))
    wal = WriteAheadLog(store.wal_dir, store.compact_segment)
    writes = []
    original = wal._write
    wal._write = lambda batch: (writes.append(len(batch)), original(batch))

    def client(k):
        for i in range(25):
            wal.append(line(2, k * 100 + i))

    threads = [threading.Thread(target=client, args=(k,)) for k in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    stored = store.read()  # the open segment is read as it is: an acknowledged row is visible at once
    assert len(stored) == 8 * 25 * 2 and stored[ROW_ID].is_unique
    assert sum(writes) == 200 and len(writes) < 200  # some writes carried several requests
    wal.close()
    assert segments(store) == [] and len(store.read()) == 400  # sealed and compacted on close


def test_a_torn_last_line_is_ignored_and_the_rest_kept(tmp_path):
    store = LiveStore(str(tmp_path / "live"))
    store.wal_dir.mkdir(parents=True)
    whole = line(3, 1) + line(4, 2)
    (store.wal_dir / "dead.jsonl").write_bytes(whole + line(5, 3)[:-20])  # killed mid-write
    assert len(store.read()) == 7
    assert store.compact() == 1 and segments(store) == []
    stored = store.read()
    assert len(stored) == 7 and stored[TIMESTAMP].dt.tz is not None
    assert (stored[TIMESTAMP] == DAY).all()


def test_a_segment_held_by_its_writer_is_not_compacted_but_is_read(tmp_path):
    store = LiveStore(str(tmp_path / "live"))
    wal = WriteAheadLog(store.wal_dir, store.compact_segment, seal_seconds=3600)
    wal.append(line(3, 1))
    assert store.compact() == 0 and len(segments(store)) == 1
    assert len(store.read()) == 3
    wal.close()
    assert store.compact() == 0 and segments(store) == [] and len(store.read()) == 3


def test_a_crash_between_parts_and_delete_leaves_no_duplicates(tmp_path, monkeypatch):
    store = LiveStore(str(tmp_path / "live"))
    store.wal_dir.mkdir(parents=True)
    next_day = DAY + pd.Timedelta(days=1)
    (store.wal_dir / "seg.jsonl").write_bytes(line(3, 1) + line(4, 2, next_day))
    with monkeypatch.context() as patch:  # the parts are written, then the process dies before the delete
        patch.setattr(Path, "unlink", lambda self, missing_ok=False: (_ for _ in ()).throw(SystemExit))
        with pytest.raises(SystemExit):
            store.compact()
    assert len(list(store.wal_dir.parent.glob("date=*/part-wal-seg.parquet"))) == 2
    assert len(store.read()) == 7  # the segment is the truth while it exists
    assert store.compact() == 1 and len(store.read()) == 7
    assert len(store.read(since=next_day.to_pydatetime())) == 4


def test_rows_logged_and_rows_appended_read_back_alike(tmp_path):
    store = LiveStore(str(tmp_path / "live"))
    frame = pd.DataFrame({"a": [0.5, 1.5], "score": [0.1, 0.9], "is_anomaly": [False, True], "model_version": "1"})
    appended = store.append(frame)
    store.wal_dir.mkdir(parents=True)
    logged = frame.assign(**{ROW_ID: ["x", "y"]})
    (store.wal_dir / "s.jsonl").write_bytes(encode_columns(frame_columns(logged), time.time_ns()))
    stored = store.read()
    assert len(stored) == 4 and set(stored.columns) == set(appended.columns)
    store.compact()
    again = store.read()
    assert again.dtypes.to_dict() == stored.dtypes.to_dict()
    assert again["is_anomaly"].dtype == bool and again["a"].dtype == np.float64


def test_try_lock_fails_while_another_handle_holds_the_segment(tmp_path):
    path = tmp_path / "s.jsonl"
    path.write_bytes(b"")
    held = try_lock(str(path))
    assert held is not None and try_lock(str(path)) is None
    held.close()
    assert try_lock(str(path)) is not None and try_lock(str(tmp_path / "gone.jsonl")) is None


def test_append_now_writes_on_the_callers_thread_only_when_no_group_is_being_written(tmp_path):
    store = LiveStore(str(tmp_path / "live"))
    wal = WriteAheadLog(store.wal_dir, store.compact_segment)
    assert wal.append_now(line(3, 1))
    assert len(store.read()) == 3  # durable before it returned
    with wal.lock:  # the writer thread is writing a group: the caller must queue behind it instead
        assert not wal.append_now(line(3, 2))
    wal.append(line(1, 3))
    wal.close()
    assert not wal.append_now(line(3, 4))  # closed
    assert sorted(store.read()[ROW_ID]) == ["1-0", "1-1", "1-2", "3-0"]
