"""batch-scoring: resolve model → stream the file through its contract check and the model → output + live store."""

import uuid
from datetime import datetime, timezone

import pandas as pd
from prefect import flow

from anomaly_distill.errors import DataError
from flows.parameters import ScoringParameters
from flows.runners import with_runner
from stores.live_store import ROW_ID, TIMESTAMP, LiveStore, live_store_url
from stores.registry import resolve_model
from stores.storage import storage_error
from tasks import scoring as s

IMAGE_CHUNK = 256  # images decoded and scored together


@flow(name="batch-scoring", log_prints=True)
def batch_scoring(params: ScoringParameters) -> dict:
    model = resolve_model(params.model_uri)
    contract = s.load_contract(model)
    result = SCORE_BY_KIND[contract.kind](params, model, contract)
    speed = result["rows_per_second"]
    print(f"scored {result['rows']:,} rows with {model.name} v{model.version} at {speed:,.0f} rows/s")
    return {**result, "model_name": model.name, "model_version": model.version, "out_path": params.out_path}


def _score_streamed(params: ScoringParameters, model, contract) -> dict:
    """Tabular rows: the file streams through in batches of chunk_rows (memory holds a few batches)."""
    live_url = live_store_url(params.live_store)
    path, rows, options = params.data_path, params.chunk_rows, (params.threshold, params.explain)
    return s.score_file(model, contract, path, rows, options, live_url, params.out_path, params.task_runner)


def _score_series(params: ScoringParameters, model, contract) -> dict:
    """A series is read whole: every point's score needs the window of points before it."""
    from tasks import inputs  # here: the training tasks import what tabular scoring needs no memory for

    features = s.validate_input(inputs.load_data(params.data_path), contract)
    if params.explain:
        raise DataError(f"explanations are available for tabular models; {model.name} scores a time series")
    scored, rows_per_second = s.score_in_chunks(
        model.uri, features, params.chunk_rows, params.threshold, s.overlap(contract)
    )
    stored = s.store_scored(features, scored, model, live_store_url(params.live_store), params.out_path)
    return {"rows": len(stored), "rows_per_second": rows_per_second, "anomalies": int(stored["is_anomaly"].sum())}


def _score_images(params: ScoringParameters, model, contract) -> dict:
    """A folder of images (or a manifest): all checked first, then scored a chunk at a time. The live store keeps
    each image's drift features (statistics, embedding) beside its score; the output file its path and score."""
    # the image tasks (torch, PIL) only for an image model
    from tasks import images as im

    if params.explain:
        raise DataError(f"explanations are available for tabular models; {model.name} scores images")
    files = im.check_image_files(params.data_path, contract)
    detector = s.load_pyfunc(model.uri).unwrap_python_model().detector
    rows, speed = im.score_image_files(detector, files, min(params.chunk_rows, IMAGE_CHUNK), params.threshold)
    when = datetime.now(timezone.utc)
    rows = rows.assign(model_name=model.name, model_version=model.version)
    rows[ROW_ID] = [uuid.uuid4().hex for _ in range(len(rows))]
    if params.out_path:  # first: a failure here leaves no stored rows that a rerun would store twice
        s.write_output(rows.drop(columns=contract.features).assign(**{TIMESTAMP: pd.Timestamp(when)}), params.out_path)
    live_url = live_store_url(params.live_store)
    try:
        LiveStore(live_url).append(rows, when)
    except OSError as error:
        raise storage_error(f"the live store at {live_url}", error) from error
    return {"rows": len(rows), "rows_per_second": speed, "anomalies": int(rows["is_anomaly"].sum())}


# A table streams through in batches; a series is read whole (each point needs its window); images by folder.
SCORE_BY_KIND = {"tabular": _score_streamed, "timeseries": _score_series, "image": _score_images}


def run_batch_scoring(params: ScoringParameters) -> dict:
    return with_runner(batch_scoring, params.task_runner, params.dask_address)(params)
