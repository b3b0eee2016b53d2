"""Online scoring: FastAPI app serving the registry's champion, logging every scored row to the live store."""

import asyncio
import threading
from contextlib import asynccontextmanager

import pandas as pd
from fastapi import Body, FastAPI, HTTPException

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

    def refresh(self) -> bool:
        """Loads the alias's version if it changed; True when a new version was loaded."""
        import mlflow.pyfunc

        ref = registry.resolve_model(f"models:/{self.model_name}@{self.alias}")
        if self.ref is not None and ref.version == self.ref.version:
            return False
        model = mlflow.pyfunc.load_model(ref.uri)
        contract = registry.load_contract(ref.run_id)
        with self.lock:
            self.model, self.ref, self.contract = model, ref, contract
        return True

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


def create_app(
    model_name: str, alias: str = "champion", live_store: str | None = None, poll_seconds: float = 30.0
) -> FastAPI:
    served = ServedModel(model_name, alias)
    store = LiveStore(live_store_url(live_store))

    async def poll():
        while True:
            await asyncio.sleep(poll_seconds)
            await asyncio.to_thread(served.refresh)

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
        return {
            "status": "ok",
            "model_name": served.model_name,
            "alias": served.alias,
            "version": served.ref.version,
            "features": served.contract.input_columns,
        }

    @app.post("/score")
    def score(records: list = Body(..., examples=[[{"f0": 0.1, "f1": 0.2}]]), threshold: float | None = None):
        with served.lock:
            model, ref = served.model, served.ref
        try:
            features = served.check(records)
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
        changed = served.refresh()
        return {"reloaded": changed, "version": served.ref.version}

    return app
