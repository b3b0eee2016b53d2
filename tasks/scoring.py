"""Prefect tasks for scoring with a registered model: resolve, check against its contract, score, store."""

import functools
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from datetime import datetime, timezone
from queue import Full, Queue
from types import SimpleNamespace

import fsspec
import mlflow.pyfunc
import pandas as pd
import pyarrow as pa
from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.context import FlowRunContext
from tqdm import tqdm

from anomaly_distill.contract import AnyContract, TabularContract, check_input
from anomaly_distill.data import DataError, iter_frames
from anomaly_distill.detector import predict
from stores import registry
from stores.live_store import ROW_ID, TIMESTAMP, LiveStore, scored_rows, stamped_batch
from stores.registry import ModelRef
from stores.storage import storage_error
from stores.table_files import StreamedTable


@task(cache_policy=NO_CACHE)
def load_contract(model: ModelRef) -> AnyContract:
    return registry.load_contract(model.run_id)


def overlap(contract: AnyContract) -> int:
    """Rows each scoring chunk repeats from the previous one: a series point needs its window's history."""
    return contract.context_rows


@task(cache_policy=NO_CACHE)
def validate_input(frame: pd.DataFrame, contract: AnyContract) -> pd.DataFrame:
    return check_input(contract, frame)


_LOADING = threading.Lock()


def load_pyfunc(model_uri: str):
    """One load per process (a Dask worker scores many chunks with it), also when threads ask at once."""
    with _LOADING:
        return _load_pyfunc(model_uri)


@functools.lru_cache(maxsize=4)
def _load_pyfunc(model_uri: str):
    # No requirements check here: it reads every installed package's metadata (1-2 s of each batch job) to warn of
    # version differences; `serve-api`, which loads a model once for a long time, still warns.
    return mlflow.pyfunc.load_model(model_uri, suppress_warnings=True)


@task(cache_policy=NO_CACHE)
def score_chunk(model_uri: str, chunk: pd.DataFrame, threshold: float | None) -> pd.DataFrame:
    return load_pyfunc(model_uri).predict(chunk, params=None if threshold is None else {"threshold": threshold})


def score_in_chunks(
    model_uri: str, features: pd.DataFrame, chunk_rows: int, threshold: float | None, overlap: int = 0
) -> tuple:
    """Chunks go to the flow's task runner (threads, or a Dask cluster); returns (scores, rows per second).

    With `overlap`, each chunk also carries that many rows before it (series windows), scored only once."""
    start = time.perf_counter()
    futures = [
        score_chunk.submit(model_uri, features.iloc[max(begin - overlap, 0) : begin + chunk_rows], threshold)
        for begin in range(0, len(features), chunk_rows)
    ]
    parts = [future.result() for future in tqdm(futures, desc="scoring", unit="chunk")]
    seconds = time.perf_counter() - start
    return pd.concat(parts, ignore_index=True), len(features) / max(seconds, 1e-9)


@task(cache_policy=NO_CACHE)
def store_scored(
    features: pd.DataFrame, scored: pd.DataFrame, model: ModelRef, live_url: str, out_path: str | None = None
) -> pd.DataFrame:
    """The scored rows, stamped, into the output file (when given) and then the live store: a failure between the
    two leaves a file the user can regenerate, never stored rows that a rerun would store twice."""
    when = datetime.now(timezone.utc)
    rows = scored_rows(features, scored, model.name, model.version)
    rows[ROW_ID] = [uuid.uuid4().hex for _ in range(len(rows))]
    if out_path:
        write_table_file(rows.assign(**{TIMESTAMP: pd.Timestamp(when)}), out_path)
    try:
        return LiveStore(live_url).append(rows, when)
    except OSError as error:
        raise storage_error(f"the live store at {live_url}", error) from error


@task(cache_policy=NO_CACHE)
def write_output(stored: pd.DataFrame, path: str) -> None:
    write_table_file(stored, path)


def write_table_file(stored: pd.DataFrame, path: str, what: str = "the output file") -> None:
    """CSV or Parquet (by the name), written under a temporary name and renamed into place: a failed write (disk
    full) leaves no file."""
    fs, target = fsspec.core.url_to_fs(path)
    folder, name = target.rsplit("/", 1) if "/" in target else (".", target)
    temporary = f"{folder}/.{name}.tmp"
    try:
        with fs.open(temporary, "wb") as handle:
            (stored.to_parquet if path.endswith((".parquet", ".pq")) else stored.to_csv)(handle, index=False)
        fs.mv(temporary, target)
    except OSError as error:
        with suppress(OSError):
            fs.rm(temporary)
        raise storage_error(f"{what} {path}", error) from error


def score_batch(
    model_uri: str, contract: TabularContract, batch: pd.DataFrame, first_row: int, options: tuple, stamp
) -> tuple:
    """One batch of a streamed file, checked (errors name the file's row), scored and stamped as the live store
    keeps it (here, not in the writing thread, which the file's reading and encoding keep busy): (rows, anomalies).
    """
    rows = check_input(contract, batch, first_row)
    threshold, explain = options  # (threshold override or None, columns to name per flagged row)
    scored = predict(load_pyfunc(model_uri).unwrap_python_model().detector, rows, threshold, explain)
    table = stamped_batch([rows, scored], first_row=first_row, **stamp)
    return table, int(scored["is_anomaly"].sum())


@contextmanager
def batch_executor(task_runner: str):
    """Where batches are scored: two local threads, or the Dask cluster of the flow's Dask task runner.

    Plain futures, not a Prefect task per batch: Prefect keeps recent task results in memory (RSS grew by 600 MB
    over 50 batches) and each task run costs API calls; the flow's own tasks and logs still show the run."""
    if task_runner == "dask":
        client = FlowRunContext.get().task_runner.client
        yield SimpleNamespace(submit=functools.partial(client.submit, pure=False))  # pure: would hash each batch
        return
    with ThreadPoolExecutor(2, thread_name_prefix="score") as pool:
        yield pool


def score_stream(
    executor, model_uri: str, contract, path: str, rows: int, options: tuple, stamp, ahead: int = 2
) -> Iterator:
    """Batches go to the executor as they are read, at most `ahead` in flight; results come back in file order."""
    pending = deque()
    for first_row, batch in read_ahead(iter_frames(path, rows)):
        pending.append(executor.submit(score_batch, model_uri, contract, batch, first_row, options, stamp))
        while len(pending) > ahead:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


def read_ahead(items: Iterator, depth: int = 1) -> Iterator:
    """The items of `items`, produced on a thread up to `depth` ahead: the file is read (Arrow decodes without the
    GIL) while the caller encodes what it writes. Errors come out where the item would have."""
    queue, stop, end = Queue(depth), threading.Event(), object()

    def put(entry) -> bool:
        while not stop.is_set():  # the consumer may have left: then stop reading
            try:
                queue.put(entry, timeout=0.1)
                return True
            except Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put((item, None)):
                    return
            put((end, None))
        except BaseException as error:
            put((end, error))

    threading.Thread(target=produce, name="read-ahead", daemon=True).start()
    try:
        while True:
            item, error = queue.get()
            if error is not None:
                raise error
            if item is end:
                return
            yield item
    finally:
        stop.set()


class ScoredOutputs:
    """The live store's part and the output file of one batch job, both invisible until every batch is scored.

    The output file is committed before the live store's part: a failure between the two leaves a file the user
    can regenerate, never stored rows that a rerun would store twice."""

    def __init__(self, model: ModelRef, live_url: str, out_path: str | None):
        self.model, self.when, self.job_id = model, datetime.now(timezone.utc), uuid.uuid4().hex
        self.live_url, self.out_path = live_url, out_path
        self.part = LiveStore(live_url).open_part(self.when.date())
        self.out = None
        if out_path:
            out = StreamedTable(*fsspec.core.url_to_fs(out_path))
            if out.csv:
                self.out = out
            else:
                self.part.mirror_to(out)  # Parquet out: a byte copy of the part
        self.rows = self.anomalies = 0

    @property
    def stamp(self) -> dict:
        """What `stamped_batch` adds to every row of this job."""
        return {"model_name": self.model.name, "version": self.model.version, "when": self.when, "job_id": self.job_id}

    def write(self, table: pa.Table, anomalies: int) -> None:
        with self.refused(f"the live store at {self.live_url}"):
            self.part.write(table)
        if self.out is not None:
            with self.refused(f"the output file {self.out_path}"):
                self.out.write(table)
        self.rows += table.num_rows
        self.anomalies += anomalies

    def commit(self) -> None:
        if not self.rows:
            raise DataError("no rows to score")
        if self.out is not None:
            with self.refused(f"the output file {self.out_path}"):
                self.out.commit()
        mirrored = f" or the output file {self.out_path} copied from it" if self.out_path and self.out is None else ""
        with self.refused(f"the live store at {self.live_url}{mirrored}"):
            self.part.commit()

    @contextmanager
    def refused(self, what: str):
        """A write the disk refuses (full, file too large) becomes a StorageError naming the file: the command
        then exits with its reason, and leaving the job removes every temporary file."""
        try:
            yield
        except OSError as error:
            raise storage_error(what, error, "nothing of this job was kept") from error

    def __enter__(self) -> "ScoredOutputs":
        return self

    def __exit__(self, kind, error, traceback) -> None:
        for file in (self.out, self.part):
            if file is not None:
                file.abort()


def score_file(
    model: ModelRef, contract, path: str, rows: int, options: tuple, live_url: str, out_path, task_runner: str
) -> dict:
    """Streams the file through the model into the output file and the live store; nothing is kept on error.
    Rows per second are timed from the first batch read (the model is loaded before)."""
    if task_runner != "dask":  # Dask workers load their own; this process would only hold a copy
        load_pyfunc(model.uri)
    start = time.perf_counter()
    with ScoredOutputs(model, live_url, out_path) as outputs, batch_executor(task_runner) as executor:
        for table, anomalies in score_stream(executor, model.uri, contract, path, rows, options, outputs.stamp):
            outputs.write(table, anomalies)
        outputs.commit()
    seconds = time.perf_counter() - start
    return {"rows": outputs.rows, "anomalies": outputs.anomalies, "rows_per_second": outputs.rows / seconds}
