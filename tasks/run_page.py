"""What the Prefect flow run page shows of a training run: artifacts on the flow run itself (not on a task run),
a metrics table (this version beside the champion), links to the MLflow run, experiment and version, and the
verdict as the run's last log line and state message."""

from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact

from anomaly_distill.gate import Verdict
from anomaly_distill.model_card import IMAGE_METRICS, METRICS, metric_text
from tasks import tracking

TABLE_METRICS = tuple(dict.fromkeys(key for key, _ in METRICS + IMAGE_METRICS))  # the model card's, every kind


def verdict_line(model_name: str, version: str, verdict: Verdict, reused: bool = False) -> str:
    """One sentence a person reads first: the version, the gate's outcome, where `champion` points."""
    made = f"{model_name} v{version}{' (reused)' if reused else ''}"
    if verdict.promote:
        return f"{made}: gate passed, promoted to champion" + (
            f" (was v{verdict.champion_version})" if verdict.champion_version else ""
        )
    if verdict.held:
        return f"{made}: held for a person (no labels to compare on); champion stays v{verdict.champion_version}"
    kept = f"champion stays v{verdict.champion_version}" if verdict.champion_version else "no champion"
    overruled = next((r for r in verdict.reasons if r.startswith("NOT PROMOTED")), None)
    outcome = overruled.lower() if overruled else "gate failed"
    return f"{made}: {outcome}; registered as challenger only, {kept}"


def metrics_rows(metrics: dict, champion: dict | None) -> list[dict]:
    champion = champion or {}
    return [
        {"metric": key, "this version": metric_text(metrics.get(key)), "champion": metric_text(champion.get(key))}
        for key in TABLE_METRICS
        if key in metrics or key in champion
    ]


def publish(model_name: str, version: str, run_id: str, verdict: Verdict, metrics: dict, reused: bool) -> str:
    """Called from the flow's body, so that every artifact belongs to the flow run. Returns the verdict line."""
    line = verdict_line(model_name, version, verdict, reused)
    title = f"Promotion gate for {model_name} v{version}"
    create_markdown_artifact(verdict.markdown(title), key="gate-verdict", description=line)
    create_table_artifact(metrics_rows(metrics, verdict.champion_metrics), key="metrics", description=line)
    run_url, version_url = tracking.ui_url(run_id), tracking.ui_url(model=(model_name, version))
    if run_url:
        create_link_artifact(run_url, link_text=f"MLflow run {run_id[:8]}", key="mlflow-run")
        create_link_artifact(version_url, link_text=f"{model_name} v{version}", key="model-version")
        experiment = tracking.experiment_url(tracking.tracking_uri(), tracking.get_run(run_id).info.experiment_id)
        create_link_artifact(experiment, link_text="MLflow experiment (all runs)", key="mlflow-experiment")
    return line
