"""An online series model through the whole loop: trained by the flow, registered without a fixed graph, scored
by the pyfunc and batch scoring from its warm state, and served with a state per series that moves on with every
point, is shared by the workers, and survives SIGKILL."""

import os
import signal
import subprocess
import sys

import httpx
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from flows.cli import main
from tasks.tracking import tracking_uri
from tests.conftest import NAB, require
from tests.integration.conftest import free_port
from tests.integration.test_service_process import wait_until_serving

SERIES = NAB / "realKnownCause" / "rogue_agent_key_hold.csv"
LABELS = NAB / "labels" / "combined_windows.json"
NAME = "online-series"


@pytest.fixture
def online_model(workspace):
    """v1 of an online series model (the challenger: the gate decides nothing here), and its training frame."""
    require(SERIES.exists(), f"shared NAB data not found at {NAB}")
    config = workspace / "online.yaml"
    config.write_text(
        f"modality:\n  kind: timeseries\n  labels_path: {LABELS}\n  series:\n    mode: online\n"
        "    online: {refresh_every: 100}\n"
    )
    assert main(["train", "--data", str(SERIES), "--model-name", NAME, "--config", str(config)]) == 0
    return pd.read_csv(SERIES)


def next_points(frame: pd.DataFrame, n: int) -> pd.DataFrame:
    """`n` points after the training series, with its own values again (a second day like the first)."""
    step = pd.to_datetime(frame["timestamp"]).diff().median()
    stamps = pd.date_range(pd.Timestamp(frame["timestamp"].iloc[-1]) + step, periods=n, freq=step)
    return pd.DataFrame({"timestamp": stamps.strftime("%Y-%m-%d %H:%M:%S"), "value": frame["value"].iloc[:n].values})


def test_online_model_scores_the_same_in_the_pyfunc_batch_scoring_and_the_service(workspace, online_model):
    import mlflow.pyfunc
    from fastapi.testclient import TestClient

    from flows.scoring import ScoringParameters, run_batch_scoring
    from serving.app import create_app

    client = MlflowClient(tracking_uri(), tracking_uri())
    version = client.get_model_version(NAME, "1")
    run = client.get_run(version.run_id)
    assert {"fidelity", "auroc", "teacher_auroc", "rows_per_second", "refresh_seconds"} <= set(run.data.metrics)
    assert run.data.params["online.window"] == "16" and run.data.params["online.refresh_every"] == "100"
    assert not [a for a in client.list_artifacts(version.run_id) if a.path == "onnx"]  # no fixed graph to export

    live = next_points(online_model, 240)
    replay = mlflow.pyfunc.load_model(f"models:/{NAME}/1").predict(live)
    assert len(replay) == len(live) and replay["score"].between(0, 1).all()
    live.to_csv(workspace / "live.csv", index=False)
    run_batch_scoring(
        ScoringParameters(
            data_path=str(workspace / "live.csv"),
            model_uri=f"models:/{NAME}/1",
            out_path=str(workspace / "batch.csv"),
            live_store=str(workspace / "batch-store"),
        )
    )
    np.testing.assert_allclose(pd.read_csv(workspace / "batch.csv")["score"], replay["score"], atol=1e-12)

    records = live.to_dict(orient="records")
    with TestClient(create_app(NAME, alias="challenger", live_store=str(workspace / "s"), poll_seconds=0)) as http:
        one_by_one = [http.post("/score?series=a", json=[r]).json()["scores"][0] for r in records]
        at_once = http.post("/score?series=b", json=records).json()
        again = http.post("/score?series=a", json=records[-1:])
        fresh = http.post("/score?series=c", json=records[:1]).json()["scores"]
    np.testing.assert_allclose(one_by_one, replay["score"], atol=1e-12)  # the state moved on point by point
    np.testing.assert_allclose(at_once["scores"], replay["score"], atol=1e-12)
    assert at_once["series"] == "b" and len(at_once["row_ids"]) == len(records)
    assert again.status_code == 422 and "send each point once" in again.json()["detail"]
    assert fresh == pytest.approx(replay["score"][:1].tolist(), abs=1e-12)  # a new series: the warm state


def test_drift_report_of_an_online_model_shows_the_shift_it_adapted_to(workspace, online_model):
    from flows.drift import DriftParameters, drift_monitoring
    from flows.scoring import ScoringParameters, run_batch_scoring

    MlflowClient(tracking_uri(), tracking_uri()).set_registered_model_alias(NAME, "champion", "1")
    shifted = next_points(online_model, 600)
    shifted["value"] = shifted["value"] * 1.5 + 40  # a new level for good
    shifted.to_csv(workspace / "shifted.csv", index=False)
    run_batch_scoring(
        ScoringParameters(
            data_path=str(workspace / "shifted.csv"),
            model_uri=f"models:/{NAME}@champion",
            live_store=str(workspace / "store"),
        )
    )
    summary = drift_monitoring(DriftParameters(model_name=NAME, live_store=str(workspace / "store")))
    assert summary["drift_detected"] and summary["drifted_columns"] == ["value"]
    assert "online model: it learnt from each of these 600 points" in summary["adaptation"]
    alarms = int(summary["adaptation"].split("(")[1].split(" alarms")[0])
    assert 1 <= alarms <= 0.05 * 600  # the shift is flagged, then learnt: not 600 alarms


def start_service(workspace, port: int) -> subprocess.Popen:
    command = [sys.executable, "-m", "flows.cli", "serve-api", "--model-name", NAME, "--alias", "challenger"]
    command += ["--port", str(port), "--workers", "2", "--poll-seconds", "0", "--live-store", str(workspace / "s")]
    log = open(workspace / f"service-{port}.log", "ab")
    return subprocess.Popen(command, cwd=workspace, stdout=log, stderr=log, start_new_session=True)


@pytest.mark.slow
def test_online_state_survives_sigkill_and_two_workers_never_diverge(workspace, online_model):
    import mlflow.pyfunc

    live = next_points(online_model, 300)
    replay = mlflow.pyfunc.load_model(f"models:/{NAME}/1").predict(live)["score"].to_numpy()
    records = live.to_dict(orient="records")
    scores = []
    for part in (records[:150], records[150:]):
        port = free_port()
        server = start_service(workspace, port)
        try:
            wait_until_serving(port, server)
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
                for record in part:  # two workers answer in turn; each goes on from the stored state
                    response = http.post("/score?series=line-4", json=[record])
                    assert response.status_code == 200, response.text
                    scores += response.json()["scores"]
        finally:
            os.killpg(server.pid, signal.SIGKILL)  # no shutdown: the state is what was committed
            server.wait(30)
    np.testing.assert_allclose(scores, replay, atol=1e-12)
