"""Drift monitoring tasks: Evidently report of live rows vs the champion's training snapshot, logged and announced."""

import re
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.events import emit_event

from anomaly_distill.contract import check_input
from anomaly_distill.data import DataError
from anomaly_distill.metrics import detection_metrics, has_both_classes
from stores.live_store import ROW_ID, LiveStore
from stores.registry import REFERENCE_FILE, ModelRef
from tasks import monitoring, tracking
from tasks.scoring import load_pyfunc

DRIFT_EVENT = "anomaly_distill.drift.detected"
LABEL = "label"
P_VALUE_METHODS = ("p_value",)  # Evidently names p-value tests "... p_value"; the rest are distances


def column_drift(report_dict: dict) -> dict[str, dict]:
    """Per-column drift from Evidently's ValueDrift metrics, found by type (not by position in the report)."""
    out = {}
    for metric in report_dict["metrics"]:
        config = metric["config"]
        if not config.get("type", "").endswith(":ValueDrift"):
            continue
        value, threshold = float(metric["value"]), float(config["threshold"])
        is_p_value = any(tag in config["method"] for tag in P_VALUE_METHODS)
        out[config["column"]] = {
            "method": config["method"],
            "value": value,
            "threshold": threshold,
            "drifted": value < threshold if is_p_value else value >= threshold,
        }
    return out


def drift_summary(
    reference: pd.DataFrame, current: pd.DataFrame, features: list[str], drift_share_threshold: float
) -> tuple[dict, str]:
    """(JSON-able summary, HTML report). The score is tested on its own, beside the features and not one of them,
    in the summary and in the report alike: the report's count and share of drifted columns are the summary's."""
    # Evidently (~4 s) only to build a report: scoring and the CLI import this module
    from evidently import Report
    from evidently.metrics import ValueDrift
    from evidently.presets import DataDriftPreset

    columns = features + ["score"]
    preset = DataDriftPreset(columns=features, drift_share=drift_share_threshold)
    snapshot = Report([preset, ValueDrift(column="score")]).run(current[columns], reference[columns])
    report = snapshot.dict()
    per_column = column_drift(report)
    drifted = [c for c in features if per_column[c]["drifted"]]
    share = len(drifted) / len(features)
    _agrees_with_report(report, len(drifted), share)
    score = per_column["score"]
    summary = {
        "drift_detected": share >= drift_share_threshold or score["drifted"],
        "drift_share": share,
        "drifted_columns": drifted,
        "score_drift": score["value"],
        "score_drift_method": score["method"],
        "score_drifted": score["drifted"],
        "anomaly_rate": float(current["is_anomaly"].mean()),
        "reference_anomaly_rate": float(reference["is_anomaly"].mean()),
        "rows": len(current),
        "reference_rows": len(reference),
        "columns": per_column,
    }
    html = with_project_headline(snapshot.get_html_str(as_iframe=False), summary, drift_share_threshold)
    return summary, fit_narrow_frames(html)


def _agrees_with_report(report: dict, drifted: int, share: float) -> None:
    counted = next(m["value"] for m in report["metrics"] if m["config"]["type"].endswith(":DriftedColumnsCount"))
    if int(counted["count"]) != drifted or abs(float(counted["share"]) - share) > 1e-9:
        raise RuntimeError(f"Evidently's report counts {counted}, the verdict {drifted} drifted, share {share}")


# Evidently lays its widgets out for ~1000 px and cuts them off in narrower frames, such as MLflow's artifact
# preview: scaled down to fit there instead.
NARROW_FRAMES = (
    "<style>@media (max-width: 999px) {body {zoom: 0.78}} @media (max-width: 779px) {body {zoom: 0.6}} "
    "@media (max-width: 599px) {body {zoom: 0.45}}</style>"
)


def fit_narrow_frames(html: str) -> str:
    return html.replace("</head>", NARROW_FRAMES + "</head>", 1)


EVIDENTLY_HEADLINE = re.compile(r"Dataset Drift is (NOT )?detected\. Dataset drift detection threshold is [0-9.]+")


def project_headline(summary: dict, threshold: float) -> str:
    verdict = "detected" if summary["drift_detected"] else "NOT detected"
    drifted = len(summary["drifted_columns"])
    features = len(summary["columns"]) - 1  # every column but the score
    score = "drifted" if summary["score_drifted"] else "did not drift"
    return (
        f"Dataset Drift is {verdict} (anomaly-distill rule: drift when at least {threshold:.0%} of the features "
        f"drifted or the anomaly score drifted; here {drifted} of {features} features, and the score {score})"
    )


def with_project_headline(html: str, summary: dict, threshold: float) -> str:
    """Evidently's headline counts the score column as a feature and knows nothing of the score rule; the report
    a user opens says the verdict the project acted on. Fails loudly if Evidently's wording changes."""
    html, replaced = EVIDENTLY_HEADLINE.subn(project_headline(summary, threshold), html)
    if replaced == 0:
        raise RuntimeError("Evidently's drift headline was not found in its report; cannot state the verdict in it")
    return html


def feedback_store(live_url: str) -> LiveStore:
    """Delayed true labels (row_id, label) live beside the scored rows, outside their date partitions."""
    return LiveStore(f"{live_url.rstrip('/')}/_feedback")


def feedback_labels(current: pd.DataFrame, feedback: pd.DataFrame) -> pd.Series:
    """The latest true label of each current row (NaN where none arrived yet), aligned with `current`."""
    if feedback.empty:
        return pd.Series(float("nan"), index=current.index)
    labels = feedback.drop_duplicates(ROW_ID, keep="last").set_index(ROW_ID)[LABEL]
    return current[ROW_ID].map(labels)


def live_quality(current: pd.DataFrame, feedback: pd.DataFrame) -> dict | None:
    """The champion's AUROC/precision/recall on live rows that have received a true label."""
    if feedback.empty:
        return None
    known = feedback_labels(current, feedback)
    labelled = current[known.notna()]
    y = known[known.notna()].astype(int).to_numpy()
    result = {"labelled_rows": len(labelled)}
    if has_both_classes(y):
        result.update(detection_metrics(y, labelled["score"].to_numpy(), flagged=labelled["is_anomaly"].to_numpy()))
    return {k: float(v) for k, v in result.items()}


def retraining_table_path(folder: Path, model_name: str, when: datetime) -> Path:
    return folder / f"{model_name}-{when:%Y%m%dT%H%M%S%f}.parquet"


def prune_retraining_tables(folder: Path, model_name: str, keep: int, written: Path) -> list[Path]:
    """Deletes the model's retraining tables beyond the newest `keep` (the one just `written` is always kept);
    other models' tables in the folder are not touched. Returns the deleted paths."""
    pattern = re.compile(re.escape(model_name) + r"-\d{8}T\d{12}\.parquet")  # not a longer name's "<name>-v2-…"
    tables = sorted((p for p in folder.iterdir() if pattern.fullmatch(p.name)), key=lambda p: p.name, reverse=True)
    stale = [p for p in tables[keep:] if p != written]
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


@task(cache_policy=NO_CACHE)
def load_reference(model: ModelRef) -> pd.DataFrame:
    return tracking.load_parquet_artifact(model.run_id, REFERENCE_FILE)


def training_experiment(model: ModelRef) -> str:
    """The experiment the monitored version was trained in: a drift retrain belongs there, not with the checks."""
    run = tracking.get_run(model.run_id)
    return tracking.client().get_experiment(run.info.experiment_id).name


@task(cache_policy=NO_CACHE)
def champion_training_parameters(model: ModelRef) -> dict:
    """The parameters the monitored version was trained with (its run's config.json)."""
    return mlflow.artifacts.load_dict(f"runs:/{model.run_id}/config.json")


@task(cache_policy=NO_CACHE)
def load_window(live_url: str, model: ModelRef, contract, window: str) -> tuple[pd.DataFrame, dict]:
    """The window's live rows of this model, every score and flag from the monitored version: rows another
    version scored (e.g. before a promotion) are re-scored by it from their stored features, so that the score
    compared with this version's reference is this version's. A series model's points cannot be re-scored one by
    one (each needs its history), nor an image (the store keeps its features, not the image; another version's
    embedding is another network's): for them, the other versions' rows are left out."""
    since = datetime.now(timezone.utc) - pd.Timedelta(window)
    rows = LiveStore(live_url).read(since=since)
    rows = rows[rows["model_name"] == model.name].reset_index(drop=True) if len(rows) else rows
    other = (rows["model_version"].astype(str) != str(model.version)).to_numpy() if len(rows) else []
    compared = {"version": model.version, "rows": len(rows), "rescored_rows": 0, "left_out_rows": 0}
    if not any(other):
        return rows, compared
    if not contract.rescorable_rows:
        compared.update(rows=int((~other).sum()), left_out_rows=int(other.sum()))
        return rows[~other].reset_index(drop=True), compared
    rescored = load_pyfunc(model.uri).predict(check_input(contract, rows.loc[other, contract.input_columns]))
    rows.loc[other, ["score", "is_anomaly"]] = rescored[["score", "is_anomaly"]].to_numpy()
    compared["rescored_rows"] = int(other.sum())
    return rows, compared


@task(cache_policy=NO_CACHE)
def detect_drift(
    reference: pd.DataFrame, current: pd.DataFrame, features: list[str], share_threshold: float, live_url: str
):
    if current.empty:
        raise DataError("no live rows of this model in the window: nothing to compare")
    summary, html = drift_summary(reference, current, features, share_threshold)
    summary["live_metrics"] = live_quality(current, feedback_store(live_url).read())
    return summary, html


@task(cache_policy=NO_CACHE)
def log_drift(model: ModelRef, summary: dict, html: str, experiment: str, window: str) -> str:
    """The check's own run (report, summary, the version judged) and its step on the model's monitoring run, in
    the experiment `experiment`; the version's card links to both."""
    tags = {"kind": "drift", "model_name": model.name, "model_version": model.version, "window": window}
    run_id = tracking.start_run(experiment, f"drift-{model.name}-v{model.version}", tags=tags)
    tracking.log_metrics(run_id, monitoring.window_metrics(summary))
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "drift_report.html").write_text(html)
        tracking.log_file(run_id, Path(tmp) / "drift_report.html")
    tracking.log_json(run_id, summary, "drift_summary.json")
    trend = monitoring.monitoring_run(experiment, model.name)
    step = monitoring.log_window(trend, summary)
    version_url = tracking.ui_url(model=(model.name, model.version))
    note = f"Judged [{model.name} v{model.version}]({version_url})" if version_url else f"Judged {model.uri}"
    tracking.set_tags(run_id, {"monitoring_run": trend, "window_step": step, "mlflow.note.content": note})
    tracking.end_run(run_id)
    verdict = "DRIFT" if summary["drift_detected"] else "no drift"
    monitoring.link_from_card(model.name, model.version, _card_line(experiment, run_id, trend, step, verdict))
    return run_id


def _card_line(experiment: str, run_id: str, trend: str, step: int, verdict: str) -> str:
    ui = tracking.ui_base()
    runs = chart = None
    if ui:  # both runs are in the monitoring experiment: one lookup for both links
        experiment_id = tracking.experiment_id(experiment)
        runs, chart = (tracking.experiment_url(ui, experiment_id, run) for run in (run_id, trend))
    check = f"[run {run_id[:8]}]({runs})" if runs else f"run `{run_id}`"
    trend_text = f"[monitoring run]({chart})" if chart else f"monitoring run `{trend}`"
    return (
        f"- latest drift check (window {step + 1}): **{verdict}**, {check} in experiment `{experiment}`; every "
        f"window's drift share, score drift, rows and live metrics over time: the {trend_text}'s charts"
    )


@task(cache_policy=NO_CACHE)
def publish_drift(model: ModelRef, summary: dict) -> None:
    verdict = "DRIFT" if summary["drift_detected"] else "no drift"
    create_markdown_artifact(
        f"# {model.name} v{model.version}: {verdict}\n\n"
        f"- drift share {summary['drift_share']:.2f}; drifted columns: {summary['drifted_columns'] or 'none'}\n"
        f"- score drift ({summary['score_drift_method']}): {summary['score_drift']:.4g}"
        f"{' (drifted)' if summary['score_drifted'] else ''}\n"
        f"- anomaly rate {summary['anomaly_rate']:.2%} live vs {summary['reference_anomaly_rate']:.2%} in training\n"
        f"- {summary['rows']:,} live rows vs {summary['reference_rows']:,} reference rows; every score from "
        f"v{model.version} ({summary['compared']['rescored_rows']:,} rows scored by other versions re-scored, "
        f"{summary['compared']['left_out_rows']:,} left out)\n"
        f"- live quality on rows with delayed labels: {summary['live_metrics'] or 'no labels yet'}"
        + (f"\n- {summary['adaptation']}" if summary.get("adaptation") else ""),
        key="drift-summary",
        description="Evidently data drift",
    )
    create_table_artifact([{"column": c, **v} for c, v in summary["columns"].items()], key="drift-columns")


@task(cache_policy=NO_CACHE)
def announce_drift(model: ModelRef, summary: dict, window: str) -> None:
    emit_event(
        event=DRIFT_EVENT,
        resource={
            "prefect.resource.id": f"anomaly-distill.model.{model.name}",
            "model_name": model.name,
            "model_version": model.version,
        },
        payload={
            "window": window,
            **{k: summary[k] for k in ("drift_share", "drifted_columns", "score_drift", "anomaly_rate", "rows")},
            "training_parameters": summary["retrain_parameters"],
        },
    )


LIVE_ROW = "_live_row"  # in a retraining table: 1 for rows from the live window, 0 for the champion's reference


def retraining_table(
    reference: pd.DataFrame, live: pd.DataFrame, features: list[str], live_labels: pd.Series
) -> pd.DataFrame:
    """Reference snapshot + live rows, each with whatever label it has: the reference's own (when the champion
    trained with labels) and the live rows' through `feedback`; an empty cell for a row nobody labelled, which
    training reads as not reviewed. No label column when no row has a label. The gate rests on the labelled live
    rows it holds out (it says how many), or, with none of both classes, gate.unlabelled decides (README, "Reading
    the gate")."""
    table = pd.concat([reference[features], live[features]], ignore_index=True)
    reference_labels = reference[LABEL] if LABEL in reference else pd.Series(np.nan, index=reference.index)
    labels = pd.concat([label_cells(reference_labels), label_cells(live_labels)], ignore_index=True)
    if labels.notna().any():
        table[LABEL] = labels.to_numpy()
    table[LIVE_ROW] = np.repeat([0, 1], [len(reference), len(live)])  # only live rows are held out for the gate
    return table


def label_cells(labels: pd.Series) -> pd.Series:
    """0.0 / 1.0 where a label was given, NaN (an empty cell) where not: a snapshot's empty or -1 cells too."""
    values = pd.to_numeric(pd.Series(labels), errors="coerce").astype("float64")
    return values.where(values.isin([0.0, 1.0])).reset_index(drop=True)
