"""batch-scoring: resolve model → validate against its contract → score in chunks → output + live store."""

from prefect import flow
from pydantic import Field

from anomaly_distill.config import OptionalText, StrictModel
from flows.runners import RunnerKind, with_runner
from serving.live_store import live_store_url
from tasks import scoring as s
from tasks import training as t
from tasks.registry import resolve_model


class ScoringParameters(StrictModel):
    data_path: str = Field(..., description="CSV, Parquet or .npz file with the rows to score.")
    model_uri: str = Field(
        "models:/anomaly-detector@champion",
        description="Registered model to use: models:/NAME@alias or models:/NAME/VERSION.",
    )
    out_path: OptionalText = Field(None, description="Write rows with score and is_anomaly here (.csv or .parquet).")
    live_store: OptionalText = Field(
        None, description="Live store URL (default: $ANOMALY_DISTILL_LIVE_STORE or ./live-store)."
    )
    chunk_rows: int = Field(50_000, ge=1, description="Rows per scoring call.")
    threshold: float | None = Field(None, description="Override the model's stored alarm threshold.")
    task_runner: RunnerKind = Field(
        "threads", description="Where chunks are scored: local threads, or a Dask cluster (see dask_address)."
    )
    dask_address: OptionalText = Field(
        None, description="Scheduler of an existing Dask cluster (tcp://host:8786); empty: a local cluster."
    )


@flow(name="batch-scoring", log_prints=True)
def batch_scoring(params: ScoringParameters) -> dict:
    model = resolve_model(params.model_uri)
    frame = t.load_data(params.data_path)
    contract = s.load_contract(model)
    features = s.validate_input(frame, contract)
    scored, rows_per_second = s.score_in_chunks(
        model.uri, features, params.chunk_rows, params.threshold, s.overlap(contract)
    )
    stored = s.store_scored(features, scored, model, live_store_url(params.live_store))
    if params.out_path:
        s.write_output(stored, params.out_path)
    print(f"scored {len(stored):,} rows with {model.name} v{model.version} at {rows_per_second:,.0f} rows/s")
    return {
        "rows": len(stored),
        "rows_per_second": rows_per_second,
        "model_name": model.name,
        "model_version": model.version,
        "anomalies": int(stored["is_anomaly"].sum()),
        "out_path": params.out_path,
    }


def run_batch_scoring(params: ScoringParameters) -> dict:
    return with_runner(batch_scoring, params.task_runner, params.dask_address)(params)
