"""Training stage 1, the data: load, sample, validate (Great Expectations) and log it as an MLflow dataset."""

from pathlib import Path

import pandas as pd
from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from anomaly_distill.contract import AnyContract, TabularContract
from anomaly_distill.data import (
    frame_digest,
    read_frame,
    sample_file,
    table_from_frame,
)
from stores import registry
from tasks import tracking
from tasks.common import DATA_DIGEST, IO_RETRIES
from tasks.validation import ValidationFailed, derive_contract, validate_frame


@task(cache_policy=NO_CACHE)
def load_data(path: str) -> pd.DataFrame:
    return read_frame(path)


@task(cache_policy=NO_CACHE)
def load_training_rows(path: str, max_rows: int, seed: int, run_id: str, text_columns: tuple) -> pd.DataFrame:
    """The training table, or a uniform sample of `max_rows` rows when the file has more (streamed, so memory holds
    the sample): missing, infinite or text cells anywhere in a sampled file fail here, before any training."""
    if Path(path).suffix.lower() not in (".csv", ".parquet", ".pq"):
        return read_frame(path)
    frame, profile = sample_file(path, max_rows, seed)
    tracking.log_params(run_id, {"file_rows": profile.rows, "rows_sampled": len(frame)})
    frame.attrs[DATA_DIGEST] = profile.digest  # the whole file's, read by log_training_data
    problems = profile.problems(skip=text_columns) if profile.sampled < profile.rows else []
    if problems:
        tracking.set_tags(run_id, {"validation": "failed"})
        raise ValidationFailed([f"whole file ({profile.rows:,} rows): {problem}" for problem in problems])
    return frame


@task(cache_policy=NO_CACHE, **IO_RETRIES)
def reference_contract(model_name: str) -> AnyContract | None:
    """The data contract saved with the current champion, or None on a first run."""
    champion = registry.version_by_alias(model_name, registry.CHAMPION)
    return None if champion is None else registry.load_contract(champion.run_id)


@task(cache_policy=NO_CACHE, **IO_RETRIES)
def validate_data(
    frame: pd.DataFrame,
    label_column: str | None,
    contract: AnyContract | None,
    run_id: str,
    check_ranges: bool = True,
    segment_column: str | None = None,
) -> TabularContract:
    """Great Expectations gate; raises ValidationFailed (listing every failed expectation) before any training.

    Returns the contract of the new model: derived from its own training data.
    """
    if contract is not None and not contract.takes_table_rows:  # no columns, ranges or rows to check a table by
        raise ValidationFailed(
            [
                f"the champion scores {contract.kind} input (columns {contract.input_columns}); "
                "train a table under another model name"
            ]
        )
    report = validate_frame(frame, label_column, contract, check_ranges)
    tracking.log_json(run_id, report.result, "ge_result.json", "validation")
    create_markdown_artifact(report.markdown(), key="data-validation", description="Great Expectations result")
    if not report.success:
        tracking.set_tags(run_id, {"validation": "failed"})
        raise ValidationFailed(report.failures)
    return derive_contract(frame, label_column, segment_column)


@task(cache_policy=NO_CACHE, **IO_RETRIES)
def log_training_data(
    run_id: str, frame: pd.DataFrame, source: str, label_column: str | None, segment_column: str | None = None
) -> str:
    """The data's one digest (the whole file's when it was streamed, else the rows') as the MLflow dataset's digest
    and the `data_digest` parameter the model card shows; returns the digest of the rows and labels trained on,
    part of the teacher's cache key."""
    table = table_from_frame(frame, label_column, segment_column)
    rows_digest = frame_digest(table.scoring_frame(), table.labels)
    shown = frame.attrs.get(DATA_DIGEST) or rows_digest
    tracking.log_dataset(run_id, frame, source, label_column, shown)
    tracking.log_params(run_id, {DATA_DIGEST: shown})
    return rows_digest
