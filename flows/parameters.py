"""Flow parameters that the CLI builds its flags from: pydantic only, so that `anomaly-distill --help` stays quick."""

from pydantic import Field

from anomaly_distill.config import OptionalText, StrictModel
from flows.runners import RunnerKind


class DriftParameters(StrictModel):
    model_name: str = Field("anomaly-detector", description="Registered model whose champion is monitored.")
    window: str = Field("1d", description="Live rows from this far back (pandas Timedelta: 1d, 12h, 30min).")
    live_store: OptionalText = Field(
        None, description="Live store URL (default: $ANOMALY_DISTILL_LIVE_STORE or ./live-store)."
    )
    drift_share_threshold: float = Field(
        0.3, gt=0, le=1, description="Drift when at least this share of features drifted (or the score drifted)."
    )
    experiment: OptionalText = Field(
        None, description="MLflow experiment for the drift runs; empty: <model_name>-monitoring."
    )
    retrain_on_drift: bool = Field(
        False,
        description="On drift, run the training pipeline on the reference snapshot + the live window "
        "(a series model: its training period + the live points, in time order, with its series settings).",
    )
    retrain_dir: str = Field("retraining", description="Where the retraining table is written.")
    retrain_keep: int = Field(
        10, ge=1, description="Retraining tables kept per model in retrain_dir; older ones are deleted."
    )


class ScoringParameters(StrictModel):
    data_path: str = Field(
        ..., description="CSV, Parquet or .npz file with the rows to score; for an image model, a folder of images."
    )
    model_uri: str = Field(
        "models:/anomaly-detector@champion",
        description="Registered model to use: models:/NAME@alias or models:/NAME/VERSION.",
    )
    out_path: OptionalText = Field(None, description="Write rows with score and is_anomaly here (.csv or .parquet).")
    live_store: OptionalText = Field(
        None, description="Live store URL (default: $ANOMALY_DISTILL_LIVE_STORE or ./live-store)."
    )
    chunk_rows: int = Field(100_000, ge=1, description="Rows per batch: read, checked and scored together.")
    threshold: float | None = Field(None, description="Override the model's stored alarm threshold.")
    explain: int = Field(
        0, ge=0, le=50, description="For each flagged row, name the k columns that raise its score most (0: none)."
    )
    task_runner: RunnerKind = Field(
        "threads", description="Where chunks are scored: local threads, or a Dask cluster (see dask_address)."
    )
    dask_address: OptionalText = Field(
        None, description="Scheduler of an existing Dask cluster (tcp://host:8786); empty: a local cluster."
    )
