"""What the training tasks share: retrying I/O on outages, digests, and recording params/tags/metrics."""

import hashlib

from prefect import task
from prefect.cache_policies import NO_CACHE

from anomaly_distill.data import (
    DataError,
)
from tasks import tracking

DATA_DIGEST = "data_digest"  # one digest of the data: card, parameter and MLflow dataset


REFERENCE_LABEL = "label"  # the true label in the reference snapshot, when training had labels


def _outage(task, task_run, state) -> bool:
    """Retry when a server did not answer; bad data or a missing version fails at once."""
    return not isinstance(state.result(raise_on_failure=False), (DataError, LookupError))


# Tracking/registry I/O is retried (a server restarting); the compute tasks are cached instead.
IO_RETRIES = {"retries": 2, "retry_delay_seconds": 3, "retry_condition_fn": _outage}


def digest_of(*parts) -> str:
    return hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()[:24]


@task(cache_policy=NO_CACHE, **IO_RETRIES)
def record_run(run_id: str, params: dict | None = None, tags: dict | None = None, metrics: dict | None = None):
    """Params, tags or metrics the flow sets between stages: retried like every other tracking call, so a
    tracking server that restarts mid-run costs a retry, not the run."""
    if params:
        tracking.log_params(run_id, params)
    if tags:
        tracking.set_tags(run_id, tags)
    if metrics:
        tracking.log_metrics(run_id, metrics)


@task(cache_policy=NO_CACHE, **IO_RETRIES)
def start_child_runs(parent_id: str, *names: str) -> list[str]:
    """The teacher/student child runs of a training run, one per name."""
    return [tracking.start_child_run(parent_id, name) for name in names]


@task(cache_policy=NO_CACHE, **IO_RETRIES)
def log_history(run_id: str, history: list[dict]) -> None:
    """A model's training curve (loss per epoch) as step metrics."""
    tracking.log_history(run_id, history)
