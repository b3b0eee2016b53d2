"""Online scoring: FastAPI app serving the registry's champion, logging every scored row to the live store."""
import asyncio
import threading
from contextlib import asynccontextmanager

import pandas as pd
from fastapi import Body, FastAPI, HTTPException

from anomaly_distill.data import DataError, check_features
from anomaly_distill.live_store import LiveStore
from tasks import scoring, tracking
from tasks.training import CONTRACT_FILE


class ServedModel:
    """The model behind an alias, reloaded when the alias moves."""

    def __init__(self, model_name: str, alias: str):
        self.model_name, self.alias = model_name, alias
        self.ref = None
        self.lock = threading.Lock()

    def refresh(self) -> bool:
        """Loads the alias's version if it changed; True when a new version was loaded."""
        import mlflow.pyfunc

        ref = scoring.resolve_model(f"models:/{self.model_name}@{self.alias}")
        if self.ref is not None and ref.version == self.ref.version:
            return False
        model = mlflow.pyfunc.load_model(ref.uri)
        contract = tracking.load_json_artifact(ref.run_id, CONTRACT_FILE)
        features = contract["features"]
        if contract.get("modality") == "timeseries":
            features = [contract["timestamp_column"], *contract["value_columns"]]
        with self.lock:
            self.model, self.features, self.ref, self.contract = model, features, ref, contract
        return True

    def check(self, records: list[dict]) -> pd.DataFrame:
        if not records:
            raise DataError("no records: send a JSON list of objects, one per row")
        if self.contract.get("modality") == "timeseries":  # a recent history, oldest first
            return scoring.check_series_input(pd.DataFrame.from_records(records), self.contract)
        expected = set(self.features)
        for i, record in enumerate(records):
            if not isinstance(record, dict) or record.keys() != expected:
                keys = set(record) if isinstance(record, dict) else set()
                raise DataError(f"record {i} must have exactly the model's features; "
                                f"missing {sorted(expected - keys)}, unexpected {sorted(keys - expected)}")
        return check_features(pd.DataFrame.from_records(records, columns=self.features), min_rows=1)


def create_app(model_name: str, alias: str = "champion", live_store: str | None = None,
               poll_seconds: float = 30.0) -> FastAPI:
    served = ServedModel(model_name, alias)
    store = LiveStore(scoring.live_store_url(live_store))

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

    app = FastAPI(title="anomaly-distill scoring", lifespan=lifespan,
                  description=f"Scores rows with {model_name}@{alias}; every scored row goes to the live store.")

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok", "model_name": served.model_name, "alias": served.alias,
                "version": served.ref.version, "features": served.features}

    @app.post("/score")
    def score(records: list[dict] = Body(..., examples=[[{"f0": 0.1, "f1": 0.2}]]), threshold: float | None = None):
        try:
            features = served.check(records)
        except DataError as error:
            raise HTTPException(status_code=422, detail=str(error)) from None
        with served.lock:
            model, ref = served.model, served.ref
        scored = model.predict(features, params=None if threshold is None else {"threshold": threshold})
        # a series model scores the points with a full window behind them: the last len(scored) records
        rows = pd.concat([features.iloc[len(features) - len(scored):].reset_index(drop=True),
                          scored.drop(columns=[c for c in scored.columns if c in features.columns])], axis=1)
        store.append(rows.assign(model_name=ref.name, model_version=ref.version))
        answer = {"model_name": ref.name, "model_version": ref.version,
                  "scores": scored["score"].astype(float).tolist(), "is_anomaly": scored["is_anomaly"].astype(bool).tolist()}
        if len(scored) < len(features):
            answer["scored_from_record"] = len(features) - len(scored)  # earlier records only give history
        return answer

    @app.post("/reload")
    def reload() -> dict:
        changed = served.refresh()
        return {"reloaded": changed, "version": served.ref.version}

    return app
