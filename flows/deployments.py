"""The deployments users run from the Prefect UI: nightly retraining, hourly drift checks, scoring, promotion."""

from prefect import serve
from prefect.events import DeploymentEventTrigger
from prefect.schedules import Cron

from flows.drift import DriftParameters, drift_monitoring
from flows.promotion import PromotionParameters, promote_model
from flows.scoring import ScoringParameters, batch_scoring
from flows.training import TrainingParameters, training_pipeline
from tasks.drift import DRIFT_EVENT


def build(
    data_path: str,
    model_name: str,
    label_column: str | None,
    cron: str = "0 2 * * *",
    timezone: str = "UTC",
    drift_interval_seconds: int = 3600,
    score_path: str | None = None,
) -> list:
    training = TrainingParameters(data_path=data_path, model_name=model_name, label_column=label_column)
    retrain_on_drift = DeploymentEventTrigger(
        name="retrain-on-drift",
        expect={DRIFT_EVENT},
        match={"prefect.resource.id": f"anomaly-distill.model.{model_name}"},
        parameters={"params": training.model_dump()},
    )
    return [
        training_pipeline.to_deployment(
            name="nightly-retrain",
            parameters={"params": training.model_dump()},
            schedules=[Cron(cron, timezone=timezone)],
            triggers=[retrain_on_drift],
            tags=["anomaly-distill"],
        ),
        drift_monitoring.to_deployment(
            name="drift-check",
            parameters={"params": DriftParameters(model_name=model_name).model_dump()},
            interval=drift_interval_seconds,
            tags=["anomaly-distill"],
        ),
        batch_scoring.to_deployment(
            name="batch-score",
            tags=["anomaly-distill"],
            parameters={
                "params": ScoringParameters(
                    data_path=score_path or data_path, model_uri=f"models:/{model_name}@champion"
                ).model_dump()
            },
        ),
        promote_model.to_deployment(
            name="promote-model",
            tags=["anomaly-distill"],
            parameters={"params": PromotionParameters(model_name=model_name).model_dump()},
        ),
    ]


def serve_all(**kwargs) -> None:
    serve(*build(**kwargs))
