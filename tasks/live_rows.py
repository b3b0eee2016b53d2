"""A model's recent live rows and the labels people gave them (`feedback`), for a training run that learns from
them beside its file (TrainingParameters.live_window): the nightly deployment's."""

from contextlib import contextmanager
from datetime import datetime, timezone

import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from anomaly_distill.data import DataError
from stores.live_store import LiveStore
from tasks import drift as d


class StoreUnreachable(RuntimeError):
    """The live store (or its feedback beside it) could not be read: nothing can be said about its rows."""


@contextmanager
def reading_store(live_url: str):
    """A URL that names no store is bad input (exit 2); a store that does not answer is unreachable (exit 3)."""
    try:
        yield
    except (ImportError, ValueError) as error:  # no filesystem for the URL's scheme, or not a URL at all
        raise DataError(f"the live store {live_url!r} cannot be opened: {error}") from None
    except OSError as error:
        raise StoreUnreachable(f"the live store at {live_url} could not be read ({type(error).__name__}: {error})")


@task(cache_policy=NO_CACHE)
def live_rows(live_url: str, model_name: str, window: str) -> tuple[pd.DataFrame, pd.Series]:
    """The rows of `model_name` the live store logged in the last `window`, and the latest label of each (NaN where
    nobody labelled it). A store that does not answer stops the run: a file-only run would hide that."""
    since = datetime.now(timezone.utc) - pd.Timedelta(window)
    with reading_store(live_url):
        rows = LiveStore(live_url).read(since=since)
        feedback = d.feedback_store(live_url).read()
    rows = rows[rows["model_name"] == model_name].reset_index(drop=True) if len(rows) else rows
    if rows.empty:
        return rows, pd.Series(dtype="float64")
    return rows, d.feedback_labels(rows, feedback)
