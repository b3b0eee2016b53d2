"""drift-monitoring: champion's training snapshot vs the live window → Evidently report → MLflow + Prefect → event."""

from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
from prefect import flow
from pydantic import Field

from anomaly_distill.config import StrictModel
from anomaly_distill.contract import SeriesContract
from anomaly_distill.timeseries import merged_history
from serving.live_store import live_store_url
from tasks import drift as d
from tasks import scoring as s
from tasks.registry import resolve_model

LIVE_ROW = "_live_row"  # in a retraining table: 1 for rows from the live window, 0 for the champion's reference


class DriftParameters(StrictModel):
    model_name: str = Field("anomaly-detector", description="Registered model whose champion is monitored.")
    window: str = Field("1d", description="Live rows from this far back (pandas Timedelta: 1d, 12h, 30min).")
    live_store: str | None = Field(
        None, description="Live store URL (default: $ANOMALY_DISTILL_LIVE_STORE or ./live-store)."
    )
    drift_share_threshold: float = Field(
        0.3, gt=0, le=1, description="Drift when at least this share of features drifted (or the score drifted)."
    )
    experiment: str = Field("anomaly-distill", description="MLflow experiment for the drift runs.")
    retrain_on_drift: bool = Field(
        False,
        description="On drift, run the training pipeline on the reference snapshot + the live window "
        "(a series model: its training period + the live points, in time order, with its series settings).",
    )
    retrain_dir: str = Field("retraining", description="Where the retraining table is written.")


@flow(name="drift-monitoring", log_prints=True)
def drift_monitoring(params: DriftParameters) -> dict:
    model = resolve_model(f"models:/{params.model_name}@champion")
    contract = s.load_contract(model)
    features = contract.features
    reference = d.load_reference(model)
    live_url = live_store_url(params.live_store)
    current, compared = d.load_window(live_url, model, contract, params.window)
    summary, html = d.detect_drift(reference, current, features, params.drift_share_threshold, live_url)
    summary["compared"] = compared
    summary["mlflow_run_id"] = d.log_drift(model, summary, html, params.experiment, params.window)
    summary["model_version"] = model.version
    d.publish_drift(model, summary)
    if summary["drift_detected"]:
        d.announce_drift(model, summary, params.window)
        if params.retrain_on_drift and isinstance(contract, SeriesContract):
            summary["retrain"] = retrain(params, *series_retraining(reference, current, contract))
        elif params.retrain_on_drift:
            labels = d.feedback_labels(current, d.feedback_store(live_url).read())
            summary["retrain"] = retrain(params, retraining_table(reference, current, features, labels))
    print(
        f"{model.name} v{model.version}: {'DRIFT' if summary['drift_detected'] else 'no drift'} "
        f"(share {summary['drift_share']:.2f}, columns {summary['drifted_columns']}, "
        f"score {summary['score_drift']:.4g})"
    )
    return summary


def retraining_table(
    reference: pd.DataFrame, live: pd.DataFrame, features: list[str], live_labels: pd.Series
) -> pd.DataFrame:
    """Reference snapshot + live rows. Labelled only when both have labels for every row (then the gate can check
    AUROC against the champion); otherwise unlabelled, and the gate checks fidelity, size and speed only."""
    table = pd.concat([reference[features], live[features]], ignore_index=True)
    if d.LABEL in reference and live_labels.notna().all():
        table[d.LABEL] = pd.concat([reference[d.LABEL], live_labels], ignore_index=True).astype(int).to_numpy()
    table[LIVE_ROW] = np.repeat([0, 1], [len(reference), len(live)])  # only live rows are held out for the gate
    return table


def series_retraining(
    reference: pd.DataFrame, live: pd.DataFrame, contract: SeriesContract
) -> tuple[pd.DataFrame, dict]:
    """The champion's training period + the live points, as one series, and the training settings it had."""
    history = merged_history(
        reference, live, contract.timestamp_column, contract.value_columns, names=("champion's drift reference", "live")
    )
    return history, {"modality": "timeseries", "timestamp_column": contract.timestamp_column, "series": contract.series}


def retrain(params: DriftParameters, table: pd.DataFrame, settings: dict | None = None) -> dict:
    """The training pipeline, with its gate, on the retraining table (range checks off: drift is the point)."""
    from flows.training import TrainingParameters, training_pipeline

    folder = Path(params.retrain_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{params.model_name}-{datetime.now(timezone.utc):%Y%m%dT%H%M%S}.parquet"
    table.to_parquet(path, index=False)
    return training_pipeline(
        TrainingParameters(
            data_path=str(path),
            label_column=d.LABEL if d.LABEL in table else None,
            model_name=params.model_name,
            experiment=params.experiment,
            check_ranges=False,
            holdout_column=LIVE_ROW if LIVE_ROW in table else None,
            **(settings or {}),
        )
    )
