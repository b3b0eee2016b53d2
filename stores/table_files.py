"""One table file written batch by batch, under a temporary name, and renamed into place only on commit.

Readers never see half a file and a failed job leaves nothing behind: `abort` (or leaving the `with` block with an
error) removes the temporary file, also when the disk is full and closing it fails too. Parquet (one row group per
batch) or CSV, on any fsspec filesystem."""

import errno
import os
import shutil
import threading

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem


class StreamedTable:
    def __init__(self, fs, path: str):
        self.fs, self.path = fs, path
        folder, name = path.rsplit("/", 1) if "/" in path else (".", path)
        self.temporary = f"{folder}/.{name}.tmp"
        self.csv = path.endswith(".csv")
        self._handle = self._writer = None
        self._started = False  # written to and not yet committed: abort has temporary files to remove
        self._mirror: StreamedTable | None = None
        self._follower: FileFollower | None = None

    def write(self, table: pa.Table) -> None:
        if self._writer is None:
            self._started = True
            self.fs.makedirs(self.temporary.rsplit("/", 1)[0], exist_ok=True)
            # a local file is written by Arrow itself, not through a Python file object
            local = isinstance(self.fs, LocalFileSystem)
            self._handle = self.temporary if local else self.fs.open(self.temporary, "wb")
            self._writer = self._open_writer(table.schema)
            mirror = self._mirror
            if mirror is not None:
                mirror.fs.makedirs(mirror.temporary.rsplit("/", 1)[0], exist_ok=True)
                if local and isinstance(mirror.fs, LocalFileSystem):
                    self._follower = FileFollower(self.temporary, mirror.temporary)
        self._writer.write_table(table) if not self.csv else self._writer.write(table)

    def _open_writer(self, schema: pa.Schema):
        if self.csv:
            return pa_csv.CSVWriter(self._handle, schema)
        # Dictionaries only for text such as the model's name and for the time a batch job scored its rows (one
        # value): for measurements and unique row ids one would be built and thrown away (4x slower writing)
        text = [field.name for field in schema if pa.types.is_string(field.type)]
        dictionary = [name for name in text if name != "row_id"] + [n for n in ("scored_at",) if n in schema.names]
        # Snappy only for text: measurements rarely compress (<1 % on the benchmark's) and it cost a quarter of the
        # writing time, the bottleneck of batch scoring
        compression = {field.name: "snappy" if field.name in text else "none" for field in schema}
        return pq.ParquetWriter(self._handle, schema, use_dictionary=dictionary, compression=compression)

    def mirror_to(self, target: "StreamedTable") -> None:
        """Makes `target` (same format) a byte copy of this file, committed with it: cheaper than encoding the
        rows twice. On a local disk the copy follows the file as it grows (a Parquet file is written front to
        back, never rewritten), so it is done when the file is; elsewhere it is made at commit."""
        self._mirror = target

    def commit(self) -> None:
        """Closes the file and renames it into place, its mirror first (nothing is written when no batch came)."""
        if not self._started:
            return
        self._close()
        mirror = self._mirror
        if mirror is not None:
            if self._follower is not None:
                self._follower.finish()
            else:
                with self.fs.open(self.temporary, "rb") as source, mirror.fs.open(mirror.temporary, "wb") as sink:
                    shutil.copyfileobj(source, sink, 16 << 20)
            mirror.fs.mv(mirror.temporary, mirror.path)
        self.fs.mv(self.temporary, self.path)
        self._started = False

    def abort(self) -> None:
        """Removes the temporary files of an uncommitted table; closing errors (a full disk) do not stop that."""
        if not self._started:
            return
        self._started = False
        try:
            self._close()
        except OSError:
            pass  # the file is being thrown away: what its last bytes were does not matter
        if self._follower is not None:
            self._follower.abandon()
        for table in (self, self._mirror):
            if table is not None and table.fs.exists(table.temporary):
                table.fs.rm(table.temporary)

    def _close(self) -> None:
        writer, self._writer = self._writer, None
        handle, self._handle = self._handle, None
        try:
            if writer is not None:
                writer.close()
        finally:
            if handle is not None and not isinstance(handle, str):
                handle.close()

    def __enter__(self) -> "StreamedTable":
        return self

    def __exit__(self, kind, error, traceback) -> None:
        self.abort()  # after commit there is nothing left to abort


class FileFollower:
    """Copies a local file to another while it is being appended to, in the kernel (`copy_file_range`), on a
    thread: the bytes below the file's current size are final. `finish` (after the writer closed) copies the rest."""

    def __init__(self, source: str, target: str):
        self._source, self._target = open(source, "rb"), open(target, "wb")
        self._copied = 0
        self._in_kernel = True
        self._done = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._follow, name="mirror", daemon=True)
        self._thread.start()

    def _follow(self) -> None:
        try:
            while not self._done.is_set():
                if not self._copy_available():
                    self._done.wait(0.05)
        except BaseException as error:
            self._error = error

    def _copy_available(self) -> bool:
        size = os.fstat(self._source.fileno()).st_size
        copied_any = size > self._copied
        while self._copied < size:
            count = self._copy(size - self._copied)
            if count == 0:
                break
            self._copied += count
        return copied_any

    def _copy(self, count: int) -> int:
        source, target, at = self._source.fileno(), self._target.fileno(), self._copied
        if self._in_kernel:
            try:
                return os.copy_file_range(source, target, count, at, at)
            except OSError as error:
                if error.errno not in (errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL):
                    raise
                self._in_kernel = False  # another filesystem (older kernels refuse to copy across): copy here
        return os.pwrite(target, os.pread(source, min(count, 16 << 20), at), at)

    def finish(self) -> None:
        self.stop()
        try:
            if self._error is not None:
                raise self._error
            self._copy_available()
            if self._copied != os.fstat(self._source.fileno()).st_size:
                raise OSError(f"copy of {self._source.name} ended at byte {self._copied}")
        finally:
            self._close()

    def stop(self) -> None:
        self._done.set()
        self._thread.join()

    def abandon(self) -> None:
        """Stops following and closes both files (an aborted job removes them)."""
        self.stop()
        self._close()

    def _close(self) -> None:
        self._source.close()
        self._target.close()
