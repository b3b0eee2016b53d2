"""Prefect tasks for scoring with a registered model: resolve, check against its contract, score, store."""

import functools
import time

import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE
from tqdm import tqdm

from anomaly_distill.contract import SeriesContract, TabularContract, check_input
from serving.live_store import LiveStore, scored_rows
from tasks import registry
from tasks.registry import ModelRef


@task(cache_policy=NO_CACHE)
def load_contract(model: ModelRef) -> TabularContract | SeriesContract:
    return registry.load_contract(model.run_id)


def overlap(contract: TabularContract | SeriesContract) -> int:
    """Rows each scoring chunk repeats from the previous one: a series point needs its window's history."""
    return contract.window - 1 if isinstance(contract, SeriesContract) else 0


@task(cache_policy=NO_CACHE)
def validate_input(frame: pd.DataFrame, contract: TabularContract | SeriesContract) -> pd.DataFrame:
    return check_input(contract, frame)


@functools.lru_cache(maxsize=4)
def load_pyfunc(model_uri: str):
    """One load per process (a Dask worker scores many chunks with it)."""
    import mlflow.pyfunc

    return mlflow.pyfunc.load_model(model_uri)


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
def store_scored(features: pd.DataFrame, scored: pd.DataFrame, model: ModelRef, live_url: str) -> pd.DataFrame:
    return LiveStore(live_url).append(scored_rows(features, scored, model.name, model.version))


@task(cache_policy=NO_CACHE)
def write_output(stored: pd.DataFrame, path: str) -> None:
    (stored.to_parquet if path.endswith((".parquet", ".pq")) else stored.to_csv)(path, index=False)
