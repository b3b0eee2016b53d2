"""Live-data numbers for BENCHMARKS.md: pyfunc vs raw student throughput, service latency, drift flow wall time.

Usage: .venv/bin/python benchmarks/live_benchmark.py [--data data/demo/thyroid.csv]
Runs in a temporary directory with the embedded defaults (temporary Prefect API, sqlite MLflow store). All
traffic stays on 127.0.0.1 and every request loop is bounded.
"""

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
NAME = "bench-live"


def percentiles(seconds: list[float]) -> str:
    ms = np.array(seconds) * 1000
    return f"p50 {np.percentile(ms, 50):.2f} ms, p99 {np.percentile(ms, 99):.2f} ms"


def live_rows(features: pd.DataFrame, n: int) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = features.iloc[rng.integers(0, len(features), n)].reset_index(drop=True)
    return rows + rng.normal(0, 0.01, rows.shape) * features.std().to_numpy()


def throughput(data: Path, features: pd.DataFrame) -> list[str]:
    import mlflow.pyfunc

    from anomaly_distill.detector import load_detector
    from anomaly_distill.metrics import rows_per_second
    from tasks.registry import resolve_model

    ref = resolve_model(f"models:/{NAME}@champion")
    pyfunc = mlflow.pyfunc.load_model(ref.uri)
    student = load_detector(mlflow.artifacts.download_artifacts(f"{ref.uri}/artifacts/detector.pt"))
    rows = live_rows(features, 100_000)
    raw = rows_per_second(student.model.score, rows.to_numpy(dtype=np.float32), repeats=5)
    wrapped = rows_per_second(pyfunc.predict, rows, repeats=5)
    return [
        f"| batch scoring, 100,000 rows, 1 thread | raw student {raw:,.0f} rows/s | pyfunc {wrapped:,.0f} rows/s "
        f"| pyfunc/raw {wrapped / raw:.2f} |"
    ]


def service(workdir: Path, features: pd.DataFrame) -> list[str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "flows.cli",
            "serve-api",
            "--model-name",
            NAME,
            "--port",
            str(port),
            "--live-store",
            str(workdir / "service-store"),
        ],
        cwd=workdir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    lines = []
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            deadline = time.time() + 120
            while time.time() < deadline:
                try:
                    client.get("/health").raise_for_status()
                    break
                except httpx.HTTPError:
                    time.sleep(0.5)
            for size, count in ((1, 500), (1000, 100)):
                body = live_rows(features, size).to_dict(orient="records")
                client.post("/score", json=body).raise_for_status()  # warm-up
                latencies = []
                start = time.perf_counter()
                for _ in range(count):
                    t0 = time.perf_counter()
                    client.post("/score", json=body).raise_for_status()
                    latencies.append(time.perf_counter() - t0)
                rate = count / (time.perf_counter() - start)
                lines.append(
                    f"| service, {size:,}-record requests ({count} sequential) | {percentiles(latencies)} "
                    f"| {rate:,.1f} requests/s | {rate * size:,.0f} rows/s |"
                )
    finally:
        server.terminate()
        server.wait(30)
    return lines


def drift(workdir: Path, features: pd.DataFrame) -> list[str]:
    import mlflow.pyfunc

    from flows.drift import DriftParameters, drift_monitoring
    from serving.live_store import LiveStore

    rows = live_rows(features, 100_000)
    scored = mlflow.pyfunc.load_model(f"models:/{NAME}@champion").predict(rows)
    store = LiveStore(str(workdir / "drift-store"))
    store.append(pd.concat([rows, scored], axis=1).assign(model_name=NAME, model_version="1"))
    start = time.perf_counter()
    summary = drift_monitoring(DriftParameters(model_name=NAME, live_store=store.url))
    seconds = time.perf_counter() - start
    return [
        f"| drift-monitoring flow, 100,000 live rows | {seconds:.1f} s wall | drift detected: "
        f"{summary['drift_detected']} (live rows are jittered training rows) | |"
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default=str(ROOT / "data/demo/thyroid.csv"))
    parser.add_argument("--label-column", default="label")
    args = parser.parse_args()
    features = pd.read_csv(args.data).drop(columns=[args.label_column])
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        os.chdir(workdir)
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{workdir / 'mlflow.db'}"
        subprocess.run(
            [
                sys.executable,
                "-m",
                "flows.cli",
                "train",
                "--data",
                args.data,
                "--label-column",
                args.label_column,
                "--model-name",
                NAME,
            ],
            check=True,
            capture_output=True,
        )
        lines = ["| what | measurement | | |", "|---|---|---|---|"]
        lines += throughput(Path(args.data), features) + service(workdir, features) + drift(workdir, features)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
