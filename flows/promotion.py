"""promote-model: point the champion alias at a version, or roll it back (the UI's manual lever)."""

from typing import Literal

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from pydantic import Field

from anomaly_distill.config import OptionalText, StrictModel
from stores import registry


class PromotionParameters(StrictModel):
    model_name: str = Field("anomaly-detector", description="Registered model name.")
    action: Literal["promote", "rollback"] = Field("promote", description="promote a version, or roll back.")
    version: OptionalText = Field(None, description="Version to promote (ignored for rollback).")


@task(cache_policy=NO_CACHE, retries=2, retry_delay_seconds=5)
def current_champion(model_name: str) -> str | None:
    champion = registry.version_by_alias(model_name, registry.CHAMPION)
    return None if champion is None else str(champion.version)


@task(cache_policy=NO_CACHE, retries=2, retry_delay_seconds=5)
def apply(params: PromotionParameters, champion_before: str | None) -> dict:
    """Retried on a server hiccup; a rollback retried after it went through does not roll back twice."""
    if params.action == "rollback":
        old, new = registry.rollback(params.model_name, expected_from=champion_before)
        return {"model_name": params.model_name, "champion": new, "previous": old}
    if params.version is None:
        raise registry.RegistryError("promote needs a version")
    previous = registry.promote(params.model_name, params.version, "manual promotion (promote-model flow)")
    return {"model_name": params.model_name, "champion": str(params.version), "previous": previous}


@flow(name="promote-model", log_prints=True)
def promote_model(params: PromotionParameters) -> dict:
    result = apply(params, current_champion(params.model_name))
    print(f"{result['model_name']}: champion is now v{result['champion']} (was v{result['previous']})")
    return result
