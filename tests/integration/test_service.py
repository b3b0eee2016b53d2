"""The online service for real: uvicorn on a free localhost port, httpx client, MLflow registry, live store."""

import json
import socket
import threading
import time

import httpx
import numpy as np
import pytest
import uvicorn

from flows.cli import main
from serving.app import create_app
from serving.live_store import LiveStore
from tests.integration.conftest import LIVE_MODEL as NAME


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def service(workspace, champion):
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(NAME, live_store=str(workspace / "store"), poll_seconds=0),
            host="127.0.0.1",
            port=port,
            log_level="warning",
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 60
    while not server.started and time.time() < deadline:
        time.sleep(0.1)
    assert server.started, "service did not start"
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
        yield client, champion.features, LiveStore(str(workspace / "store"))
    server.should_exit = True
    thread.join(10)


def test_scores_records_and_logs_them(service):
    client, rows, store = service
    health = client.get("/health").json()
    assert health["model_name"] == NAME and health["version"] == "1" and health["alias"] == "champion"
    records = rows.head(1000).to_dict(orient="records")
    body = client.post("/score", json=records).json()
    assert len(body["scores"]) == len(body["is_anomaly"]) == 1000 and body["model_version"] == "1"
    one = client.post("/score", json=records[:1]).json()
    assert one["scores"][0] == pytest.approx(body["scores"][0], rel=1e-6)
    assert len(store.read()) == 1001
    assert "/score" in client.get("/openapi.json").json()["paths"]


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda r: {k: v for k, v in r.items() if k != "f2"}, "missing ['f2']"),
        (lambda r: {**r, "merchant": 1.0}, "unexpected ['merchant']"),
        (lambda r: {**r, "f0": "high"}, "column 'f0' must be numeric; row 1 holds 'high'"),
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


def test_reload_follows_the_champion_alias(service, thyroid_csv):
    client, rows, _ = service
    assert main(["train", "--data", str(thyroid_csv), "--label-column", "label", "--model-name", NAME]) == 0
    assert main(["promote", "--model-name", NAME, "--version", "2"]) == 0
    assert client.post("/reload").json() == {"reloaded": True, "version": "2"}
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
        ({"nested": 1}, "column 'f0' must be numeric; row 1 holds {'nested': 1}"),
        (True, "column 'f0' must be numeric; row 1 holds True"),
        (1e308, "column 'f0' has 1 missing, infinite or out-of-range values"),
        (2**60, "column 'f0': integer 1152921504606846976 in row 1 has no exact float value"),
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

    from tasks import registry

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
