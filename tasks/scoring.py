"""Prefect tasks for scoring with a registered model: resolve, validate against its contract, score, store."""
import functools
import os
import time
from dataclasses import dataclass

import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE
from tqdm import tqdm

from anomaly_distill.data import DataError, check_segments
from anomaly_distill.timeseries import series_from_frame
from anomaly_distill.live_store import LiveStore
from tasks import registry, tracking
from tasks.training import CONTRACT_FILE
from tasks.validation import ValidationFailed, validate_frame

LIVE_STORE_ENV = "ANOMALY_DISTILL_LIVE_STORE"


def live_store_url(url: str | None = None) -> str:
    return url or os.environ.get(LIVE_STORE_ENV) or "live-store"


@dataclass
class ModelRef:
    uri: str
    name: str
    version: str
    run_id: str


def resolve_model(uri: str) -> ModelRef:
    """models:/NAME@alias or models:/NAME/VERSION -> the concrete version (so logs say which one scored)."""
    if not uri.startswith("models:/"):
        raise registry.RegistryError(f"model URI must look like models:/NAME@champion or models:/NAME/3, got {uri!r}")
    name, _, ref = uri.removeprefix("models:/").replace("@", "/@").partition("/")
    version = registry.version_by_alias(name, ref[1:]) if ref.startswith("@") else registry.get_version(name, ref)
    if version is None:
        raise registry.RegistryError(f"model {name!r} has no version with alias {ref[1:]!r}")
    return ModelRef(f"models:/{name}/{version.version}", name, str(version.version), version.run_id)


def check_scoring_input(frame: pd.DataFrame, contract: dict) -> pd.DataFrame:
    """The model's contract minus ranges; the training label column, if present, is ignored; a per-segment
    model also needs its segment column (any value: unseen segments go to the all-rows model)."""
    if contract.get("modality") == "timeseries":
        return check_series_input(frame, contract)
    features = frame.drop(columns=[contract["label_column"]], errors="ignore") if contract["label_column"] else frame
    segment = contract.get("segment_column")
    segments = check_segments(features, segment) if segment else None
    features = features.drop(columns=[segment]) if segment else features
    report = validate_frame(features, None, contract, check_ranges=False)
    if not report.success:
        raise ValidationFailed(report.failures)
    features = features[contract["features"]]
    return features if segments is None else features.assign(**{segment: segments.to_numpy()})


@task(cache_policy=NO_CACHE)
def load_contract(model: ModelRef) -> dict:
    return tracking.load_json_artifact(model.run_id, CONTRACT_FILE)


def check_series_input(frame: pd.DataFrame, contract: dict) -> pd.DataFrame:
    """A history frame: the timestamp and value columns the model was trained on, at least one window long."""
    columns = [contract["timestamp_column"], *contract["value_columns"]]
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataError(f"the series needs columns {columns}; missing {missing}")
    series_from_frame(frame, contract["timestamp_column"], contract["window"], contract["value_columns"],
                      contract.get("timestamp_policy", "strict"))
    return frame[columns].reset_index(drop=True)


def overlap(contract: dict) -> int:
    """Rows each scoring chunk repeats from the previous one: a series point needs its window's history."""
    return contract["window"] - 1 if contract.get("modality") == "timeseries" else 0


@task(cache_policy=NO_CACHE)
def validate_input(frame: pd.DataFrame, contract: dict) -> pd.DataFrame:
    return check_scoring_input(frame, contract)


@functools.lru_cache(maxsize=4)
def _pyfunc(model_uri: str):
    """One load per process (a Dask worker scores many chunks with it)."""
    import mlflow.pyfunc

    return mlflow.pyfunc.load_model(model_uri)


@task(cache_policy=NO_CACHE)
def score_chunk(model_uri: str, chunk: pd.DataFrame, threshold: float | None) -> pd.DataFrame:
    return _pyfunc(model_uri).predict(chunk, params=None if threshold is None else {"threshold": threshold})


def score_in_chunks(model_uri: str, features: pd.DataFrame, chunk_rows: int, threshold: float | None,
                    overlap: int = 0) -> tuple:
    """Chunks go to the flow's task runner (threads, or a Dask cluster); returns (scores, rows per second).

    With `overlap`, each chunk also carries that many rows before it (series windows), scored only once."""
    start = time.perf_counter()
    futures = [score_chunk.submit(model_uri, features.iloc[max(begin - overlap, 0):begin + chunk_rows], threshold)
               for begin in range(0, len(features), chunk_rows)]
    parts = [future.result() for future in tqdm(futures, desc="scoring", unit="chunk")]
    seconds = time.perf_counter() - start
    return pd.concat(parts, ignore_index=True), len(features) / max(seconds, 1e-9)


@task(cache_policy=NO_CACHE)
def store_scored(features: pd.DataFrame, scored: pd.DataFrame, model: ModelRef, live_url: str) -> pd.DataFrame:
    """Input rows beside their scores; a series model scores only points with a full window behind them."""
    features = features.iloc[len(features) - len(scored):].reset_index(drop=True)
    scored = scored.drop(columns=[c for c in scored.columns if c in features.columns])
    rows = pd.concat([features, scored.reset_index(drop=True)], axis=1)
    return LiveStore(live_url).append(rows.assign(model_name=model.name, model_version=model.version))


@task(cache_policy=NO_CACHE)
def write_output(stored: pd.DataFrame, path: str) -> None:
    (stored.to_parquet if path.endswith((".parquet", ".pq")) else stored.to_csv)(path, index=False)

