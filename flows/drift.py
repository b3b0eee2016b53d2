"""drift-monitoring: champion's training snapshot vs the live window → Evidently report → MLflow + Prefect → event."""

from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
from prefect import flow

from anomaly_distill.series.timeseries import merged_history
from flows.parameters import DriftParameters
from flows.training_parameters import TrainingParameters
from stores.live_store import live_store_url
from stores.registry import resolve_model
from tasks import drift as d
from tasks import monitoring
from tasks import scoring as s


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
    summary["adaptation"] = adaptation_note(contract, current)
    summary["model_version"] = model.version
    experiment = monitoring.experiment_name(model.name, params.experiment)
    summary["mlflow_run_id"] = d.log_drift(model, summary, html, experiment, params.window)
    d.publish_drift(model, summary)
    if summary["drift_detected"]:
        retraining = retraining_parameters(params, model, contract, reference, current, live_url)
        summary["retrain_parameters"] = retraining.model_dump(mode="json")
        d.announce_drift(model, summary, params.window)  # the nightly-retrain deployment's trigger runs these
        if params.retrain_on_drift:
            summary["retrain"] = retrain(retraining)
    print(
        f"{model.name} v{model.version}: {'DRIFT' if summary['drift_detected'] else 'no drift'} "
        f"(share {summary['drift_share']:.2f}, columns {summary['drifted_columns']}, "
        f"score {summary['score_drift']:.4g})" + (f"\n  {summary['adaptation']}" if summary["adaptation"] else "")
    )
    return summary


def adaptation_note(contract, current: pd.DataFrame) -> str | None:
    """An online series model learns what it scores: after a lasting change its alarms stop, while the values
    still differ from the training period. The drift verdict says so, so that nobody learns of the change only
    from alarms that stopped."""
    if not contract.learns_online:
        return None
    alarms = current["is_anomaly"].astype(bool).to_numpy()
    first = f", the first at {current[contract.timestamp_column].iloc[alarms.argmax()]}" if alarms.any() else ""
    return (
        f"online model: it learnt from each of these {len(current):,} points after scoring it, so a lasting change "
        f"stops raising alarms once learnt ({int(alarms.sum())} alarms in this window{first}); drift here is a "
        "change it adapted to, not one it keeps flagging"
    )


def tabular_retraining(
    reference: pd.DataFrame, live: pd.DataFrame, contract, live_url: str
) -> tuple[pd.DataFrame, dict]:
    """The champion's reference rows + the live rows, with the labels people gave for live rows."""
    labels = d.feedback_labels(live, d.feedback_store(live_url).read())
    return d.retraining_table(reference, live, contract.features, labels), {}


def series_retraining(
    reference: pd.DataFrame, live: pd.DataFrame, contract, live_url: str
) -> tuple[pd.DataFrame, dict]:
    """The champion's training period + the live points, as one series, and the training settings it had."""
    history = merged_history(
        reference, live, contract.timestamp_column, contract.value_columns, names=("champion's drift reference", "live")
    )
    modality = {"kind": "timeseries", "timestamp_column": contract.timestamp_column, "series": contract.series}
    return history, {"modality": modality}


# What a drift retrain trains on, by contract kind. An image model has no entry: the live store holds no images, so
# it retrains on its own training parameters (its image folder, which the user keeps current).
RETRAINING_TABLE = {"tabular": tabular_retraining, "timeseries": series_retraining}


def retraining_parameters(
    params: DriftParameters, model, contract, reference: pd.DataFrame, current: pd.DataFrame, live_url: str
):
    """The training run a drift calls for: the champion's reference + the live window, written to a file (or, for a
    kind without a retraining table, the champion's own training parameters).

    The same parameters go into the drift event, so the deployment it triggers trains on the live rows too (a
    retrain with the nightly run's fixed parameters would train on the old file and could only reuse an old
    version)."""
    if contract.kind not in RETRAINING_TABLE:
        return TrainingParameters.model_validate(d.champion_training_parameters(model))
    table, settings = RETRAINING_TABLE[contract.kind](reference, current, contract, live_url)
    folder = Path(params.retrain_dir).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    path = d.retraining_table_path(folder, params.model_name, datetime.now(timezone.utc))
    s.write_table_file(table, str(path), "the retraining table")
    d.prune_retraining_tables(folder, params.model_name, params.retrain_keep, path)
    return TrainingParameters(
        data_path=str(path),
        label_column=d.LABEL if d.LABEL in table else None,
        model_name=params.model_name,
        experiment=d.training_experiment(model),
        check_ranges=False,  # range checks off: drift is the point
        holdout_column=d.LIVE_ROW if d.LIVE_ROW in table else None,
        **settings,
    )


def retrain(retraining) -> dict:
    """The training pipeline, with its gate, on the retraining table."""
    # the training pipeline (torch, the teachers) only when drift retrains
    from flows.training import training_pipeline

    return training_pipeline(retraining)
