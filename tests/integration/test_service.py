"""The online service for real: uvicorn on a free localhost port, httpx client, MLflow registry, live store."""
import json
import socket
import threading
import time

import httpx
import numpy as np
import pytest
import uvicorn

from anomaly_distill.live_store import LiveStore
from flows.cli import main
from serving.app import create_app
from tests.integration.conftest import LIVE_MODEL as NAME


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def service(workspace, champion):
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(NAME, live_store=str(workspace / "store"), poll_seconds=0),
                                           host="127.0.0.1", port=port, log_level="warning"))
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


@pytest.mark.parametrize("mutate, message", [
    (lambda r: {k: v for k, v in r.items() if k != "f2"}, "missing ['f2']"),
    (lambda r: {**r, "merchant": 1.0}, "unexpected ['merchant']"),
    (lambda r: {**r, "f0": "high"}, "non-numeric feature columns: ['f0']"),
    (lambda r: {**r, "f0": None}, "NaN or infinite values in columns ['f0']"),
])
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
        assert client.post("/score", json=rows.iloc[start:start + 500].to_dict(orient="records")).status_code == 200
    assert drift_summary("calm")["drift_detected"] is False
    shifted = rows.assign(f1=rows["f1"] * 3 + 0.05, f4=rows["f4"] + 0.3)
    for start in range(0, len(shifted), 500):
        assert client.post("/score", json=shifted.iloc[start:start + 500].to_dict(orient="records")).status_code == 200
    stormy = drift_summary("stormy")
    assert stormy["drift_detected"] is True and {"f1", "f4"} <= set(stormy["drifted_columns"])
