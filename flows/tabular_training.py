"""The table branch of training-pipeline: rows (a sample of a file larger than memory), with the live rows of the
last live_window, checked against the data contract and split; then the shared teacher → student steps."""

import numpy as np
import pandas as pd

from anomaly_distill.data import DataError, table_from_frame
from anomaly_distill.tabular import pipeline
from flows.stages import Prepared, Stopwatch, distill, engine_student_facts
from stores.live_store import live_store_url
from tasks import common, drift, inputs, registration
from tasks.drift import LABEL
from tasks.live_rows import live_rows

student_facts = engine_student_facts


def train(params, run_id: str, runs: list, clock: Stopwatch):
    """(the parameters, with the live rows' settings when live_window added them; Prepared; Distilled)."""
    frame = _load_rows(params, run_id)
    if params.live_window:
        frame, params = _with_live_rows(params, frame, run_id)
    prepared = _prepare_table(params, frame, run_id)
    return params, prepared, distill(params, prepared, run_id, runs, clock)


def _load_rows(params, run_id: str) -> pd.DataFrame:
    """A table may be a sample of a file larger than memory."""
    sampling = params.max_rows_in_memory, params.engine.seed, run_id, (params.segment_column,)
    return inputs.load_training_rows(params.data_path, *sampling)


def _with_live_rows(params, frame: pd.DataFrame, run_id: str):
    """The file's rows + this model's live rows of the last `live_window`, each with the label it has (the live
    rows' from feedback; an empty cell, not reviewed, for the rest), as the drift retrain builds its table: the
    gate's held-out rows are drawn from the live rows, range checks are off. No live rows yet: the file alone."""
    url, window = live_store_url(params.live_store), params.live_window
    live, labels = live_rows(url, params.model_name, window)
    if live.empty:
        print(
            f"no live rows of {params.model_name} in the last {window} in the live store at {url}: "
            f"training on {params.data_path} alone"
        )
        common.record_run(run_id, params={"live_rows": 0})
        return frame, params
    table, label_column = _file_and_live(frame, live, labels, params.label_column)
    given = int(labels.notna().sum())
    print(
        f"training on {len(frame):,} rows of {params.data_path} + {len(live):,} live rows of the last {window} "
        f"({given:,} labelled through feedback, {int((labels == 1).sum()):,} of them anomalies; the rest not "
        "reviewed); the held-out rows come from the live rows; range checks off"
    )
    common.record_run(run_id, params={"live_rows": len(live), "live_labelled_rows": given})
    update = {"label_column": label_column, "holdout_column": drift.LIVE_ROW, "check_ranges": False}
    return table, params.model_copy(update=update)


def _file_and_live(frame: pd.DataFrame, live: pd.DataFrame, labels: pd.Series, label_column: str | None):
    """(the table, its label column or None): `drift.retraining_table` with the file's rows as the reference."""
    features = [c for c in frame.columns if c != label_column]
    if label_column and label_column not in frame.columns:
        raise DataError(f"label column {label_column!r} not found; columns are {list(frame.columns)}")
    if LABEL in features:
        raise DataError(
            f"live_window: the file has a column {LABEL!r} but no label column is set (label_column, "
            f"deploy --label-column): set it, or rename that feature"
        )
    missing = [c for c in features if c not in live.columns]
    if missing:
        raise DataError(f"the live rows lack the file's columns {missing}: were they scored by another model?")
    reference = frame.rename(columns={label_column: LABEL}) if label_column else frame
    table = drift.retraining_table(reference, live, features, labels)
    if LABEL not in table:
        return table, None
    return table.rename(columns={LABEL: label_column or LABEL}), label_column or LABEL


def _prepare_table(params, frame: pd.DataFrame, run_id: str) -> Prepared:
    candidates = None
    if params.holdout_column:
        if params.holdout_column not in frame.columns:
            raise DataError(f"holdout column {params.holdout_column!r} not found; columns are {list(frame.columns)}")
        candidates = frame[params.holdout_column].to_numpy() == 1
        frame = frame.drop(columns=[params.holdout_column])
    segment = params.segment_column
    features = frame.drop(columns=[segment], errors="ignore") if segment else frame
    contract = inputs.validate_data(
        features,
        params.label_column,
        inputs.reference_contract(params.model_name),
        run_id,
        params.check_ranges,
        segment,
    )
    digest = inputs.log_training_data(run_id, frame, params.data_path, params.label_column, segment)
    if candidates is not None:  # another hold-out is another split: neither teacher nor version may be reused
        digest = common.digest_of(digest, "holdout", common.digest_of(np.flatnonzero(candidates).tolist()))
    train, test = pipeline.split(table_from_frame(frame, params.label_column, segment), params.engine, candidates)
    return Prepared(
        contract,
        digest,
        train,
        test,
        {params.engine.teacher.kind: params.engine},
        lambda s: s,
        test,
        example=lambda _: test.scoring_frame().head(5),
        reference=lambda detector: registration.reference_snapshot(detector, train, 0),
    )
