"""Retraining tables are kept per model up to `retrain_keep`: older ones go, other models' tables stay."""

from datetime import datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from flows.drift import DriftParameters
from tasks.drift import prune_retraining_tables, retraining_table_path

START = datetime(2026, 11, 1, tzinfo=timezone.utc)


def tables(folder, model: str, count: int, first_hour: int = 0) -> list:
    paths = [retraining_table_path(folder, model, START + timedelta(hours=first_hour + i)) for i in range(count)]
    for path in paths:
        path.write_bytes(b"table")
    return paths


def test_the_newest_tables_of_the_model_are_kept_and_other_models_untouched(tmp_path):
    mine = tables(tmp_path, "fraud", 12)
    longer_name = tables(tmp_path, "fraud-v2", 3)  # "fraud-…" too, but another model's
    other = tables(tmp_path, "thyroid", 2)
    unrelated = tmp_path / "notes.parquet"
    unrelated.write_bytes(b"x")
    deleted = prune_retraining_tables(tmp_path, "fraud", keep=10, written=mine[-1])
    assert sorted(deleted) == mine[:2]
    assert sorted(p for p in tmp_path.iterdir()) == sorted([*mine[2:], *longer_name, *other, unrelated])


def test_the_table_just_written_is_kept_even_when_older_by_name(tmp_path):
    """A clock set back gives the new table an older name: it is still the one a retrain is about to read."""
    newer = tables(tmp_path, "fraud", 3, first_hour=10)
    written = tables(tmp_path, "fraud", 1)[0]
    prune_retraining_tables(tmp_path, "fraud", keep=1, written=written)
    assert sorted(tmp_path.iterdir()) == [written, newer[-1]]


def test_retention_defaults_to_ten_and_keeps_at_least_one():
    assert DriftParameters().retrain_keep == 10
    with pytest.raises(ValidationError, match="retrain_keep"):
        DriftParameters(retrain_keep=0)
