"""Drift over time in MLflow: each drift check is a run of the experiment `<model>-monitoring` (its report, its
summary, the version it judged), and one long-lived monitoring run per model holds every check's figures as
metrics with step = window number, so MLflow's charts draw the trend. The version's card links to them.

Why MLflow metrics and not an Evidently workspace: the users already read MLflow (runs, registry, cards), it is
already served with PostgreSQL and logins, and a step-indexed metric is exactly a trend chart there; a workspace
would be a third server to run, secure and back up for one view."""

from stores import registry
from tasks import tracking

MONITORING_KIND = "monitoring"
CARD_SECTION = "\n\n## Monitoring\n"


def experiment_name(model_name: str, override: str | None = None) -> str:
    return override or f"{model_name}-monitoring"


def window_metrics(summary: dict) -> dict[str, float]:
    """One drift check's figures: what drifted, how much was scored and flagged, and (with feedback) how well."""
    figures = {k: float(summary[k]) for k in ("drift_share", "score_drift", "anomaly_rate", "rows")}
    figures["drift_detected"] = float(summary["drift_detected"])
    figures["model_version"] = float(summary["model_version"])
    live = summary.get("live_metrics") or {}
    return figures | {f"live_{key}": float(value) for key, value in live.items()}


def monitoring_run(experiment: str, model_name: str) -> str:
    """The model's one monitoring run in `experiment`, created on its first drift check."""
    experiment_id = tracking.experiment_id(experiment)
    query = f"tags.kind = '{MONITORING_KIND}' and tags.model_name = '{model_name}'"
    found = tracking.client().search_runs([experiment_id], query, max_results=1, order_by=["attributes.start_time"])
    if found:
        return found[0].info.run_id
    tags = {"kind": MONITORING_KIND, "model_name": model_name}
    return tracking.start_run(experiment, f"monitor-{model_name}", tags=tags)


def log_window(run_id: str, summary: dict) -> int:
    """Appends one check to the monitoring run, as the next step; returns that step."""
    step = len(tracking.client().get_metric_history(run_id, "drift_share"))
    tracking.log_metrics(run_id, window_metrics(summary), step=step)
    tracking.end_run(run_id)  # finished between checks; logging to a finished run is allowed
    return step


def link_from_card(model_name: str, version: str, line: str) -> None:
    """The version's card (its description) ends with a Monitoring section naming the latest drift check."""
    card = registry.get_version(model_name, version).description or ""
    head = card.split(CARD_SECTION)[0]
    registry.describe_version(model_name, version, f"{head.rstrip()}{CARD_SECTION}{line}\n")
