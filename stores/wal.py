"""Write-ahead log in front of the live store: a request is acknowledged once its rows are in the log.

Each serving process appends to its own segment file (`<dir>/<segment>.jsonl`, one JSON line per request) and holds
an exclusive `flock` on it while it is open. Appends from concurrent requests are written and fsynced together
(group commit), so a burst of requests costs one fsync. A segment is sealed when it is large or old, and compacted
into the date-partitioned Parquet store as `date=D/part-<segment>.parquet`; the segment file is deleted only after
every part is in place, and while it exists it — not its parts — is the truth (a crash mid-compaction leaves no
duplicates). A segment whose writer died (SIGKILL) is unlocked: whoever compacts next picks it up.

A write that fails (disk full, file too large) is cut off again, so the segment ends with the last acknowledged
line and the next append does not land behind half a line; the requests of the failed write get a StorageError.
"""

import fcntl
import os
import queue
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path

import numpy as np
import orjson
import pandas as pd

from stores.storage import storage_error

SEGMENT_SUFFIX = ".jsonl"


def encode_columns(columns: dict, scored_at_ns: int) -> bytes:
    """One log line: the scoring time (ns since the epoch, UTC) and the rows column by column (lists or
    contiguous numeric arrays)."""
    return orjson.dumps({"scored_at": scored_at_ns, "columns": columns}, option=orjson.OPT_SERIALIZE_NUMPY) + b"\n"


def frame_columns(frame: pd.DataFrame) -> dict:
    return {str(c): _column_values(frame[c]) for c in frame.columns}


def _column_values(values: pd.Series):
    array = values.to_numpy()
    return np.ascontiguousarray(array) if array.dtype.kind in "fiub" else values.tolist()


def decode_segment(data: bytes, timestamp_column: str) -> pd.DataFrame:
    """The rows of every complete line; a torn last line (a writer killed mid-write) was never acknowledged."""
    groups: dict[tuple, dict[str, list]] = {}  # lines with the same columns (one per model version's schema)
    for line in data.split(b"\n")[:-1]:  # the part after the last newline is incomplete
        entry = orjson.loads(line)
        columns = entry["columns"]
        collected = groups.setdefault(tuple(columns), {name: [] for name in [*columns, timestamp_column]})
        for name, values in columns.items():
            collected[name].extend(values)
        collected[timestamp_column].extend([entry["scored_at"]] * len(next(iter(columns.values()))))
    frames = []
    for collected in groups.values():
        frame = pd.DataFrame(collected)
        frame[timestamp_column] = pd.to_datetime(frame[timestamp_column], unit="ns", utc=True)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def segment_id(path: str) -> str:
    return Path(path).name.removesuffix(SEGMENT_SUFFIX)


class WriteAheadLog:
    """The appending side, one per process: `submit(line)` returns a future that completes once the line is
    durable (written and, with `sync`, fsynced). A background thread groups what is waiting into one write."""

    def __init__(
        self, directory: str | Path, compact, sync: bool = True, seal_bytes: int = 32 << 20, seal_seconds: float = 60.0
    ):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.compact, self.sync = compact, sync
        self.seal_bytes, self.seal_seconds = seal_bytes, seal_seconds
        self.pending: queue.Queue = queue.Queue()
        self.segment = None
        self.written = 0  # bytes of the open segment that are durable: where a failed write is cut back to
        self.closed = False
        self.lock = threading.Lock()  # one writer of the segment at a time: the writer thread or `append_now`
        self.sealed: queue.Queue = queue.Queue()  # compacted by their own thread: appends never wait for it
        self.writer = threading.Thread(target=self._write_loop, name="wal-writer", daemon=True)
        self.compactor = threading.Thread(target=self._compact_loop, name="wal-compactor", daemon=True)
        self.writer.start()
        self.compactor.start()

    def submit(self, line: bytes) -> Future:
        done: Future = Future()
        if self.closed:
            done.set_exception(RuntimeError("the write-ahead log is closed"))
        else:
            self.pending.put((line, done))
        return done

    def append_now(self, line: bytes) -> bool:
        """Writes (and fsyncs) the line on the caller's thread when no other append is waiting or being written;
        False, having written nothing, otherwise. Saves a lone request the two thread hand-offs of `submit`."""
        if not self.lock.acquire(blocking=False):
            return False
        try:
            if self.closed or not self.pending.empty():  # checked under the lock: the final seal takes it too
                return False
            self._write_lines([line])
        finally:
            self.lock.release()
        return True

    def append_then(self, line: bytes, commit: Callable[[], None]) -> None:
        """Writes (and fsyncs) the line on the caller's thread, then calls `commit` (what must be stored with it);
        if `commit` fails the line is cut off again, so the log holds the line exactly when `commit` succeeded."""
        with self.lock:
            if self.closed:
                raise RuntimeError("the write-ahead log is closed")
            self._write_lines([line])
            start = self.written - len(line)
            try:
                commit()
            except BaseException:
                self._cut_back(start)
                raise

    def append(self, line: bytes, timeout: float = 30.0) -> None:
        self.submit(line).result(timeout)

    def close(self) -> None:
        """Writes what is waiting, seals the open segment and compacts it."""
        self.closed = True
        self.pending.put(None)
        self.writer.join(60)
        self.sealed.put(None)
        self.compactor.join(120)

    def _write_loop(self) -> None:
        while True:
            try:
                first = self.pending.get(timeout=1.0)
            except queue.Empty:
                with self.lock:
                    self._seal_if_old()
                continue
            batch, stop = self._drain(first)
            with self.lock:
                if batch:
                    self._write(batch)
                self._seal_if_old()
                if stop:
                    self._seal()
                    return

    def _drain(self, first) -> tuple[list, bool]:
        batch, stop, item = [], False, first
        while True:
            if item is None:
                stop = True
            else:
                batch.append(item)
            try:
                item = self.pending.get_nowait()
            except queue.Empty:
                return batch, stop

    def _write(self, batch: list) -> None:
        try:
            self._write_lines([line for line, _ in batch])
        except Exception as error:  # nothing is acknowledged that is not in the log
            for _, done in batch:
                done.set_exception(error)
            return
        for _, done in batch:
            done.set_result(None)

    def _write_lines(self, lines: list[bytes]) -> None:
        """Appends the lines durably, or raises a StorageError having left the segment as it was."""
        try:
            data = memoryview(b"".join(lines))
            fd = self._open_segment().fileno()
            while data:  # a write may take only part (the disk filling up); the next one then says why
                data = data[os.write(fd, data) :]
            if self.sync:
                os.fdatasync(fd)
        except OSError as error:
            self._cut_back(self.written)
            raise storage_error(
                f"the write-ahead log at {self.directory}", error, "nothing from this request was stored"
            ) from error
        self.written += sum(map(len, lines))

    def _cut_back(self, size: int) -> None:
        """Truncates the open segment to `size` bytes; if even that fails, seals it there (a torn last line is
        ignored by readers) so that no later line follows the torn one."""
        if self.segment is None:
            return
        try:
            os.ftruncate(self.segment.fileno(), size)
            self.written = size
        except OSError:
            self._seal()

    def _open_segment(self):
        if self.segment is None:
            name = f"{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}-{uuid.uuid4().hex[:12]}{SEGMENT_SUFFIX}"
            # unbuffered: a failed write must not leave bytes in a buffer that a later flush or close would write
            self.segment = open(self.directory / name, "ab", buffering=0)
            fcntl.flock(self.segment.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            self.opened_at, self.written = time.monotonic(), 0
        return self.segment

    def _seal_if_old(self) -> None:
        if self.segment is not None and (
            self.written >= self.seal_bytes or time.monotonic() - self.opened_at >= self.seal_seconds
        ):
            self._seal()

    def _seal(self) -> None:
        if self.segment is None:
            return
        path = self.segment.name
        self.segment.close()  # releases the lock: the segment may now be compacted
        self.segment = None
        self.sealed.put(path)

    def _compact_loop(self) -> None:
        while (path := self.sealed.get()) is not None:
            try:
                self.compact(path)
            except Exception:  # the segment stays; the next compaction (or any reader) still has its rows
                pass


def try_lock(path: str):
    """An open, exclusively locked handle on the segment, or None (its writer or another compactor holds it,
    or it is already gone)."""
    try:
        handle = open(path, "rb")
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    return handle
