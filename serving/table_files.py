"""One table file written batch by batch, under a temporary name, and renamed into place only on commit.

Readers never see half a file and a failed job leaves nothing behind: `abort` (or leaving the `with` block with an
error) removes the temporary file. Parquet (one row group per batch) or CSV, on any fsspec filesystem."""

import shutil

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

    def write(self, table: pa.Table) -> None:
        if self._writer is None:
            self.fs.makedirs(self.temporary.rsplit("/", 1)[0], exist_ok=True)
            # a local file is written by Arrow itself, not through a Python file object
            local = isinstance(self.fs, LocalFileSystem)
            self._handle = self.temporary if local else self.fs.open(self.temporary, "wb")
            self._writer = self._open_writer(table.schema)
        self._writer.write_table(table) if not self.csv else self._writer.write(table)

    def _open_writer(self, schema: pa.Schema):
        if self.csv:
            return pa_csv.CSVWriter(self._handle, schema)
        # Dictionaries only for text such as the model's name: for measurements and unique row ids one would be
        # built and thrown away (it made writing 4x slower)
        dictionary = [field.name for field in schema if pa.types.is_string(field.type) and field.name != "row_id"]
        return pq.ParquetWriter(self._handle, schema, use_dictionary=dictionary)

    def commit(self, copy_to: "StreamedTable | None" = None) -> None:
        """Closes the file and renames it into place (nothing is written when no batch came). `copy_to`: another
        file of the same format that gets a byte copy of this one first (cheaper than encoding the rows twice)."""
        if self._writer is None:
            return
        self._close()
        if copy_to is not None:
            copy_to.fs.makedirs(copy_to.temporary.rsplit("/", 1)[0], exist_ok=True)
            with self.fs.open(self.temporary, "rb") as source, copy_to.fs.open(copy_to.temporary, "wb") as target:
                shutil.copyfileobj(source, target, 16 << 20)
            copy_to.fs.mv(copy_to.temporary, copy_to.path)
        self.fs.mv(self.temporary, self.path)

    def abort(self) -> None:
        if self._writer is None:
            return
        self._close()
        if self.fs.exists(self.temporary):
            self.fs.rm(self.temporary)

    def _close(self) -> None:
        writer, self._writer = self._writer, None
        writer.close()
        if not isinstance(self._handle, str):
            self._handle.close()

    def __enter__(self) -> "StreamedTable":
        return self

    def __exit__(self, kind, error, traceback) -> None:
        self.abort()  # after commit there is nothing left to abort
