"""The service's fast path for small requests: the numpy student, the lone-sender rule, the query options, and
the fast readers of a body, which take only what the one input check (`check_records`) accepts."""

import numpy as np
import pytest
import torch
from fastapi import HTTPException
from starlette.requests import Request

from anomaly_distill.config import SeriesConfig
from anomaly_distill.contract import SeriesContract, TabularContract, check_records
from anomaly_distill.models.student import ScoringModel, SmallBatchScorer, StudentNet
from serving.app import LoneSender, online_points, records_matrix, score_options


def scoring_model(keep: list[int], hidden: list[int], seed: int) -> ScoringModel:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    center, scale = rng.normal(size=len(keep)), rng.uniform(0.5, 2, len(keep))
    net = StudentNet(len(keep), hidden, squash_scale=3.0)
    return ScoringModel([f"c{i}" for i in range(8)], keep, center, scale, net).eval()


@pytest.mark.parametrize("keep, hidden", [(list(range(8)), [32, 16]), ([0, 2, 3, 7], [8]), ([1, 4, 5], [16, 16, 8])])
@pytest.mark.parametrize("rows", [1, 7, 1024])
def test_the_numpy_student_scores_like_the_torch_one(keep, hidden, rows):
    model = scoring_model(keep, hidden, seed=rows)
    raw = np.random.default_rng(rows).normal(0, 5, (rows, 8)).astype(np.float32)
    expected = model.score(raw)
    assert np.allclose(SmallBatchScorer.of(model).score(raw), expected, rtol=1e-5, atol=1e-6)


def test_a_network_that_is_not_linear_and_relu_keeps_torch():
    model = scoring_model(list(range(8)), [16], seed=0)
    model.net.body[1] = torch.nn.Tanh()
    assert SmallBatchScorer.of(model) is None


def test_one_connection_alone_is_told_so_after_the_window_and_two_never_are():
    lone = LoneSender(window=0.0)
    assert [lone.alone(("127.0.0.1", 5000)) for _ in range(3)] == [False, True, True]
    assert not any(lone.alone(("127.0.0.1", port)) for port in [5001, 5002] * 5)


def request(query: str) -> Request:
    return Request({"type": "http", "method": "POST", "path": "/score", "query_string": query.encode(), "headers": []})


@pytest.mark.parametrize(
    "query, expected", [("", (None, 0)), ("threshold=1.5&explain=3", (1.5, 3)), ("explain=50", (None, 50))]
)
def test_query_options_are_read_through_their_declared_schema(query, expected):
    options = score_options(request(query))
    assert (options.threshold, options.explain) == expected


@pytest.mark.parametrize(
    "query, message",
    [
        ("explain=-1", "explain: Input should be greater than or equal to 0, got '-1'"),
        ("explain=51", "explain: Input should be less than or equal to 50"),
        ("threshold=high", "threshold: Input should be a valid number, unable to parse string as a number, got 'high'"),
        ("threshold=nan", "threshold: Input should be a finite number"),
        ("explan=3", "explan: Extra inputs are not permitted"),  # a typo is refused, not ignored
        ("series=", "series: String should have at least 1 character"),
        ("series=" + "s" * 201, "series: String should have at most 200 characters"),
    ],
)
def test_bad_query_options_are_a_422_that_names_them(query, message):
    with pytest.raises(HTTPException) as refused:
        score_options(request(query))
    assert refused.value.status_code == 422 and message in refused.value.detail


def test_the_documented_query_options_are_the_declared_ones():
    from serving.app import SCORE_DOCS, ScoreQuery

    documented = {p["name"]: p["schema"] for p in SCORE_DOCS["parameters"]}
    assert set(documented) == set(ScoreQuery.model_fields)
    assert documented["explain"] == {"type": "integer", "minimum": 0, "maximum": 50, "default": 0}
    assert documented["threshold"] == {"type": "number"}


ODD_VALUES = [0, -3, 2**53, 2**53 + 1, 1e39, float("nan"), float("inf"), True, None, "1.5", [1.0], 1e-300]


def mutated_records(rng: np.random.Generator, columns: list[str], make_value) -> object:
    """Mostly well-formed records, each flaw with some chance: a column missing or extra, an odd value, a
    record that is not an object, an empty or non-list body."""
    if rng.random() < 0.05:
        return [] if rng.random() < 0.5 else {"a": 1.0}
    records = []
    for i in range(int(rng.integers(1, 5))):
        record = {column: make_value(i, column) for column in columns}
        if rng.random() < 0.1:
            record.pop(columns[int(rng.integers(len(columns)))])
        if rng.random() < 0.1:
            record["extra"] = 1.0
        if rng.random() < 0.3:
            record[columns[int(rng.integers(len(columns)))]] = ODD_VALUES[int(rng.integers(len(ODD_VALUES)))]
        records.append(record if rng.random() > 0.03 else [record])
    return records


def test_the_table_fast_path_takes_only_records_the_check_accepts_and_reads_them_alike():
    contract = TabularContract(features=["a", "b", "c"])
    rng, taken = np.random.default_rng(0), 0
    for _ in range(3000):
        records = mutated_records(rng, contract.features, lambda i, column: float(rng.normal(0, 10)))
        matrix = records_matrix(records, contract.input_columns)
        if matrix is not None:
            taken += 1
            checked = check_records(contract, records)  # raises if the fast path took what the check refuses
            np.testing.assert_array_equal(checked[contract.input_columns].to_numpy(np.float64), matrix)
    assert 500 < taken < 3000  # both paths were exercised


def test_the_online_fast_path_takes_only_points_the_check_accepts_and_reads_them_alike():
    contract = SeriesContract(timestamp_column="t", value_columns=["v", "w"], series=SeriesConfig(mode="online"))
    rng, taken = np.random.default_rng(1), 0
    for _ in range(2000):
        start = int(rng.integers(0, 50))

        def value(i, column, start=start):
            if column == "t":
                shuffled = rng.random() < 0.05  # out of order
                return f"2026-01-01T00:{(start - i if shuffled else start + i) % 60:02d}:00"
            return float(rng.normal())

        records = mutated_records(rng, contract.input_columns, value)
        points = online_points(records, contract)
        if points is not None:
            taken += 1
            checked = check_records(contract, records)
            np.testing.assert_array_equal(checked[contract.value_columns].to_numpy(np.float64), points[2])
            assert checked["t"].tolist() == points[0]
    assert 300 < taken < 2000
