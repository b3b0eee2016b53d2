"""The data contract saved with every model version, and the one check every scoring input goes through.

A contract is typed (tabular | timeseries, told apart by `kind`) and versioned (`schema_version`). Training derives
it from the training data; Great Expectations validates new training data against it; batch scoring, the HTTP
service, drift monitoring and the pyfunc call `check_input` on whatever arrives, which returns float64 features in
the model's column order or raises a DataError naming the column and the row.
"""

import json
from pathlib import Path
from typing import Annotated, ClassVar, Literal

import numpy as np
import pandas as pd
from pydantic import Field, TypeAdapter

from anomaly_distill.config import SeriesConfig, StrictModel
from anomaly_distill.data import DataError, check_segments
from anomaly_distill.image.image_data import image_feature_columns, image_problems
from anomaly_distill.series.timeseries import series_from_frame

SCHEMA_VERSION = 1
FLOAT32_MAX = float(np.finfo(np.float32).max)  # the student computes in float32: larger values become inf
MAX_EXACT_INTEGER = 2**53  # beyond this an integer has no exact float64 value


class TabularContract(StrictModel):
    kind: Literal["tabular"] = "tabular"
    schema_version: int = SCHEMA_VERSION
    features: list[str]
    label_column: str | None = None
    segment_column: str | None = None
    ranges: dict[str, tuple[float, float]] = Field(default_factory=dict)
    mostly: float = 0.99
    min_rows: int = 10
    reference_rows: int = 0

    @property
    def input_columns(self) -> list[str]:
        return self.features + ([self.segment_column] if self.segment_column else [])

    schema_columns = input_columns  # what the logged model's input schema names
    context_rows: ClassVar[int] = 0  # rows each scoring chunk repeats from the previous one
    # Whether a stored live row can be scored again on its own by another version (drift compares one version's
    # scores): a row can; a series point needs its history, an image's stored features are not the image.
    rescorable_rows: ClassVar[bool] = True
    learns_online: ClassVar[bool] = False  # whether the served model learns from each point it scores
    takes_table_rows: ClassVar[bool] = True  # its input is a table's rows: a table may be trained under its name

    @property
    def rows_score_alone(self) -> bool:
        """Each record is one row of the input columns that one model scores on its own (no segment to route by, no
        history): what the service's fast path needs."""
        return not self.segment_column

    def check(self, frame: pd.DataFrame, first_row: int = 0) -> pd.DataFrame:
        return _check_table(self, frame, first_row)


class SeriesContract(StrictModel):
    kind: Literal["timeseries"] = "timeseries"
    schema_version: int = SCHEMA_VERSION
    timestamp_column: str
    value_columns: list[str]
    series: SeriesConfig
    gaps: int = 0
    digest: str = ""

    @property
    def features(self) -> list[str]:
        """What drift monitoring compares (with the score)."""
        return self.value_columns

    @property
    def input_columns(self) -> list[str]:
        return [self.timestamp_column, *self.value_columns]

    @property
    def window(self) -> int:
        """Points of history each score needs from the input (an online model keeps its past in its state)."""
        return 1 if self.learns_online else self.series.window

    schema_columns = input_columns
    rescorable_rows: ClassVar[bool] = False
    takes_table_rows: ClassVar[bool] = False
    rows_score_alone: ClassVar[bool] = False

    @property
    def learns_online(self) -> bool:
        return self.series.mode == "online"

    @property
    def context_rows(self) -> int:
        """A series point needs its window's history: each scoring chunk repeats that many rows."""
        return self.window - 1

    def check(self, frame: pd.DataFrame, first_row: int = 0) -> pd.DataFrame:
        return _check_series(self, frame)


class ImageContract(StrictModel):
    """Images: scored from a `path` column (files) or an `image` column (encoded PNG/JPEG bytes)."""

    kind: Literal["image"] = "image"
    schema_version: int = SCHEMA_VERSION
    size: int
    channels: int
    min_size: int
    embedding_dim: int = 0  # width of the student's embedding, monitored for drift (0: statistics only)

    @property
    def features(self) -> list[str]:
        """What drift monitoring compares (with the score): image statistics and the student's embedding."""
        return image_feature_columns(self.channels, self.embedding_dim)

    @property
    def input_columns(self) -> list[str]:
        return ["path"]

    @property
    def schema_columns(self) -> list[str]:
        return ["path", "image"]  # a file path or the encoded bytes

    context_rows: ClassVar[int] = 0
    rescorable_rows: ClassVar[bool] = False
    learns_online: ClassVar[bool] = False
    takes_table_rows: ClassVar[bool] = False
    rows_score_alone: ClassVar[bool] = False

    def check(self, frame: pd.DataFrame, first_row: int = 0) -> pd.DataFrame:
        return _check_images(self, frame)


AnyContract = TabularContract | SeriesContract | ImageContract
Contract = Annotated[AnyContract, Field(discriminator="kind")]
_ADAPTER = TypeAdapter(Contract)


def contract_from_dict(payload: dict) -> AnyContract:
    """Parses a saved contract; contracts saved before the schema was versioned are upgraded first."""
    payload = dict(payload)
    if "schema_version" not in payload:
        payload = _upgrade_unversioned(payload)
    return _ADAPTER.validate_python(payload)


def _upgrade_unversioned(payload: dict) -> dict:
    kind = payload.pop("modality", None) or "tabular"
    if kind == "timeseries":
        return {
            "kind": kind,
            "timestamp_column": payload["timestamp_column"],
            "value_columns": payload["value_columns"],
            "series": payload["series"],
            "gaps": payload.get("gaps", 0),
            "digest": payload.get("digest", ""),
        }
    known = set(TabularContract.model_fields)
    return {"kind": kind, **{k: v for k, v in payload.items() if k in known}}


def contract_json(contract: AnyContract) -> str:
    return contract.model_dump_json(indent=2)


def contract_to_dict(contract: AnyContract) -> dict:
    return json.loads(contract.model_dump_json())


def check_records(contract: AnyContract, records: list) -> pd.DataFrame:
    """JSON records (the service's request body) as the model's checked input rows (a series model: a recent
    history, oldest first). The one check of a request: the service's fast paths take only records it accepts."""
    if not records:
        raise DataError("no records: send a JSON list of objects, one per row")
    expected = set(contract.input_columns)
    ignored = {getattr(contract, "label_column", None)}  # a training label sent along is ignored
    for i, record in enumerate(records):
        if not isinstance(record, dict):
            raise DataError(f"record {i + 1} must be a JSON object of column: value, got {type(record).__name__}")
        keys = record.keys() - ignored
        if keys != expected:
            raise DataError(
                f"record {i + 1} must have exactly the model's columns; missing "
                f"{sorted(expected - keys)}, unexpected {sorted(keys - expected)}"
            )
        for column, value in record.items():  # checked here: a column mixing ints and floats becomes float64
            if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_EXACT_INTEGER:
                raise DataError(f"column {column!r}: integer {value} in row {i + 1} has no exact float value")
    return check_input(contract, pd.DataFrame.from_records(records))


def check_input(contract: AnyContract, frame: pd.DataFrame, first_row: int = 0) -> pd.DataFrame:
    """What a model scores, checked: exactly its columns, numeric, finite, within float32; integers are cast to
    float64 where that is lossless. A training label column, if present, is ignored. `first_row`: the file row
    of the frame's first row when the frame is one batch of a streamed file (errors name the file's row)."""
    return contract.check(frame, first_row)


def _check_images(contract: ImageContract, frame: pd.DataFrame) -> pd.DataFrame:
    """A `path` or `image` column, every image readable, large enough and of usable channels (files named)."""
    if len(frame) == 0:
        raise DataError("no images to score")
    column = next((c for c in ("path", "image") if c in frame.columns), None)
    if column is None:
        raise DataError(f"images are scored from a column `path` (file paths) or `image` (bytes); got {list(frame)}")
    if column == "image":
        check_image_items(contract, [(f"row {row}", item) for row, item in enumerate(frame[column], start=1)])
    else:
        check_image_items(contract, [(str(item), Path(item)) for item in frame[column]])
    return frame[[column]]


def check_image_items(contract: ImageContract, items: list[tuple[str, object]]) -> None:
    """(name, file path or encoded bytes) items against the image contract; a DataError naming every failing one."""
    problems = image_problems(items, contract.channels, contract.min_size)
    if problems:
        raise DataError(f"{len(problems)} image problem(s): " + "; ".join(problems[:20]))


def _check_table(contract: TabularContract, frame: pd.DataFrame, first_row: int = 0) -> pd.DataFrame:
    if len(frame) == 0:
        raise DataError("no rows to score")
    frame = frame.drop(columns=[contract.label_column], errors="ignore") if contract.label_column else frame
    _check_column_names(frame, contract.input_columns)
    features = pd.DataFrame({column: _float_column(frame[column], column, first_row) for column in contract.features})
    if contract.segment_column:
        features[contract.segment_column] = check_segments(frame, contract.segment_column).to_numpy()
    return features


def _check_column_names(frame: pd.DataFrame, expected: list[str]) -> None:
    names = [str(c) for c in frame.columns]
    duplicated = sorted({c for c in names if names.count(c) > 1})
    if duplicated:
        raise DataError(f"duplicate columns {duplicated}: each column may appear once")
    missing = [c for c in expected if c not in names]
    unexpected = [c for c in names if c not in expected]
    if missing or unexpected:
        raise DataError(f"the rows must have exactly the model's columns; missing {missing}, unexpected {unexpected}")


def _float_column(values: pd.Series, column: str, first_row: int = 0) -> np.ndarray:
    """float64 values of one column, or a DataError naming the column and the first bad row."""
    numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
    if not numeric:
        bad = np.array([not _is_number(v) for v in values])
        if bad.any():
            # text read from a CSV: name the value that is not a number at all, not the first numeric-looking one
            unparseable = bad & pd.to_numeric(values.astype(str), errors="coerce").isna().to_numpy()
            row = int(np.flatnonzero(unparseable if unparseable.any() else bad)[0])
            raise DataError(
                f"column {column!r} must be numeric; row {first_row + row + 1} holds {_shown(values.iloc[row])!r}"
            )
        values = pd.to_numeric(values)  # an object column of ints and floats (JSON mixing 1 and 1.5)
    as_float = values.to_numpy(dtype=np.float64, na_value=np.nan)
    if pd.api.types.is_integer_dtype(values):
        inexact = np.abs(as_float) > MAX_EXACT_INTEGER
        if inexact.any():
            row = int(np.flatnonzero(inexact)[0])
            raise DataError(
                f"column {column!r}: integer {values.iloc[row]} in row {first_row + row + 1} has no exact float value"
            )
    bad = ~np.isfinite(as_float) | (np.abs(as_float) > FLOAT32_MAX)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"column {column!r} has {int(bad.sum())} missing, infinite or out-of-range values "
            f"(|x| > {FLOAT32_MAX:.3g}), e.g. row {first_row + row + 1}: {_shown(values.iloc[row])!r}"
        )
    return as_float


def _shown(value):
    return value.item() if isinstance(value, np.generic) else value


def _is_number(value) -> bool:
    return (
        value is None
        or isinstance(value, (int, float, np.integer, np.floating))
        and not isinstance(value, (bool, np.bool_))
    )


def _check_series(contract: SeriesContract, frame: pd.DataFrame) -> pd.DataFrame:
    """A history frame: the timestamp and value columns the model was trained on, at least one window long."""
    missing = [c for c in contract.input_columns if c not in frame.columns]
    if missing:
        raise DataError(f"the series needs columns {contract.input_columns}; missing {missing}")
    rows = frame[contract.input_columns].reset_index(drop=True)
    values = {c: _float_column(rows[c], c) for c in contract.value_columns}
    series_from_frame(
        rows, contract.timestamp_column, contract.window, contract.value_columns, contract.series.timestamp_policy
    )
    return rows.assign(**values)
