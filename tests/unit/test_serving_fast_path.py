"""The service's fast path for small requests: the numpy student, the lone-sender rule, the query options."""

import numpy as np
import pytest
import torch
from fastapi import HTTPException
from starlette.requests import Request

from anomaly_distill.models.student import ScoringModel, SmallBatchScorer, StudentNet
from serving.app import LoneSender, score_options


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
