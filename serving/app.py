"""Online scoring: FastAPI app serving the registry's champion, logging every scored row to the live store."""

import asyncio
import json
import threading
from contextlib import asynccontextmanager
from datetime import datetime, timezone

import pandas as pd
from fastapi import FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool

from anomaly_distill.contract import MAX_EXACT_INTEGER, check_input
from anomaly_distill.data import DataError
from serving.live_store import LiveStore, live_store_url, scored_rows
from tasks import registry


class ServedModel:
    """The model behind an alias, reloaded when the alias moves."""

    def __init__(self, model_name: str, alias: str):
        self.model_name, self.alias = model_name, alias
        self.ref = None
        self.lock = threading.Lock()
        self.checked_at: datetime | None = None  # last time the alias was read successfully
        self.refresh_error: str | None = None  # why the last check failed (the last good model keeps serving)

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
        import mlflow.pyfunc

        ref = registry.resolve_model(f"models:/{self.model_name}@{self.alias}")
        if self.ref is None or ref.version != self.ref.version:
            model = mlflow.pyfunc.load_model(ref.uri)
            contract = registry.load_contract(ref.run_id)
            with self.lock:
                self.model, self.ref, self.contract = model, ref, contract
            changed = True
        else:
            changed = False
        self.checked_at, self.refresh_error = datetime.now(timezone.utc), None
        return changed

    def check(self, records: list) -> pd.DataFrame:
        """The records as the model's input rows (a series model: a recent history, oldest first)."""
        if not records:
            raise DataError("no records: send a JSON list of objects, one per row")
        expected = set(self.contract.input_columns)
        ignored = {getattr(self.contract, "label_column", None)}  # a training label sent along is ignored
        for i, record in enumerate(records):
            if not isinstance(record, dict):
                raise DataError(f"record {i} must be a JSON object of column: value, got {type(record).__name__}")
            keys = record.keys() - ignored
            if keys != expected:
                raise DataError(
                    f"record {i} must have exactly the model's columns; missing "
                    f"{sorted(expected - keys)}, unexpected {sorted(keys - expected)}"
                )
            for column, value in record.items():  # checked here: a column mixing ints and floats becomes float64
                if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_EXACT_INTEGER:
                    raise DataError(f"column {column!r}: integer {value} in row {i} has no exact float value")
        return check_input(self.contract, pd.DataFrame.from_records(records))


SCORE_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {"type": "array", "items": {"type": "object", "additionalProperties": {"type": "number"}}},
                "example": [{"f0": 0.1, "f1": 0.2}],
            }
        },
    }
}


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


def create_app(
    model_name: str, alias: str = "champion", live_store: str | None = None, poll_seconds: float = 30.0
) -> FastAPI:
    served = ServedModel(model_name, alias)
    store = LiveStore(live_store_url(live_store))

    async def poll():
        """Runs for the service's life: a failed check is reported in /health and tried again next time."""
        while True:
            await asyncio.sleep(poll_seconds)
            await asyncio.to_thread(served.poll_once)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        served.refresh()
        poller = asyncio.create_task(poll()) if poll_seconds > 0 else None
        yield
        if poller:
            poller.cancel()

    app = FastAPI(
        title="anomaly-distill scoring",
        lifespan=lifespan,
        description=f"Scores rows with {model_name}@{alias}; every scored row goes to the live store.",
    )

    @app.get("/health")
    def health() -> dict:
        """`status` is "stale" when the alias could not be checked for three polling periods."""
        return served.health(poll_seconds)

    @app.post("/score", openapi_extra=SCORE_BODY)
    async def score(request: Request, threshold: float | None = None):
        """A JSON list of records (objects of column: value); a series model takes a recent history."""
        body = await request.body()
        return await run_in_threadpool(score_records, body, threshold)

    def score_records(body: bytes, threshold: float | None) -> dict:
        with served.lock:
            model, ref = served.model, served.ref
        try:
            features = served.check(parse_records(body))
            scored = model.predict(features, params=None if threshold is None else {"threshold": threshold})
        except DataError as error:
            raise HTTPException(status_code=422, detail=str(error)) from None
        store.append(scored_rows(features, scored, ref.name, ref.version))
        answer = {
            "model_name": ref.name,
            "model_version": ref.version,
            "scores": scored["score"].astype(float).tolist(),
            "is_anomaly": scored["is_anomaly"].astype(bool).tolist(),
        }
        if len(scored) < len(features):
            answer["scored_from_record"] = len(features) - len(scored)  # earlier records only give history
        return answer

    @app.post("/reload")
    def reload() -> dict:
        try:
            changed = served.refresh()
        except Exception as error:  # the registry is away: keep serving what is loaded, and say so
            detail = f"the registry could not be read ({type(error).__name__}); still serving v{served.ref.version}"
            raise HTTPException(status_code=503, detail=detail) from None
        return {"reloaded": changed, "version": served.ref.version}

    return app
