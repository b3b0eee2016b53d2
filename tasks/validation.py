"""Great Expectations data contract: derived from reference data, saved with each model, validated before training.

Two layers of expectations:
- basic (always): numeric columns, no nulls, finite values, enough rows, labels in {0, 1} or empty (not reviewed);
- contract (when a saved contract exists): the exact column set and each column's range, widened by a tolerance.
"""

import json
import logging
import math
from dataclasses import dataclass, field

import pandas as pd

from anomaly_distill.contract import TabularContract
from anomaly_distill.data import DataError

NUMERIC_TYPES = [
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "float16",
    "float32",
    "float64",
    "Int64",
    "Float64",
]
FINITE = 1.7e308  # between(-FINITE, FINITE) fails exactly the ±inf cells


class ValidationFailed(DataError):
    def __init__(self, failures: list[str]):
        self.failures = failures
        super().__init__("data validation failed:\n" + "\n".join(f"  - {f}" for f in failures))


@dataclass
class ValidationReport:
    success: bool
    failures: list[str]
    result: dict
    checks: list[tuple[str, bool]] = field(default_factory=list)  # every expectation, and whether it held

    def markdown(self) -> str:
        held = sum(ok for _, ok in self.checks)
        head = f"{held} of {len(self.checks)} expectations met"
        rows = "\n".join(f"| {'pass' if ok else 'FAIL'} | `{check}` |" for check, ok in self.checks)
        table = f"\n\n| result | expectation |\n|---|---|\n{rows}"
        if self.success:
            return f"# Data validation passed\n\n{head}." + table
        failed = "\n".join(f"- {f}" for f in self.failures)
        return f"# Data validation FAILED\n\n{head}:\n\n{failed}" + table


def derive_contract(
    frame: pd.DataFrame,
    label_column: str | None,
    segment_column: str | None = None,
    tolerance: float = 0.25,
    mostly: float = 0.99,
    min_rows: int = 10,
) -> TabularContract:
    features = [c for c in frame.columns if c != label_column]
    ranges = {}
    for column in features:
        low, high = float(frame[column].min()), float(frame[column].max())
        margin = tolerance * (high - low) or tolerance * max(abs(low), 1.0)
        ranges[column] = (low - margin, high + margin)
    return TabularContract(
        features=features,
        label_column=label_column,
        segment_column=segment_column,
        ranges=ranges,
        mostly=mostly,
        min_rows=min_rows,
        reference_rows=len(frame),
    )


def _expectations(
    frame: pd.DataFrame, label_column: str | None, contract: TabularContract | None, check_ranges: bool
) -> list:
    E = _gx().expectations
    features = contract.features if contract else [c for c in frame.columns if c != label_column]
    present = [c for c in features if c in frame.columns]
    out = [E.ExpectTableRowCountToBeBetween(min_value=contract.min_rows if contract else 2)]
    for column in present:
        out += [
            E.ExpectColumnValuesToBeInTypeList(column=column, type_list=NUMERIC_TYPES),
            E.ExpectColumnValuesToNotBeNull(column=column),
        ]
        if pd.api.types.is_numeric_dtype(frame[column]):
            out.append(E.ExpectColumnValuesToBeBetween(column=column, min_value=-FINITE, max_value=FINITE))
    if label_column is not None:
        out.append(E.ExpectColumnToExist(column=label_column))
        if label_column in frame.columns:
            out.append(E.ExpectColumnValuesToBeInSet(column=label_column, value_set=[0, 1]))
    if contract:
        expected = features + ([label_column] if label_column else [])
        out.append(E.ExpectTableColumnsToMatchSet(column_set=expected, exact_match=True))
    if contract and check_ranges:
        for column in present:
            if pd.api.types.is_numeric_dtype(frame[column]):
                low, high = contract.ranges[column]
                out.append(
                    E.ExpectColumnValuesToBeBetween(
                        column=column, min_value=low, max_value=high, mostly=contract.mostly
                    )
                )
    return out


def _describe(result, frame: pd.DataFrame) -> str:
    config = result.expectation_config
    column = config.kwargs.get("column")
    if config.type == "expect_column_values_to_be_in_type_list" and column in frame.columns:
        values = frame[column]
        bad = values[pd.to_numeric(values, errors="coerce").isna() & values.notna()]
        return (
            f"{config.type}(column={column!r}): dtype {values.dtype} is not numeric; "
            f"{len(bad)} non-numeric values, e.g. {bad.head(5).tolist()}"
        )
    detail = result.result or {}
    if "partial_unexpected_list" in detail:
        examples = [
            v if not (isinstance(v, float) and math.isnan(v)) else "NaN" for v in detail["partial_unexpected_list"][:5]
        ]
        observed = f"{detail.get('unexpected_count')} unexpected values, e.g. {examples}"
    elif "details" in detail and "mismatched" in detail["details"]:
        observed = f"columns differ: {detail['details']['mismatched']}"
    elif "observed_value" in detail:
        observed = f"observed {detail['observed_value']!r}"
    else:
        observed = "could not be evaluated"
    return f"{_name(config, skip=('batch_id', 'type_list', 'column_set'))}: {observed}"


def validate_frame(
    frame: pd.DataFrame, label_column: str | None, contract: TabularContract | None, check_ranges: bool = True
) -> ValidationReport:
    """`check_ranges=False` for scoring: out-of-range live values are what drift monitoring is for."""
    return _run_suite(frame, _expectations(frame, label_column, contract, check_ranges))


def validate_series_frame(
    frame: pd.DataFrame, timestamp_column: str, value_columns: list[str], window: int, timestamp_policy: str = "strict"
) -> ValidationReport:
    """The series contract: timestamps present and parseable, strictly increasing without duplicates (unless
    the policy keeps file order), value columns numeric and finite, at least one window of rows."""
    E = _gx().expectations
    checked = frame.copy()
    if timestamp_column in frame.columns:
        checked[timestamp_column] = pd.to_datetime(frame[timestamp_column], errors="coerce", format="mixed")
    out = [E.ExpectTableRowCountToBeBetween(min_value=window), E.ExpectColumnToExist(column=timestamp_column)]
    if timestamp_column in frame.columns:
        out.append(E.ExpectColumnValuesToNotBeNull(column=timestamp_column))  # unparseable stamps become null
        if timestamp_policy == "strict":
            out += [
                E.ExpectColumnValuesToBeUnique(column=timestamp_column),
                E.ExpectColumnValuesToBeIncreasing(column=timestamp_column, strictly=True),
            ]
    for column in value_columns:
        out += [E.ExpectColumnToExist(column=column)]
        if column in frame.columns:
            out += [
                E.ExpectColumnValuesToBeInTypeList(column=column, type_list=NUMERIC_TYPES),
                E.ExpectColumnValuesToNotBeNull(column=column),
            ]
            if pd.api.types.is_numeric_dtype(frame[column]):
                out.append(E.ExpectColumnValuesToBeBetween(column=column, min_value=-FINITE, max_value=FINITE))
    return _run_suite(checked, out)


def warm_up() -> None:
    """Imports Great Expectations (1–3 s): the CLI does it while the embedded Prefect API starts."""
    _gx()


def _gx():
    # Great Expectations (~3.6 s) only to validate: the CLI's start-up imports this module
    import great_expectations as gx

    logging.getLogger("great_expectations").setLevel(logging.ERROR)
    return gx


def _run_suite(frame: pd.DataFrame, expectations: list) -> ValidationReport:
    gx = _gx()
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = {"globally": False}
    batch = (
        context.data_sources.add_pandas("pandas")
        .add_dataframe_asset("frame")
        .add_batch_definition_whole_dataframe("all")
        .get_batch(batch_parameters={"dataframe": frame})
    )
    suite = gx.ExpectationSuite(name="anomaly-distill-contract")
    for expectation in expectations:
        suite.add_expectation(expectation)
    result = batch.validate(suite)
    failures = [_describe(r, frame) for r in result.results if not r.success]
    checks = [(_name(r.expectation_config), r.success) for r in result.results]
    return ValidationReport(
        result.success, failures, json.loads(json.dumps(result.to_json_dict(), default=str)), checks
    )


def _name(config, skip: tuple[str, ...] = ("batch_id", "type_list")) -> str:
    """The expectation as a call, `type(column='f0', …)`, without the keyword arguments in `skip` or unset ones."""
    args = {k: v for k, v in config.kwargs.items() if k not in skip and v is not None}
    return f"{config.type}({', '.join(f'{k}={v!r}' for k, v in args.items())})"
