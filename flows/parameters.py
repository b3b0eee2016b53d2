"""Flow parameters that the CLI builds its flags from: pydantic only, so that `anomaly-distill --help` stays quick."""

from pydantic import Field

from anomaly_distill.config import OptionalText, StrictModel


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
