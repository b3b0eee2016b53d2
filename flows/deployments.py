"""The deployments users run from the Prefect UI: nightly retraining, hourly drift checks, scoring, promotion."""

from prefect.deployments.runner import EntrypointType
from prefect.events import DeploymentEventTrigger
from prefect.schedules import Cron

from flows import jobs
from flows.drift import DriftParameters, drift_monitoring
from flows.promotion import PromotionParameters, promote_model
from flows.resilient_serve import serve_through_outages
from flows.scoring import ScoringParameters, batch_scoring
from flows.training import TrainingParameters, training_pipeline
from stores import registry
from tasks.drift import DRIFT_EVENT


def build(
    data_path: str,
    model_name: str,
    label_column: str | None,
    cron: str = "0 2 * * *",
    timezone: str = "UTC",
    drift_interval_seconds: int = 3600,
    score_path: str | None = None,
    live_window: str | None = "7d",
) -> list:
    training = TrainingParameters(
        data_path=data_path, model_name=model_name, label_column=label_column, live_window=live_window
    )
    retrain_on_drift = DeploymentEventTrigger(
        name="retrain-on-drift",
        expect={DRIFT_EVENT},
        match={"prefect.resource.id": f"anomaly-distill.model.{model_name}"},
        # the drift run's own retraining parameters (reference + live window), not the nightly file
        parameters={"params": "{{ event.payload.training_parameters }}"},
    )
    live = f" plus its live rows of the last {live_window} (labels from feedback where given)" if live_window else ""
    common = {"tags": ["anomaly-distill"], "entrypoint_type": EntrypointType.MODULE_PATH}  # not a cwd-relative path
    return [
        training_pipeline.to_deployment(
            name="nightly-retrain",
            description=f"Retrains {model_name} on {data_path}{live} at '{cron}' ({timezone}), and on a drift "
            "event with the drift run's table (reference + live window, with the labels people gave through "
            "feedback). Gate, registry and promotion included.",
            parameters={"params": training.model_dump()},
            schedules=[Cron(cron, timezone=timezone)],
            triggers=[retrain_on_drift],
            **common,
        ),
        drift_monitoring.to_deployment(
            name="drift-check",
            description=f"Every {drift_interval_seconds} s: the champion of {model_name} against its live window "
            "(Evidently); on drift, an event that starts nightly-retrain on the live rows.",
            parameters={"params": DriftParameters(model_name=model_name).model_dump()},
            interval=drift_interval_seconds,
            **common,
        ),
        batch_scoring.to_deployment(
            name="batch-score",
            description=f"Scores a file with the champion of {model_name}; rows go to the output and the live store.",
            parameters={
                "params": ScoringParameters(
                    data_path=score_path or data_path, model_uri=f"models:/{model_name}@champion"
                ).model_dump()
            },
            **common,
        ),
        promotion_deployment(model_name, common),
        *short_form_deployments(data_path, model_name, label_column, common),
    ]


def short_form_deployments(data_path: str, model_name: str, label_column: str | None, common: dict) -> list:
    """train-table/train, train-series/train and train-images/train: one short form each, for a one-off run."""
    forms = [
        (jobs.train_table, jobs.TableJob(data_path=data_path, model_name=model_name, label_column=label_column), True),
        (jobs.train_series, jobs.SeriesJob(data_path="-", model_name=model_name), False),
        (jobs.train_images, jobs.ImageJob(data_path="-", model_name=model_name), False),
    ]
    deployments = []
    for job, defaults, with_data in forms:
        deployment = job.to_deployment(
            name="train",
            description=f"{job.__doc__} Data, label and model name first; every engine setting under Advanced.",
            parameters={"params": jobs.form_defaults(defaults, with_data)},
            **common,
        )
        jobs.short_form({"definitions": deployment._parameter_openapi_schema.definitions}, type(defaults))
        deployments.append(deployment)
    return deployments


def promotion_deployment(model_name: str, common: dict):
    deployment = promote_model.to_deployment(
        name="promote-model",
        description=f"A person's lever: make a version of {model_name} champion, or roll back to the previous "
        "champion. The version list is refreshed at every registration.",
        parameters={"params": PromotionParameters(model_name=model_name).model_dump()},
        **common,
    )
    schema = deployment._parameter_openapi_schema  # the version field as a choice of the registered versions
    registry.with_version_choices({"definitions": schema.definitions}, model_name)
    return deployment


def serve_all(outage_seconds: float = 300, **kwargs) -> None:
    """Serves the deployments until Ctrl-C / SIGTERM, through Prefect API outages of up to `outage_seconds`."""
    serve_through_outages(build(**kwargs), outage_seconds)
