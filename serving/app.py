"""Online scoring: FastAPI app serving the registry's champion, logging every scored row to the live store.

A request is answered once its rows are in the write-ahead log (`stores/wal.py`); when they cannot be written
(disk full) it is answered 503 with the reason, and nothing of it is kept. Rows of a plain tabular model
go JSON → float array → student → log line without a DataFrame; anything else (series, segments, a record the
fast path does not take) goes through the model's pyfunc and data contract, which also name every problem.
"""

import asyncio
import hmac
import ipaddress
import json
import os
import threading
import time
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import mlflow.pyfunc
import numpy as np
import orjson
import pandas as pd
from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import Field, ValidationError

from anomaly_distill.config import StrictModel
from anomaly_distill.contract import FLOAT32_MAX, MAX_EXACT_INTEGER, check_records
from anomaly_distill.data import DataError
from anomaly_distill.models.student import SmallBatchScorer
from serving.images import image_detector, read_uploads, score_uploads
from serving.settings import ServeParameters
from stores import registry
from stores.live_store import ROW_ID, TIMESTAMP, LiveStore, live_store_url, scored_rows
from stores.series_state import SeriesStateStore
from stores.storage import StorageError
from stores.wal import WriteAheadLog, encode_columns, frame_columns

API_KEY_ENV = "ANOMALY_DISTILL_API_KEY"
SERVE_ENV = "ANOMALY_DISTILL_SERVE"  # the service's settings, for worker processes started by uvicorn
INLINE_BYTES = 16 << 10  # a plain tabular model's requests up to this size are scored on the event loop: a
# thread hand-off costs more than scoring a few rows; larger ones would hold up the other connections
SMALL_BATCH_ROWS = 1024  # numpy beats torch's per-operator overhead up to a few thousand rows (measured)
STORAGE_RETRY_SECONDS = 30  # Retry-After of a request refused because its rows could not be written


@dataclass(frozen=True)
class Loaded:
    """One registered version, swapped in whole so a request never mixes two versions."""

    model: object
    ref: object
    contract: object
    student: object | None  # the bare scoring model when the fast path applies
    images: object | None = None  # the ImageDetector of an image model (scored at /score-image)
    small: SmallBatchScorer | None = None  # the student in numpy, for requests of up to SMALL_BATCH_ROWS rows
    online: object | None = None  # the OnlineSeriesModel of an online series model (state per series)


def fast_path_student(model, contract):
    """The student's scoring model for a plain tabular model (no segments); None otherwise."""
    python_model = getattr(model, "unwrap_python_model", lambda: None)()
    detector = getattr(python_model, "detector", None)
    scoring = getattr(detector, "model", None)
    fits = getattr(detector, "contract_kind", None) == contract.kind
    if not contract.rows_score_alone or not fits or not hasattr(scoring, "score"):
        return None
    return detector if list(scoring.input_columns) == list(contract.input_columns) else None


def records_matrix(records: list, columns: list[str]) -> np.ndarray | None:
    """The records as a float64 matrix when every record is exactly the columns with finite numbers in range;
    None for anything else (the contract's check then says what is wrong)."""
    if not isinstance(records, list) or not records:
        return None
    try:
        rows = [[record[c] for c in columns] for record in records]
    except (KeyError, TypeError):
        return None
    width = len(columns)
    for record, row in zip(records, rows):
        if len(record) != width:
            return None
        for value in row:
            kind = type(value)
            if kind is not float and (kind is not int or abs(value) > MAX_EXACT_INTEGER):
                return None
    matrix = np.array(rows, dtype=np.float64)
    if not np.isfinite(matrix).all() or np.abs(matrix).max() > FLOAT32_MAX:
        return None
    return matrix


class ServedModel:
    """The model behind an alias, reloaded when the alias moves."""

    def __init__(self, model_name: str, alias: str):
        self.model_name, self.alias = model_name, alias
        self.loaded: Loaded | None = None
        self.refresh_lock = threading.Lock()
        self.checked_at: datetime | None = None  # last time the alias was read successfully
        self.refresh_error: str | None = None  # why the last check failed (the last good model keeps serving)

    @property
    def ref(self):
        return self.loaded.ref

    @property
    def contract(self):
        return self.loaded.contract

    def poll_once(self) -> None:
        """One check of the alias for the polling loop: an error is recorded, never raised."""
        try:
            self.refresh()
        except Exception as error:
            self.refresh_error = f"{datetime.now(timezone.utc):%Y-%m-%dT%H:%M:%SZ} {type(error).__name__}: {error}"

    def health(self, poll_seconds: float) -> dict:
        age = None if self.checked_at is None else (datetime.now(timezone.utc) - self.checked_at).total_seconds()
        stale = poll_seconds > 0 and (age is None or age > 3 * poll_seconds)
        return {
            "status": "stale" if stale else "ok",
            "model_name": self.model_name,
            "alias": self.alias,
            "version": self.ref.version,
            "features": self.contract.input_columns,
            "alias_checked_seconds_ago": None if age is None else round(age, 1),
            "last_refresh_error": self.refresh_error,
        }

    def refresh(self) -> bool:
        """Loads the alias's version if it changed; True when a new version was loaded."""
        with self.refresh_lock:
            ref = registry.resolve_model(f"models:/{self.model_name}@{self.alias}")
            changed = self.loaded is None or ref.version != self.loaded.ref.version
            if changed:
                model = mlflow.pyfunc.load_model(ref.uri)
                contract = registry.load_contract(ref.run_id)
                student = fast_path_student(model, contract)
                small = SmallBatchScorer.of(student.model) if student is not None else None
                detector = getattr(getattr(model, "unwrap_python_model", lambda: None)(), "detector", None)
                online = detector if contract.learns_online else None
                self.loaded = Loaded(model, ref, contract, student, image_detector(model), small, online)
            self.checked_at, self.refresh_error = datetime.now(timezone.utc), None
        return changed


MAX_EXPLAIN = 50


class ScoreQuery(StrictModel):
    """POST /score's query options: declared once, read and checked here, documented from this (an unknown option
    is a 422, not silently ignored)."""

    threshold: float | None = Field(
        None, allow_inf_nan=False, description="flag rows scoring above this instead of the model's threshold"
    )
    explain: int = Field(
        0, ge=0, le=MAX_EXPLAIN, description="for each flagged row, the k columns that raise its score most"
    )
    series: str = Field(
        "default",
        min_length=1,
        max_length=200,
        description="online series models: which stream these points continue (its state is kept)",
    )


def _query_parameter(name: str, schema: dict) -> dict:
    field = {key: value for key, value in schema.items() if key not in ("title", "description", "position")}
    if "anyOf" in field:  # an optional value: documented as the value's type
        field = next(option for option in field.pop("anyOf") if option.get("type") != "null") | field
        field.pop("default", None)
    described = ScoreQuery.model_fields[name].description
    return {"name": name, "in": "query", "required": False, "schema": field, "description": described}


SCORE_DOCS = {
    "parameters": [
        _query_parameter(name, schema) for name, schema in ScoreQuery.model_json_schema()["properties"].items()
    ],
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {"type": "array", "items": {"type": "object", "additionalProperties": {"type": "number"}}},
                "example": [{"f0": 0.1, "f1": 0.2}],
            }
        },
    },
}


def score_options(request: Request) -> ScoreQuery:
    """The query options, checked against `ScoreQuery`; a bad or unknown one is a 422 that names it."""
    try:
        return ScoreQuery.model_validate(dict(request.query_params))
    except ValidationError as error:
        problem = error.errors()[0]
        name = ".".join(map(str, problem["loc"])) or "query"
        detail = f"{name}: {problem['msg']}, got {problem.get('input')!r}"
        raise HTTPException(status_code=422, detail=detail) from None


def parse_records(body: bytes) -> list:
    """The request body as a list of records; not UTF-8, not JSON, a repeated key or not a list: a DataError."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise DataError(f"the body is not UTF-8: byte {body[error.start]:#04x} at offset {error.start}") from None
    try:
        records = json.loads(text, object_pairs_hook=_no_repeated_keys)
    except json.JSONDecodeError as error:
        raise DataError(f"the body is not JSON: {error}") from None
    if not isinstance(records, list):
        raise DataError(f"send a JSON list of records (objects of column: value), not a {type(records).__name__}")
    return records


def _no_repeated_keys(pairs: list[tuple[str, object]]) -> dict:
    keys = [key for key, _ in pairs]
    repeated = sorted({key for key in keys if keys.count(key) > 1})
    if repeated:
        raise DataError(f"columns {repeated} appear more than once in a record")
    return dict(pairs)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_api_key(request: Request, api_key: str | None) -> None:
    if api_key is None:
        return
    given = request.headers.get("authorization", "")
    if not hmac.compare_digest(given.encode(), f"Bearer {api_key}".encode()):
        raise HTTPException(
            status_code=401,
            detail="missing or wrong API key: send the header 'Authorization: Bearer <key>'",
            headers={"WWW-Authenticate": "Bearer"},
        )


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 past `limit` bytes (declared or streamed)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise HTTPException(status_code=413, detail=f"the body is {int(declared):,} bytes; the limit is {limit:,}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(status_code=413, detail=f"the body is over the limit of {limit:,} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


class LoneSender:
    """Whether one connection alone has been sending requests for `window` seconds. Its requests then write the
    log on the event loop (`WriteAheadLog.append_now`): with nobody to share a group commit with, the hand-off to
    the writer thread is pure cost. With several connections, waiting requests share one fsync instead."""

    def __init__(self, window: float = 0.05):
        self.window, self.sender, self.since = window, None, 0.0

    def alone(self, sender) -> bool:
        now = time.monotonic()
        if sender != self.sender:
            self.sender, self.since = sender, now
        return now - self.since > self.window


@dataclass
class Scored:
    answer: dict
    log_line: bytes


def scored_columns(ref, scores: np.ndarray, flags: np.ndarray, row_ids: list[str]) -> dict:
    """What the live store keeps beside a row's input columns."""
    n = len(scores)
    return {
        "score": scores,
        "is_anomaly": flags,
        "model_name": [ref.name] * n,
        "model_version": [ref.version] * n,
        ROW_ID: row_ids,
    }


def score_fast(loaded: Loaded, matrix: np.ndarray, threshold: float | None, explain: int = 0) -> Scored:
    student, ref = loaded.student, loaded.ref
    small = loaded.small is not None and len(matrix) <= SMALL_BATCH_ROWS
    scores = (loaded.small if small else student.model).score(matrix.astype(np.float32)).astype(np.float64)
    flags = scores > (student.threshold if threshold is None else threshold)
    row_ids = [uuid.uuid4().hex for _ in range(len(scores))]
    columns = dict(zip(student.model.input_columns, np.ascontiguousarray(matrix.T)))
    columns |= scored_columns(ref, scores, flags, row_ids)
    answer = {"model_name": ref.name, "model_version": ref.version, "scores": scores, "is_anomaly": flags}
    if explain:
        # explanations (torch's autograd) only when asked for
        from anomaly_distill.tabular.explain import EXPLANATION, explain_rows

        texts = explain_rows(student.model, matrix.astype(np.float32), flags, explain).tolist()
        columns[EXPLANATION] = answer["explanations"] = texts
    return Scored(answer | {"row_ids": row_ids}, encode_columns(columns, time.time_ns()))


def score_checked(loaded: Loaded, records: list, threshold: float | None, explain: int = 0) -> Scored:
    """Any model and any records, through the data contract and the pyfunc (which name what is wrong)."""
    features = check_records(loaded.contract, records)
    params = ({} if threshold is None else {"threshold": threshold}) | ({"explain": explain} if explain else {})
    scored = loaded.model.predict(features, params=params or None)
    if explain and "explanation" not in scored:  # MLflow drops a parameter the version's signature lacks
        raise DataError(f"v{loaded.ref.version} was registered before explanations; a newer version gives them")
    return scored_answer(loaded, features, scored, explain)


def score_online(loaded: Loaded, body: bytes, series: str, threshold: float | None, states, wal) -> Scored:
    """An online series model: the records are the series' next points; they are scored from its stored state,
    which moves on past them (stores/series_state.py), so the service learns as it scores. Plain records (the
    model's columns, ISO timestamps, numbers) skip pandas; anything else goes through the data contract.
    The log line is written here, with the state: one is kept exactly when the other is."""
    records, model, contract = parse_records(body), loaded.online, loaded.contract
    plain = online_points(records, contract)
    if plain is None:
        features = check_records(contract, records)
        sent = features[contract.timestamp_column].tolist()
        stamps = pd.to_datetime(features[contract.timestamp_column], format="mixed", utc=True).dt.to_pydatetime()
        plain = sent, list(stamps), features[contract.value_columns].to_numpy(dtype=np.float64)
    sent, stamps, values = plain
    ref, limit = loaded.ref, model.threshold if threshold is None else threshold

    def log_with_state(alarms: np.ndarray, calibrated: np.ndarray, commit_state) -> Scored:
        scored = online_answer(ref, contract, series, sent, values, alarms >= limit, calibrated)
        wal.append_then(scored.log_line, commit_state)
        return scored

    return states.advance(model, ref.name, ref.version, series, stamps, values, sent[0], log_with_state)


def online_answer(ref, contract, series: str, sent: list, values: np.ndarray, flags, calibrated) -> Scored:
    row_ids = [uuid.uuid4().hex for _ in range(len(values))]
    columns = {contract.timestamp_column: sent, **dict(zip(contract.value_columns, np.ascontiguousarray(values.T)))}
    columns |= scored_columns(ref, calibrated, flags, row_ids)
    answer = {
        "model_name": ref.name,
        "model_version": ref.version,
        "series": series,
        "scores": calibrated,
        "is_anomaly": flags,
        "row_ids": row_ids,
    }
    return Scored(answer, encode_columns(columns, time.time_ns()))


def online_points(records: list, contract) -> tuple[list, list[datetime], np.ndarray] | None:
    """The records' timestamps (as sent, and as UTC times) and values when every record is exactly the model's
    columns with an ISO timestamp and finite numbers, in increasing time; None for anything else (the contract
    check then names what is wrong)."""
    if not isinstance(records, list) or not records:
        return None
    column, width = contract.timestamp_column, len(contract.input_columns)
    sent, stamps = [], []
    for record in records:
        if not isinstance(record, dict) or len(record) != width or not isinstance(record.get(column), str):
            return None
        try:
            stamp = datetime.fromisoformat(record[column])
        except ValueError:
            return None
        stamp = stamp if stamp.tzinfo else stamp.replace(tzinfo=timezone.utc)
        if stamps and stamp <= stamps[-1]:
            return None
        sent.append(record[column])
        stamps.append(stamp)
    matrix = records_matrix([{c: r.get(c) for c in contract.value_columns} for r in records], contract.value_columns)
    return None if matrix is None else (sent, stamps, matrix)


def scored_answer(loaded: Loaded, features: pd.DataFrame, scored: pd.DataFrame, explain: int) -> Scored:
    rows = scored_rows(features, scored, loaded.ref.name, loaded.ref.version)
    rows[ROW_ID] = [uuid.uuid4().hex for _ in range(len(rows))]
    answer = {
        "model_name": loaded.ref.name,
        "model_version": loaded.ref.version,
        "scores": scored["score"].to_numpy(dtype=np.float64),
        "is_anomaly": scored["is_anomaly"].to_numpy(dtype=bool),
        "row_ids": rows[ROW_ID].tolist(),
    }
    if explain:
        answer["explanations"] = scored["explanation"].tolist()
    if len(scored) < len(features):
        answer["scored_from_record"] = len(features) - len(scored)  # earlier records only give history
    return Scored(
        answer, encode_columns(frame_columns(rows.drop(columns=[TIMESTAMP], errors="ignore")), time.time_ns())
    )


def score_body(loaded: Loaded, body: bytes, threshold: float | None, explain: int = 0) -> Scored:
    records = parse_records(body)
    matrix = records_matrix(records, loaded.contract.input_columns) if loaded.student else None
    if matrix is not None:
        return score_fast(loaded, matrix, threshold, explain)
    return score_checked(loaded, records, threshold, explain)


def create_app(model_name: str, api_key: str | None = None, **settings) -> "DirectScore":
    """`settings`: any of `ServeParameters`' (its defaults, its checks: an unknown one is an error). `api_key`:
    when given, /score and /reload need `Authorization: Bearer <api_key>`."""
    listening = sorted(set(settings) & {"host", "port", "workers"})
    if listening:
        raise TypeError(f"create_app: {listening} are uvicorn's (serve-api), not the app's")
    serve = ServeParameters(model_name=model_name, **settings)
    model_name, alias, live_store, wal_dir = serve.model_name, serve.alias, serve.live_store, serve.wal_dir
    poll_seconds, max_body_bytes = serve.poll_seconds, serve.max_body_bytes
    served = ServedModel(model_name, alias)
    store = LiveStore(live_store_url(live_store), wal_dir)
    store.wal_dir = store.wal_dir or Path("live-wal")  # a remote store: the log stays on this machine's disk
    reload_token = store.wal_dir / ".reload"
    series_states = SeriesStateStore(store.wal_dir / "series-state.sqlite")
    state = {}
    sender = LoneSender()

    async def poll():
        """Runs for the service's life: a failed check is reported in /health and tried again next time."""
        while True:
            await asyncio.sleep(poll_seconds)
            await asyncio.to_thread(served.poll_once)

    async def follow_reloads():
        """A /reload answered by a sibling worker touches the token; every worker then reloads."""
        seen = _mtime(reload_token)
        while True:
            await asyncio.sleep(1.0)
            now = _mtime(reload_token)
            if now != seen:
                seen = now
                await asyncio.to_thread(served.poll_once)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        served.refresh()
        await asyncio.to_thread(store.compact)  # what a killed predecessor left in the log
        state["wal"] = WriteAheadLog(
            store.wal_dir, store.compact_segment, serve.wal_sync, seal_seconds=serve.seal_seconds
        )
        tasks = [asyncio.create_task(follow_reloads())]
        if poll_seconds > 0:
            tasks.append(asyncio.create_task(poll()))
        yield
        for task in tasks:
            task.cancel()
        await asyncio.to_thread(state["wal"].close)

    app = FastAPI(
        title="anomaly-distill scoring",
        lifespan=lifespan,
        description=f"Scores rows with {model_name}@{alias}; every scored row goes to the live store.",
    )

    @app.get("/health")
    def health() -> dict:
        """`status` is "stale" when the alias could not be checked for three polling periods."""
        return served.health(poll_seconds)

    @app.post("/score", openapi_extra=SCORE_DOCS)
    async def score(request: Request) -> Response:
        """A JSON list of records (objects of column: value); a series model takes a recent history, an online
        series model the next points of the stream named by `?series=` (default "default"), once each.
        The answer holds each scored row's `row_ids` (for `anomaly-distill feedback`); with `explain=k`, also
        `explanations`: for each flagged row the k columns that raise its score most ("" for the others)."""
        check_api_key(request, api_key)
        options = score_options(request)
        threshold, explain = options.threshold, options.explain
        body = await read_body(request, max_body_bytes)
        loaded = served.loaded
        if loaded.images is not None:
            detail = f"{loaded.ref.name} v{loaded.ref.version} scores images: POST them as files to /score-image"
            raise HTTPException(status_code=422, detail=detail)
        try:
            if loaded.online is not None:
                scored = await run_in_threadpool(
                    score_online, loaded, body, options.series, threshold, series_states, state["wal"]
                )
            else:
                if loaded.student is not None and len(body) <= INLINE_BYTES:
                    scored = score_body(loaded, body, threshold, explain)
                else:
                    scored = await run_in_threadpool(score_body, loaded, body, threshold, explain)
                await log_scored(scored.log_line, request.client)
        except StorageError as error:
            raise storage_unavailable(error) from None
        except DataError as error:
            raise HTTPException(status_code=422, detail=str(error)) from None
        return Response(orjson.dumps(scored.answer, option=orjson.OPT_SERIALIZE_NUMPY), media_type="application/json")

    async def log_scored(line: bytes, client) -> None:
        """Returns once the line is in the log (a StorageError if it could not be written)."""
        if not (sender.alone(client) and state["wal"].append_now(line)):
            await asyncio.wrap_future(state["wal"].submit(line))

    @app.post("/score-image")
    async def score_image(request: Request, threshold: float | None = None, maps: bool = True):
        """Images as multipart/form-data files (any field name; PNG or JPEG): each one's score, flag and, with
        `maps=true`, its anomaly map (size × size, in the teacher's standardised units). An image model only."""
        check_api_key(request, api_key)
        body = await read_body(request, max_body_bytes)
        loaded = served.loaded
        if loaded.images is None:
            detail = f"{loaded.ref.name} v{loaded.ref.version} scores records, not images: POST JSON to /score"
            raise HTTPException(status_code=422, detail=detail)
        try:
            uploads = await read_uploads(request.headers, body)
            answer, line = await run_in_threadpool(
                score_uploads, loaded.images, loaded.contract, loaded.ref, uploads, threshold, maps
            )
            await asyncio.wrap_future(state["wal"].submit(line))
        except StorageError as error:
            raise storage_unavailable(error) from None
        except DataError as error:
            raise HTTPException(status_code=422, detail=str(error)) from None
        return Response(orjson.dumps(answer, option=orjson.OPT_SERIALIZE_NUMPY), media_type="application/json")

    @app.post("/reload")
    def reload(request: Request) -> dict:
        check_api_key(request, api_key)
        try:
            changed = served.refresh()
        except Exception as error:  # the registry is away: keep serving what is loaded, and say so
            detail = f"the registry could not be read ({type(error).__name__}); still serving v{served.ref.version}"
            raise HTTPException(status_code=503, detail=detail) from None
        reload_token.touch()
        return {"reloaded": changed, "version": served.ref.version}

    return DirectScore(app, score)


def storage_unavailable(error: StorageError) -> HTTPException:
    """503, not 500: the request was fine and can be sent again once the disk has room."""
    return HTTPException(status_code=503, detail=str(error), headers={"Retry-After": str(STORAGE_RETRY_SECONDS)})


class DirectScore:
    """The service's ASGI app: POST /score goes straight to its endpoint, everything else through FastAPI.
    FastAPI's middleware, routing and parameter solving cost about as much as scoring one record (profiled); the
    endpoint reads its own query parameters, so nothing is lost. FastAPI still documents /score."""

    def __init__(self, app: FastAPI, score):
        self.app, self.score = app, score

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["path"] != "/score" or scope["method"] != "POST":
            return await self.app(scope, receive, send)
        try:
            response = await self.score(Request(scope, receive))
        except HTTPException as error:
            detail = orjson.dumps({"detail": error.detail})
            response = Response(detail, error.status_code, error.headers, media_type="application/json")
        await response(scope, receive, send)


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime_ns
    except FileNotFoundError:
        return None


def app_from_environment() -> "DirectScore":
    """The app a uvicorn worker process builds (`serve-api --workers N`): settings from $ANOMALY_DISTILL_SERVE,
    the key from $ANOMALY_DISTILL_API_KEY."""
    # torch only in a worker process, to pin its threads before the model loads
    import torch

    torch.set_num_threads(1)
    settings = json.loads(os.environ[SERVE_ENV])
    return create_app(**settings, api_key=os.environ.get(API_KEY_ENV) or None)
