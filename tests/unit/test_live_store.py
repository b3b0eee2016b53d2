import multiprocessing
import os
import signal
import time
from datetime import datetime, timedelta, timezone

import fsspec
import numpy as np
import pandas as pd
import pyarrow as pa
from fsspec.implementations.local import LocalFileSystem

from stores.live_store import ROW_ID, TIMESTAMP, LiveStore, stamped_batch
from stores.table_files import StreamedTable


def rows(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"a": rng.normal(size=n), "score": rng.normal(size=n), "model_version": "1"})


def test_append_and_read_back_by_window(tmp_path):
    store = LiveStore(str(tmp_path / "live"))
    day1 = datetime(2026, 11, 1, 12, tzinfo=timezone.utc)
    store.append(rows(5), when=day1)
    store.append(rows(7, 1), when=day1 + timedelta(days=1))
    everything = store.read()
    assert len(everything) == 12 and everything[ROW_ID].is_unique
    assert {"a", "score", "model_version", TIMESTAMP, ROW_ID} == set(everything.columns)
    assert len(store.read(since=day1 + timedelta(hours=1))) == 7
    assert len(store.read(until=day1 + timedelta(hours=1))) == 5
    assert store.read(since=day1 + timedelta(days=5)).empty


def _writer(url: str, seed: int, batches: int) -> None:
    store = LiveStore(url)
    for i in range(batches):
        store.append(rows(50, seed * 100 + i))


def test_concurrent_writers_lose_nothing(tmp_path):
    url = str(tmp_path / "live")
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_writer, args=(url, seed, 10)) for seed in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    stored = LiveStore(url).read()
    assert len(stored) == 4 * 10 * 50 and stored[ROW_ID].is_unique


def _endless_writer(url: str) -> None:
    store = LiveStore(url)
    big = rows(300_000)
    while True:
        store.append(big)


def test_killed_writer_leaves_complete_files_only(tmp_path):
    url = str(tmp_path / "live")
    LiveStore(url).append(rows(10))
    writer = multiprocessing.get_context("spawn").Process(target=_endless_writer, args=(url,))
    writer.start()
    deadline = time.time() + 120
    while len(LiveStore(url).read()) == 10:  # kill only after at least one append is complete
        assert time.time() < deadline, "the writer completed no append in 120 s"
        time.sleep(0.2)
    time.sleep(0.3)  # most likely in the middle of the next append
    os.kill(writer.pid, signal.SIGKILL)
    writer.join()
    stored = LiveStore(url).read()
    assert len(stored) > 10 and (len(stored) - 10) % 300_000 == 0  # whole appends only
    assert stored[ROW_ID].is_unique and stored["a"].notna().all()


def _batch(first: int, rows: int) -> pd.DataFrame:
    return pd.DataFrame({"f0": np.arange(first, first + rows, dtype=float), "score": 0.5, "is_anomaly": False})


def test_a_streamed_part_is_invisible_until_committed_and_gone_if_aborted(tmp_path):
    store = LiveStore(str(tmp_path / "store"))
    when = datetime(2026, 11, 29, tzinfo=timezone.utc)
    with store.open_part(when.date()) as part:
        for first in (0, 100):
            part.write(stamped_batch(_batch(first, 100), "m", "3", when, "job", first))
        assert store.read().empty  # written, not committed
    assert store.read().empty and not list((tmp_path / "store").rglob("*.tmp"))  # never committed: removed on leaving

    with store.open_part(when.date()) as part, StreamedTable(LocalFileSystem(), str(tmp_path / "out.parquet")) as out:
        part.mirror_to(out)
        for first in (0, 100, 200):
            part.write(
                stamped_batch(
                    [_batch(first, 100).drop(columns="is_anomaly"), _scored(100)], "m", "3", when, "job", first
                )
            )
        assert not (tmp_path / "out.parquet").exists()  # the mirror is committed with its file, not before
        part.commit()
    rows = store.read()
    assert len(rows) == 300 and rows[ROW_ID].tolist() == [f"job-{i}" for i in range(300)]
    assert (rows["model_version"] == "3").all() and (rows[TIMESTAMP] == pd.Timestamp(when)).all()
    assert (tmp_path / "out.parquet").read_bytes() == store_files(tmp_path)[0].read_bytes()
    assert not list(tmp_path.rglob("*.tmp"))


def _scored(rows: int) -> pd.DataFrame:
    return pd.DataFrame({"is_anomaly": np.zeros(rows, dtype=bool)})


def test_a_mirror_on_another_filesystem_is_copied_at_commit_and_an_abort_removes_both(tmp_path):
    """On a local disk the mirror follows the file as it grows; on any other filesystem it is copied at commit."""
    memory = fsspec.filesystem("memory")
    batches = [pa.table({"f0": np.arange(first, first + 1000, dtype=float)}) for first in range(0, 5000, 1000)]
    with StreamedTable(LocalFileSystem(), str(tmp_path / "part.parquet")) as part:
        remote = StreamedTable(memory, "/mirror-test/out.parquet")
        part.mirror_to(remote)
        for batch in batches:
            part.write(batch)
        part.commit()
    assert memory.cat("/mirror-test/out.parquet") == (tmp_path / "part.parquet").read_bytes()

    with StreamedTable(LocalFileSystem(), str(tmp_path / "again.parquet")) as part:
        part.mirror_to(StreamedTable(LocalFileSystem(), str(tmp_path / "copy.parquet")))
        for batch in batches:
            part.write(batch)
    assert not list(tmp_path.glob("*again*")) and not list(tmp_path.glob("*copy*"))  # aborted: neither file left


def store_files(tmp_path):
    return sorted((tmp_path / "store").rglob("part-*.parquet"))
