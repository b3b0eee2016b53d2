"""MLflow model registry: versions, the `champion`/`challenger` aliases, promotion history and rollback."""

import json
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from uuid import UUID

from mlflow.exceptions import MlflowException

from anomaly_distill.contract import AnyContract, contract_from_dict
from stores.mlflow_client import client, load_json_artifact, tracking_uri

CHAMPION, CHALLENGER = "champion", "challenger"
HISTORY_TAG = "champion_history"  # JSON list of earlier champion versions, newest last
TRAINING_KEY_TAG = "training_key"  # digest of data + parameters + code: the same key is the same model


CONTRACT_FILE = "contract.json"  # artifacts of a version's run
REFERENCE_FILE = "reference.parquet"


class RegistryError(LookupError):
    pass


class RegistryUnreachable(RuntimeError):
    """The registry did not answer a read. Unlike "no such alias" it says nothing about the champion, so the gate
    and promotion stop (exit 3) instead of carrying on as if there were none."""


def _not_found(error: MlflowException) -> bool:
    """The registry answered that the model, version or alias does not exist (sqlite store and REST alike)."""
    return error.error_code == "RESOURCE_DOES_NOT_EXIST" or (
        error.error_code == "INVALID_PARAMETER_VALUE" and "not found" in str(error)
    )


def _unreachable(what: str, error: Exception) -> RegistryUnreachable:
    code = getattr(error, "error_code", type(error).__name__)
    return RegistryUnreachable(
        f"the MLflow model registry at {tracking_uri()} could not be read ({what}; {code}: {str(error)[:200]})"
    )


@dataclass
class ModelRef:
    uri: str
    name: str
    version: str
    run_id: str


def resolve_model(uri: str) -> ModelRef:
    """models:/NAME@alias or models:/NAME/VERSION -> the concrete version (so logs say which one scored)."""
    if not uri.startswith("models:/"):
        raise RegistryError(f"model URI must look like models:/NAME@champion or models:/NAME/3, got {uri!r}")
    name, _, ref = uri.removeprefix("models:/").replace("@", "/@").partition("/")
    version = version_by_alias(name, ref[1:]) if ref.startswith("@") else get_version(name, ref)
    if version is None:
        raise RegistryError(f"model {name!r} has no version with alias {ref[1:]!r}")
    return ModelRef(f"models:/{name}/{version.version}", name, str(version.version), version.run_id)


def load_contract(run_id: str) -> AnyContract:
    """The data contract saved with a version's run."""
    return contract_from_dict(load_json_artifact(run_id, CONTRACT_FILE))


def version_by_alias(name: str, alias: str):
    """The version `alias` points at; None only when the registry says the model or the alias does not exist."""
    try:
        return client().get_model_version_by_alias(name, alias)
    except MlflowException as error:
        if _not_found(error):
            return None
        raise _unreachable(f"{name}@{alias}", error) from error


def get_version(name: str, version: str | int):
    try:
        return client().get_model_version(name, str(version))
    except MlflowException as error:
        if _not_found(error):
            raise RegistryError(f"model {name!r} has no version {version}") from None
        raise _unreachable(f"{name} v{version}", error) from error


def version_by_training_key(name: str, key: str):
    """The version an earlier run (perhaps one that crashed after registering) made from the same inputs."""
    try:
        found = client().search_model_versions(f"name='{name}' and tags.{TRAINING_KEY_TAG} = '{key}'")
    except MlflowException as error:  # not "none yet": that would register a second version of the same model
        raise _unreachable(f"versions of {name} with training key {key}", error) from error
    return min(found, key=lambda v: int(v.version), default=None)


def register(model_uri: str, model_id: str, name: str, run_id: str, tags: dict[str, str]):
    """New version of `name`, aliased `challenger`."""
    mlflow_client = client()
    try:
        mlflow_client.create_registered_model(name, description="Distilled anomaly-detection student.")
    except MlflowException as error:  # it exists (maybe created by a concurrent run a moment ago)
        if error.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    version = mlflow_client.create_model_version(name, model_uri, run_id=run_id, tags=tags, model_id=model_id)
    mlflow_client.set_registered_model_alias(name, CHALLENGER, version.version)
    return version


LOCK_PREFIX = "anomaly-distill-champion-"
PERSON, PIPELINE = "person", "pipeline"  # who moved the champion
MOVED_BY_TAG, MOVED_AT_TAG = "champion_moved_by", "champion_moved_at"  # registered-model tags
MOVED_TO_TAG = "champion_recorded"  # the version this project last pointed `champion` at
DEMOTED_TAG = "demoted"  # version tag: a person rolled it back; only a person brings it back
BEST_TAG = "best_since_person"  # the best champion since a person last chose one: every challenger is held to it


LEASE_SECONDS = 300  # a holder that dies frees the lock after this; a live one renews it (Prefect's own renewal)
BUSY_RETRY_SECONDS, BUSY_LIMIT_SECONDS = 0.05, 30


@contextmanager
def champion_lock(name: str, timeout_seconds: float = 300):
    """Held by every move of a model's `champion` alias: a Prefect global concurrency limit of one slot.

    Chosen over a compare-and-set on the registry because MLflow has no conditional write (a tag used as a
    version counter would itself be a read-modify-write); the limit lives in the Prefect API that every run,
    worker and CLI call already talks to, so promotions from any process are serialised."""
    # Prefect's client (~1.2 s) only for the promotion lock and forms: the service reads the registry without it
    from prefect.client.orchestration import get_client
    from prefect.concurrency._leases import maintain_concurrency_lease  # private, but what prefect.concurrency uses
    from prefect.exceptions import ObjectAlreadyExists

    limit = f"{LOCK_PREFIX}{name}"
    with get_client(sync_client=True) as prefect:
        try:
            prefect.upsert_global_concurrency_limit_by_name(limit, 1)
        except ObjectAlreadyExists:  # created a moment ago by a concurrent promotion
            pass
        lease_id = _acquire_lease(limit, timeout_seconds)
        try:
            with maintain_concurrency_lease(lease_id, LEASE_SECONDS, raise_on_lease_renewal_failure=True):
                yield
        finally:
            prefect.release_concurrency_slots_with_lease(lease_id)


def _acquire_lease(limit: str, timeout_seconds: float):
    """The slot's lease id. Asked for directly rather than through `prefect.concurrency`: on a SQLite-backed
    Prefect API a write that meets another one is answered 503 (busy), and Prefect's client then backs off 2 s
    before asking again, a wait every training run paid. A busy answer is asked again after 50 ms here; a held
    slot (423) after the server's Retry-After, until `timeout_seconds`; a server busy for longer than
    BUSY_LIMIT_SECONDS, or anything else (the API down), is raised."""
    # Prefect's client (~1.2 s) only for the promotion lock: the service reads the registry without it
    import httpx

    # Prefect's client (~1.2 s) only for the promotion lock and forms: the service reads the registry without it
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_CLIENT_MAX_RETRIES, temporary_settings

    start = time.monotonic()
    with temporary_settings({PREFECT_CLIENT_MAX_RETRIES: 0}), get_client(sync_client=True) as prefect:
        while True:
            try:
                response = prefect.increment_concurrency_slots_with_lease([limit], 1, "concurrency", LEASE_SECONDS)
                return UUID(response.json()["lease_id"])
            except httpx.HTTPStatusError as error:
                waited, status = time.monotonic() - start, error.response.status_code
                pause = float(error.response.headers.get("Retry-After", BUSY_RETRY_SECONDS))
                if status == 423:  # held by another promotion
                    if waited >= timeout_seconds:
                        held = f"another promotion held {limit} for over {timeout_seconds:.0f} s"
                        raise TimeoutError(held) from error
                    time.sleep(min(pause, timeout_seconds - waited))
                elif status == 503 and waited <= BUSY_LIMIT_SECONDS:  # a busy SQLite API
                    time.sleep(pause)
                else:
                    raise


def set_version_tags(name: str, version: str, tags: dict[str, str]) -> None:
    for key, value in tags.items():
        client().set_model_version_tag(name, str(version), key, value)


def describe_version(name: str, version: str, description: str) -> None:
    client().update_model_version(name, str(version), description=description)


def champion_history(name: str) -> list[str]:
    return json.loads(client().get_registered_model(name).tags.get(HISTORY_TAG, "[]"))


def promote(name: str, version: str | int, reason: str, by: str = PERSON) -> str | None:
    """Point `champion` at `version`; returns the previous champion's version (kept in the history tag).

    A person (`by=PERSON`: the CLI, the promote-model flow) may bring back a version a person demoted."""
    with champion_lock(name):
        return move_champion(name, version, reason, by)


def notice_outside_moves(name: str) -> bool:
    """A champion moved outside this project (the MLflow UI's alias editor, the REST API) is a person's decision:
    its predecessor goes on the history, so `rollback` returns to it, and the move is recorded as a person's.
    MLflow keeps no time for an alias change, so the move is dated when it is noticed. The caller holds
    `champion_lock(name)`. Returns True when such a move was found."""
    current = version_by_alias(name, CHAMPION)
    tags = client().get_registered_model(name).tags
    recorded = tags.get(MOVED_TO_TAG)
    if current is None or recorded is None or recorded == str(current.version):
        return False
    mlflow_client = client()
    history = champion_history(name) + [recorded]
    mlflow_client.set_registered_model_tag(name, HISTORY_TAG, json.dumps(history))
    _record_move(name, PERSON, str(current.version))
    mark_best(name, str(current.version))
    _tag_promotion(name, str(current.version), f"moved from v{recorded} outside anomaly-distill (noticed)", recorded)
    return True


def best_champion(name: str) -> str | None:
    return client().get_registered_model(name).tags.get(BEST_TAG)


def mark_best(name: str, version: str) -> None:
    client().set_registered_model_tag(name, BEST_TAG, str(version))


def move_champion(name: str, version: str | int, reason: str, by: str, new_best: bool = False) -> str | None:
    """The move itself; the caller holds `champion_lock(name)`. A person's choice (or a challenger that beat the
    best champion since one) becomes the mark later challengers are held to."""
    notice_outside_moves(name)
    target = get_version(name, version)
    previous = version_by_alias(name, CHAMPION)
    mlflow_client = client()
    previous_version = None if previous is None else str(previous.version)
    if previous_version == str(target.version):
        return previous_version
    if previous_version is not None:
        mlflow_client.set_registered_model_tag(
            name, HISTORY_TAG, json.dumps(champion_history(name) + [previous_version])
        )
    mlflow_client.set_registered_model_alias(name, CHAMPION, str(target.version))
    _record_move(name, by, str(target.version))
    if by == PERSON or new_best or best_champion(name) is None:
        mark_best(name, str(target.version))
    _tag_promotion(name, str(target.version), reason, previous_version)
    if by == PERSON and DEMOTED_TAG in target.tags:
        mlflow_client.delete_model_version_tag(name, str(target.version), DEMOTED_TAG)
    return previous_version


def _record_move(name: str, by: str, version: str) -> None:
    mlflow_client = client()
    mlflow_client.set_registered_model_tag(name, MOVED_BY_TAG, by)
    mlflow_client.set_registered_model_tag(name, MOVED_AT_TAG, datetime.now(timezone.utc).isoformat())
    mlflow_client.set_registered_model_tag(name, MOVED_TO_TAG, version)


def last_move(name: str) -> tuple[str | None, datetime | None]:
    """Who moved the champion last (PERSON or PIPELINE) and when; (None, None) before the first recorded move."""
    tags = client().get_registered_model(name).tags
    when = tags.get(MOVED_AT_TAG)
    return tags.get(MOVED_BY_TAG), None if when is None else datetime.fromisoformat(when)


def rollback(name: str, expected_from: str | None = None) -> tuple[str, str]:
    """Move `champion` back to the previous champion; returns (from_version, to_version).

    Idempotent with `expected_from`: when the champion is no longer that version, the rollback was done already
    (e.g. a retried task) and nothing moves again."""
    with champion_lock(name):
        return _rollback(name, expected_from)


def _rollback(name: str, expected_from: str | None) -> tuple[str, str]:
    notice_outside_moves(name)
    history = champion_history(name)
    current = version_by_alias(name, CHAMPION)
    if current is not None and expected_from is not None and str(current.version) != str(expected_from):
        return str(expected_from), str(current.version)
    if not history or current is None:
        raise RegistryError(f"model {name!r} has no previous champion to roll back to")
    target = history.pop()
    mlflow_client = client()
    mlflow_client.set_registered_model_alias(name, CHAMPION, target)
    mlflow_client.set_registered_model_tag(name, HISTORY_TAG, json.dumps(history))
    _record_move(name, PERSON, target)
    mark_best(name, target)
    stamp = datetime.now(timezone.utc).isoformat()
    mlflow_client.set_model_version_tag(name, current.version, DEMOTED_TAG, f"rolled back by a person at {stamp}")
    _tag_promotion(name, target, f"rollback from v{current.version}", str(current.version))
    return str(current.version), target


PROMOTION_TAG = "promotion"


def _tag_promotion(name: str, version: str, reason: str, replaced: str | None = None) -> None:
    """Why and when the version last became champion (dated: a later run's gate tags may say otherwise); the
    champion it replaced says so in the past tense, not "champion since" any more."""
    stamp = f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M:%S} UTC"
    mlflow_client = client()
    mlflow_client.set_model_version_tag(name, version, PROMOTION_TAG, f"champion since {stamp}: {reason}")
    if replaced is None or str(replaced) == str(version):
        return
    was = get_version(name, replaced).tags.get(PROMOTION_TAG, "")
    became = was.removeprefix("champion since ").partition(" UTC")[0] if was.startswith("champion since") else None
    history = f"was champion from {became} UTC to {stamp}" if became else f"was champion until {stamp}"
    mlflow_client.set_model_version_tag(name, replaced, PROMOTION_TAG, f"{history}; replaced by v{version}")


PROMOTE_DEPLOYMENT = "promote-model/promote-model"


def version_choices(name: str) -> list[str]:
    """The promote form's choices: empty (a rollback needs none), then every version, newest first."""
    try:
        versions = client().search_model_versions(f"name='{name}'")
    except MlflowException:
        versions = []
    return [""] + sorted((str(v.version) for v in versions), key=int, reverse=True)


def with_version_choices(schema: dict, name: str) -> dict:
    schema["definitions"]["PromotionParameters"]["properties"]["version"]["enum"] = version_choices(name)
    return schema


def refresh_version_choices(name: str) -> bool:
    """Puts the registered versions into the promote-model deployment's form (a dropdown, not free text), when a
    Prefect server serves that deployment for this model. Returns whether it did."""
    # Prefect's client (~1.2 s) only for the promotion lock and forms: the service reads the registry without it
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as prefect:
        try:
            deployment = prefect.read_deployment_by_name(PROMOTE_DEPLOYMENT)
        except ObjectNotFound:
            return False
        if deployment.parameters.get("params", {}).get("model_name") != name:
            return False
        schema = with_version_choices(deployment.parameter_openapi_schema, name)
        prefect.request(
            "PATCH", "/deployments/{id}", path_params={"id": deployment.id}, json={"parameter_openapi_schema": schema}
        )
    return True
