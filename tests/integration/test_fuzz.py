"""Property-based fuzzing of the input edges: malformed /score payloads and malformed files to score. Whatever
arrives gets a 422 / exit 2 that names the problem: never a 5xx or a traceback, nothing stored, no version."""

import json
import math

import pandas as pd
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from anomaly_distill.contract import TabularContract, check_input
from anomaly_distill.data import DataError, read_frame
from serving.app import create_app
from stores.live_store import LiveStore
from tests.integration.conftest import LIVE_MODEL as NAME

FEATURES = [f"f{i}" for i in range(6)]
PAYLOADS = 1000
FUZZ = settings(max_examples=PAYLOADS, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
tried = {"payloads": 0, "server_errors": 0}

not_a_number = st.one_of(
    st.text(max_size=8),
    st.booleans(),
    st.none(),
    st.lists(st.floats(), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.sampled_from([float("nan"), float("inf"), -float("inf"), 1e308, -1e39]),
    st.integers(min_value=2**53 + 1),
    st.integers(max_value=-(2**53) - 1),
)


@st.composite
def malformed_payload(draw) -> bytes:
    """Valid records with one or more faults, serialised (some faults live only in the bytes)."""
    records = [{c: draw(st.floats(-1e3, 1e3)) for c in FEATURES} for _ in range(draw(st.integers(1, 4)))]
    fault = draw(
        st.sampled_from(
            ["value", "missing", "extra", "repeated", "empty", "not a list", "record type", "not utf-8", "not json"]
        )
    )
    row = draw(st.integers(0, len(records) - 1))
    if fault == "value":
        records[row][draw(st.sampled_from(FEATURES))] = draw(not_a_number)
    elif fault == "missing":
        del records[row][draw(st.sampled_from(FEATURES))]
    elif fault == "extra":
        records[row][draw(st.text(min_size=1, max_size=6).filter(lambda k: k not in FEATURES))] = 1.0
    elif fault == "empty":
        records = []
    elif fault == "not a list":
        return json.dumps(draw(st.one_of(st.just(records[0]), st.text(max_size=5), st.integers()))).encode()
    elif fault == "record type":
        records[row] = draw(st.one_of(st.integers(), st.text(max_size=5), st.lists(st.integers(), max_size=3)))
    text = json.dumps(records)
    if fault == "repeated":
        text = text.replace('{"f0": ', '{"f0": 1.0, "f0": ', 1)
    if fault == "not json":
        text = text[: draw(st.integers(0, max(len(text) - 2, 0)))] + draw(st.sampled_from(["}", "[", ",,", "'"]))
    body = text.encode()
    if fault == "not utf-8":
        body = body[:-1] + draw(st.sampled_from([b"\xff", b"\xc3\x28", b"\xe9"])) + body[-1:]
    return body


@pytest.fixture
def http(workspace, champion):
    store = LiveStore(str(workspace / "store"))
    with TestClient(create_app(NAME, live_store=store.url, poll_seconds=0)) as client:
        yield client, store


def test_a_thousand_malformed_payloads_get_422_and_store_nothing(http):
    client, store = http

    @FUZZ
    @given(malformed_payload())
    def post(body):
        response = client.post("/score", content=body, headers={"content-type": "application/json"})
        tried["payloads"] += 1
        tried["server_errors"] += response.status_code >= 500
        assert response.status_code == 422, (body[:200], response.text[:300])
        detail = response.json()["detail"]
        assert isinstance(detail, str) and len(detail) > 10

    post()
    big = json.dumps([{**{c: 0.5 for c in FEATURES}, "f0": "x" if i == 159_999 else 0.5} for i in range(160_000)])
    assert len(big) > 10_000_000
    response = client.post("/score", content=big.encode(), headers={"content-type": "application/json"})
    assert response.status_code == 422 and "row 160000" in response.json()["detail"]
    print(
        f"\nfuzz: {tried['payloads'] + 1} malformed payloads, {tried['server_errors']} 5xx, "
        f"{len(store.read())} rows stored"
    )
    assert tried["payloads"] >= PAYLOADS and tried["server_errors"] == 0 and store.read().empty


cell = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True), st.integers(), st.text(max_size=6), st.none(), st.booleans()
)


@st.composite
def malformed_csv(draw) -> bytes:
    columns = draw(st.lists(st.sampled_from([*FEATURES, "label", "x", "f0"]), min_size=0, max_size=8))
    rows = draw(st.lists(st.lists(cell, min_size=len(columns), max_size=len(columns)), max_size=5))
    text = "\n".join([",".join(columns), *[",".join("" if v is None else str(v) for v in r) for r in rows]])
    body = text.encode()
    if draw(st.booleans()):
        body += draw(st.sampled_from([b"\xff\xfe", b"\x00", b"\n,,,\n", b'"unclosed']))
    return body


def _is_valid(frame: pd.DataFrame) -> bool:
    if sorted(frame.columns) != sorted(FEATURES) and sorted(frame.columns) != sorted([*FEATURES, "label"]):
        return False
    values = frame[FEATURES]
    return all(pd.api.types.is_numeric_dtype(values[c]) for c in FEATURES) and bool(
        values.map(lambda v: isinstance(v, (int, float)) and math.isfinite(v) and abs(v) < 3e38).all().all()
    )


@settings(max_examples=500, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(malformed_csv())
def test_malformed_files_are_refused_by_the_input_check_with_a_reason(tmp_path_factory, body):
    """What `score` runs on a file before anything is scored: reading, then the contract's check."""
    path = tmp_path_factory.mktemp("fuzz") / "rows.csv"
    path.write_bytes(body)
    contract = TabularContract(features=FEATURES, label_column="label")
    try:
        frame = read_frame(path)
        checked = check_input(contract, frame)
    except DataError as error:
        assert str(error)
        return
    assert _is_valid(frame) and list(checked.columns) == FEATURES  # accepted only when it is well formed


@pytest.mark.parametrize("body", [b"", b"\xff\xfe\x00", b"f0,f0\n1,2\n", b"f0,f1\n1\n2,3,4,5\n", b"a\n" * 3])
def test_malformed_files_to_score_exit_2_without_traceback(workspace, champion, capfd, body):
    from flows.cli import main

    (workspace / "rows.csv").write_bytes(body)
    assert (
        main(
            [
                "score",
                "--data",
                str(workspace / "rows.csv"),
                "--model-name",
                NAME,
                "--live-store",
                str(workspace / "store"),
            ]
        )
        == 2
    )
    out, err = capfd.readouterr()
    assert "error: " in err and "Traceback" not in out + err
    assert LiveStore(str(workspace / "store")).read().empty
