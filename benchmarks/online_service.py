"""The live service with an online series model: one-point requests over HTTP, and a SIGKILL in the middle.

Trains an online model on a NAB series (embedded Prefect API, sqlite MLflow store in a temporary folder), starts
`anomaly-distill serve-api` as a real process, sends the next points of the stream one request each from one
client over loopback, kills the service with SIGKILL halfway, starts it again and sends the rest. Reports the
latency percentiles of the requests (those that refreshed the student apart: one point in `refresh_every` pays
for the teacher and the distillation), and whether the scores equal an uninterrupted replay of the same points.

Usage: python benchmarks/online_service.py [--series FILE] [--points 2000] [--workers 1] [--json OUT]
"""

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd

from infra.servers import wait_healthy

ROOT = Path(__file__).resolve().parents[1]
NAB = ROOT.parent / "shared" / "data" / "nab"
NAME = "online-bench"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def train(workdir: Path, series: Path) -> None:
    settings = "modality:\n  kind: timeseries\n  series:\n    mode: online\n    timestamp_policy: file_order\n"
    (workdir / "online.yaml").write_text(settings)
    command = [sys.executable, "-m", "flows.cli", "train", "--data", str(series), "--model-name", NAME]
    subprocess.run([*command, "--config", "online.yaml"], cwd=workdir, check=True, capture_output=True)


def next_points(series: Path, n: int) -> pd.DataFrame:
    frame = pd.read_csv(series)
    step = pd.to_datetime(frame["timestamp"]).diff().median()
    stamps = pd.date_range(pd.Timestamp(frame["timestamp"].iloc[-1]) + step, periods=n, freq=step)
    values = np.resize(frame["value"].to_numpy(), n)
    return pd.DataFrame({"timestamp": stamps.strftime("%Y-%m-%d %H:%M:%S"), "value": values})


def serve(workdir: Path, port: int, workers: int) -> subprocess.Popen:
    command = [sys.executable, "-m", "flows.cli", "serve-api", "--model-name", NAME, "--alias", "challenger"]
    command += ["--port", str(port), "--workers", str(workers), "--poll-seconds", "0", "--live-store", "store"]
    log = open(workdir / "service.log", "ab")
    server = subprocess.Popen(command, cwd=workdir, stdout=log, stderr=log, start_new_session=True)
    wait_healthy(f"http://127.0.0.1:{port}/health", 180, server)
    return server


def send(port: int, records: list[dict]) -> tuple[list[float], list[float]]:
    scores, seconds = [], []
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
        for record in records:
            start = time.perf_counter()
            response = client.post("/score?series=bench", json=[record])
            seconds.append(time.perf_counter() - start)
            response.raise_for_status()
            scores += response.json()["scores"]
    return scores, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", default=str(NAB / "realKnownCause" / "machine_temperature_system_failure.csv"))
    parser.add_argument("--points", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--json")
    args = parser.parse_args()
    out = Path(args.json).resolve() if args.json else None  # the replay runs in the temporary folder
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{workdir / 'mlflow.db'}"
        train(workdir, Path(args.series))
        records = next_points(Path(args.series), args.points).to_dict(orient="records")
        half = len(records) // 2
        scores, seconds = [], []
        for part in (records[:half], records[half:]):
            port = free_port()
            server = serve(workdir, port, args.workers)
            try:
                got, took = send(port, part)
            finally:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait(30)
            scores += got
            seconds += took
        replay = replay_scores(workdir, records)
    report = summarise(np.array(seconds), np.array(scores), replay, args)
    print(json.dumps(report, indent=1))
    if out:
        out.write_text(json.dumps(report, indent=1))


def replay_scores(workdir: Path, records: list[dict]) -> np.ndarray:
    import mlflow.pyfunc

    os.chdir(workdir)
    return mlflow.pyfunc.load_model(f"models:/{NAME}/1").predict(pd.DataFrame(records))["score"].to_numpy()


def summarise(seconds: np.ndarray, scores: np.ndarray, replay: np.ndarray, args) -> dict:
    ms = seconds * 1e3
    slow = ms > 20 * np.median(ms)  # the requests that refreshed the student (and the first of each process)
    return {
        "series": Path(args.series).name,
        "points": len(ms),
        "workers": args.workers,
        "p50_ms": round(float(np.percentile(ms, 50)), 3),
        "p90_ms": round(float(np.percentile(ms, 90)), 3),
        "p99_ms": round(float(np.percentile(ms, 99)), 3),
        "p50_ms_without_refreshes": round(float(np.percentile(ms[~slow], 50)), 3),
        "refreshing_requests": int(slow.sum()),
        "refreshing_request_median_ms": round(float(np.median(ms[slow])), 1) if slow.any() else None,
        "sigkill_at_point": len(ms) // 2,
        "max_abs_difference_from_uninterrupted_replay": float(np.abs(scores - replay).max()),
    }


if __name__ == "__main__":
    main()
