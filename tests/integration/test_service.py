"""The online service for real: uvicorn on a free localhost port, httpx client, MLflow registry, live store."""

import json
import time

import numpy as np
import pytest

from flows.cli import main
from serving.app import create_app
from stores.live_store import ROW_ID, LiveStore
from tests.integration.conftest import LIVE_MODEL as NAME
from tests.integration.conftest import free_port, served_in_thread


@pytest.fixture
def service(workspace, champion):
    app = create_app(NAME, live_store=str(workspace / "store"), poll_seconds=0)
    with served_in_thread(app) as client:
        yield client, champion.features, LiveStore(str(workspace / "store"))


def test_scores_records_and_logs_them(service):
    client, rows, store = service
    health = client.get("/health").json()
    assert health["model_name"] == NAME and health["version"] == "1" and health["alias"] == "champion"
    records = rows.head(1000).to_dict(orient="records")
    body = client.post("/score", json=records).json()
    assert len(body["scores"]) == len(body["is_anomaly"]) == 1000 and body["model_version"] == "1"
    one = client.post("/score", json=records[:1]).json()
    # float32 sums over a batch and over one row take different BLAS kernels: equal to float32 rounding
    assert one["scores"][0] == pytest.approx(body["scores"][0], rel=1e-5)
    assert len(store.read()) == 1001
    assert "/score" in client.get("/openapi.json").json()["paths"]


def test_explain_names_the_columns_behind_each_alert_and_stores_them(service):
    client, rows, store = service
    records = rows.head(500).to_dict(orient="records")
    body = client.post("/score", params={"explain": 2}, json=records).json()
    flagged = np.asarray(body["is_anomaly"])
    assert flagged.any() and len(body["explanations"]) == 500
    for text, alert in zip(body["explanations"], flagged):
        assert (text != "") == alert and (not alert or 1 <= text.count("(+") <= 2)
    assert all(text.split(" (")[0] in records[0] for text in body["explanations"] if text)  # column names
    stored = store.read()
    assert stored["explanation"].tolist() == body["explanations"]
    refused = client.post("/score", params={"explain": -1}, json=records)
    assert refused.status_code == 422 and len(store.read()) == 500
    assert "explanations" not in client.post("/score", json=records[:1]).json()


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda r: {k: v for k, v in r.items() if k != "f2"}, "missing ['f2']"),
        (lambda r: {**r, "merchant": 1.0}, "unexpected ['merchant']"),
        (lambda r: {**r, "f0": "high"}, "column 'f0' must be numeric; row 2 holds 'high'"),
        (lambda r: {**r, "f0": None}, "column 'f0' has 1 missing, infinite or out-of-range values"),
    ],
)
def test_bad_records_get_a_clear_422_and_are_not_stored(service, mutate, message):
    client, rows, store = service
    records = rows.head(3).to_dict(orient="records")
    records[1] = mutate(records[1])
    response = client.post("/score", json=records)
    assert response.status_code == 422 and message in response.json()["detail"]
    assert store.read().empty


def test_reload_follows_the_champion_alias_in_every_worker(service, thyroid_csv, workspace):
    from fastapi.testclient import TestClient

    client, rows, _ = service
    assert main(["train", "--data", str(thyroid_csv), "--label-column", "label", "--model-name", NAME]) == 0
    assert main(["promote", "--model-name", NAME, "--version", "2"]) == 0
    with TestClient(create_app(NAME, live_store=str(workspace / "store"), poll_seconds=0)) as sibling:
        assert sibling.get("/health").json()["version"] == "2"  # loaded at start; now make it lag behind
        assert main(["promote", "--model-name", NAME, "--version", "1"]) == 0
        assert sibling.post("/reload").json() == {"reloaded": True, "version": "1"}
        assert main(["promote", "--model-name", NAME, "--version", "2"]) == 0
        assert client.post("/reload").json()["version"] == "2"
        deadline = time.time() + 5  # the sibling worker (same live store) follows the reload token
        while sibling.get("/health").json()["version"] != "2" and time.time() < deadline:
            time.sleep(0.1)
        assert sibling.get("/health").json()["version"] == "2"
    assert client.get("/health").json()["version"] == "2"
    assert client.post("/score", json=rows.head(2).to_dict(orient="records")).json()["model_version"] == "2"
    assert np.isfinite(client.post("/score", json=rows.head(2).to_dict(orient="records")).json()["scores"]).all()


def test_traffic_through_the_service_feeds_drift_monitoring(service, workspace):
    client, rows, _ = service
    store = str(workspace / "store")

    def drift_summary(name):
        out = workspace / f"{name}.json"
        assert main(["drift", "--model-name", NAME, "--live-store", store, "--json", str(out)]) == 0
        return json.loads(out.read_text())

    for start in range(0, len(rows), 500):
        assert client.post("/score", json=rows.iloc[start : start + 500].to_dict(orient="records")).status_code == 200
    assert drift_summary("calm")["drift_detected"] is False
    shifted = rows.assign(f1=rows["f1"] * 3 + 0.05, f4=rows["f4"] + 0.3)
    for start in range(0, len(shifted), 500):
        assert (
            client.post("/score", json=shifted.iloc[start : start + 500].to_dict(orient="records")).status_code == 200
        )
    stormy = drift_summary("stormy")
    assert stormy["drift_detected"] is True and {"f1", "f4"} <= set(stormy["drifted_columns"])


def test_integer_json_values_are_scored_like_the_same_floats(service):
    client, rows, store = service
    as_floats = (rows.head(5) * 100).round(0).to_dict(orient="records")
    as_ints = [{k: int(v) for k, v in record.items()} for record in as_floats]
    assert all(isinstance(v, int) for v in as_ints[0].values())
    ints, floats = client.post("/score", json=as_ints), client.post("/score", json=as_floats)
    assert ints.status_code == 200 and ints.json()["scores"] == floats.json()["scores"]
    assert len(store.read()) == 10


@pytest.mark.parametrize(
    "value, message",
    [
        ({"nested": 1}, "column 'f0' must be numeric; row 2 holds {'nested': 1}"),
        (True, "column 'f0' must be numeric; row 2 holds True"),
        (1e308, "column 'f0' has 1 missing, infinite or out-of-range values"),
        (2**60, "column 'f0': integer 1152921504606846976 in row 2 has no exact float value"),
    ],
)
def test_values_the_model_cannot_take_get_a_422_naming_column_and_row(service, value, message):
    client, rows, store = service
    records = rows.head(3).to_dict(orient="records")
    records[1]["f0"] = value
    response = client.post("/score", json=records)
    assert response.status_code == 422 and message in response.json()["detail"]
    assert store.read().empty


def registry_down(uri):
    raise ConnectionError("registry down")


def test_the_service_keeps_serving_the_last_good_model_while_the_registry_is_away(workspace, champion):
    from fastapi.testclient import TestClient

    from stores import registry

    records = champion.features.head(3).to_dict(orient="records")
    with TestClient(create_app(NAME, live_store=str(workspace / "store"), poll_seconds=0.2)) as http:
        assert http.get("/health").json()["status"] == "ok"
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(
                registry, "resolve_model", lambda uri: (_ for _ in ()).throw(ConnectionError("registry down"))
            )
            time.sleep(1.0)
            health = http.get("/health").json()
            assert health["status"] == "stale" and "registry down" in health["last_refresh_error"]
            assert health["version"] == "1" and http.post("/score", json=records).status_code == 200
            assert http.post("/reload").status_code == 503
        time.sleep(0.6)  # the registry is back: the next check succeeds
        health = http.get("/health").json()
        assert health["status"] == "ok" and health["last_refresh_error"] is None


def test_the_api_key_guards_score_and_reload_and_a_refused_request_stores_nothing(workspace, champion):
    from fastapi.testclient import TestClient

    records = champion.features.head(2).to_dict(orient="records")
    store = LiveStore(str(workspace / "store"))
    with TestClient(create_app(NAME, live_store=store.url, poll_seconds=0, api_key="s3cret")) as http:
        assert http.get("/health").status_code == 200
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
            refused = http.post("/score", json=records, headers=headers)
            assert refused.status_code == 401 and "Authorization: Bearer" in refused.json()["detail"]
            assert refused.headers["www-authenticate"] == "Bearer"
            assert http.post("/reload", headers=headers).status_code == 401
        assert store.read().empty
        accepted = http.post("/score", json=records, headers={"Authorization": "Bearer s3cret"})
        assert accepted.status_code == 200 and len(accepted.json()["row_ids"]) == 2
        assert store.read()[ROW_ID].tolist() == accepted.json()["row_ids"]


def test_a_body_over_the_limit_gets_413_and_stores_nothing(workspace, champion):
    from fastapi.testclient import TestClient

    store = LiveStore(str(workspace / "store"))
    records = champion.features.head(200).to_dict(orient="records")
    with TestClient(create_app(NAME, live_store=store.url, poll_seconds=0, max_body_bytes=4096)) as http:
        response = http.post("/score", json=records)
        assert response.status_code == 413 and "the limit is 4,096" in response.json()["detail"]

        def chunked():  # no Content-Length: the limit holds while the body streams in
            body = json.dumps(records).encode()
            for start in range(0, len(body), 1000):
                yield body[start : start + 1000]

        assert http.post("/score", content=chunked()).status_code == 413
        assert http.post("/score", json=records[:3]).status_code == 200
        assert len(store.read()) == 3


def test_serving_beyond_this_machine_needs_an_api_key(workspace, monkeypatch, capsys):
    monkeypatch.delenv("ANOMALY_DISTILL_API_KEY", raising=False)
    assert main(["serve-api", "--model-name", NAME, "--host", "0.0.0.0", "--port", str(free_port())]) == 2
    assert "set ANOMALY_DISTILL_API_KEY" in capsys.readouterr().err
