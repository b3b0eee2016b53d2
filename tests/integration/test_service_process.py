"""`serve-api` as users start it: a separate process with several workers, an API key, and a SIGKILL under load."""

import os
import signal
import subprocess
import sys
import threading
import time

import httpx

from stores.live_store import ROW_ID, LiveStore
from tests.integration.conftest import LIVE_MODEL as NAME
from tests.integration.conftest import free_port

KEY = "test-key-7f3a"


def start_service(workspace, port: int) -> subprocess.Popen:
    command = [sys.executable, "-m", "flows.cli", "serve-api", "--model-name", NAME, "--host", "0.0.0.0"]
    command += ["--port", str(port), "--workers", "2", "--poll-seconds", "0", "--live-store", str(workspace / "store")]
    log = open(workspace / f"service-{port}.log", "ab")
    env = {**os.environ, "ANOMALY_DISTILL_API_KEY": KEY}
    return subprocess.Popen(command, cwd=workspace, env=env, stdout=log, stderr=log, start_new_session=True)


def wait_until_serving(port: int, server: subprocess.Popen) -> None:
    deadline = time.time() + 180
    while time.time() < deadline:
        assert server.poll() is None, "the service exited"
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.5)
    raise AssertionError("the service did not start")


def load(port: int, records: list, acknowledged: list, stop: threading.Event) -> None:
    headers = {"Authorization": f"Bearer {KEY}"}
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=10) as client:
        i = 0
        while not stop.is_set():
            size = 25 if i % 4 == 0 else 1
            try:
                response = client.post("/score", json=records[i % 100 : i % 100 + size])
            except httpx.HTTPError:
                return  # the service is gone: this request was never acknowledged
            if response.status_code == 200:
                acknowledged.extend(response.json()["row_ids"])
            i += 1


def test_sigkill_under_load_loses_no_acknowledged_row(workspace, champion):
    records = champion.features.head(200).to_dict(orient="records")
    port = free_port()
    server = start_service(workspace, port)
    try:
        wait_until_serving(port, server)
        refused = httpx.post(f"http://127.0.0.1:{port}/score", json=records[:1])
        assert refused.status_code == 401
        acknowledged, stop = [], threading.Event()
        clients = [threading.Thread(target=load, args=(port, records, acknowledged, stop)) for _ in range(8)]
        for client in clients:
            client.start()
        deadline = time.time() + 60
        while len(acknowledged) < 3000 and time.time() < deadline:
            time.sleep(0.05)
        os.killpg(server.pid, signal.SIGKILL)  # the supervisor and both workers, mid-traffic
        stop.set()
        for client in clients:
            client.join(30)
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)
        server.wait(30)
    assert len(acknowledged) >= 3000
    store = LiveStore(str(workspace / "store"))
    left_in_log = list(store.wal_dir.glob("*.jsonl"))
    stored = store.read()
    assert left_in_log and stored[ROW_ID].is_unique and set(acknowledged) <= set(stored[ROW_ID])
    print(f"\nSIGKILL: {len(acknowledged)} rows acknowledged, {len(stored)} stored, {len(left_in_log)} log segments")

    restarted = start_service(workspace, port)  # each worker compacts what the killed ones left, then serves
    try:
        wait_until_serving(port, restarted)
        deadline = time.time() + 30  # the worker that answered may have left a segment its sibling is compacting
        while list(store.wal_dir.glob("*.jsonl")) and time.time() < deadline:
            time.sleep(0.2)
        assert list(store.wal_dir.glob("*.jsonl")) == []
        after = store.read()
        assert after[ROW_ID].is_unique and set(after[ROW_ID]) == set(stored[ROW_ID])
        answer = httpx.post(
            f"http://127.0.0.1:{port}/score", json=records[:2], headers={"Authorization": f"Bearer {KEY}"}
        )
        assert answer.status_code == 200 and set(answer.json()["row_ids"]) <= set(store.read()[ROW_ID])
    finally:
        restarted.send_signal(signal.SIGTERM)  # a clean stop seals and compacts the open segments
        assert restarted.wait(60) == 0
    assert list(store.wal_dir.glob("*.jsonl")) == [] and len(store.read()) == len(stored) + 2
