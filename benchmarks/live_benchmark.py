"""Live-data numbers for BENCHMARKS.md: pyfunc vs raw student throughput, service latency, drift flow wall time.

Usage: .venv/bin/python benchmarks/live_benchmark.py [--data data/demo/thyroid.csv] [--before REF]
(--before: also serve-api of an earlier commit, from a temporary git worktree, against this checkout's, alternating)
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
import orjson
import pandas as pd
from http_load import closed_loop, post_request  # beside this script
from worktree import worktree

ROOT = Path(__file__).resolve().parents[1]
NAME = "bench-live"
WORKERS = 2  # per server under test
CLIENTS = 16  # concurrent connections in the concurrent measurement


def live_rows(features: pd.DataFrame, n: int) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = features.iloc[rng.integers(0, len(features), n)].reset_index(drop=True)
    return rows + rng.normal(0, 0.01, rows.shape) * features.std().to_numpy()


def throughput(data: Path, features: pd.DataFrame) -> list[str]:
    import mlflow.pyfunc

    from anomaly_distill.detector import load_detector
    from anomaly_distill.metrics import rows_per_second
    from stores.registry import resolve_model

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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def started(command: list[str], port: int, health: str, workdir: Path, code: Path = ROOT) -> subprocess.Popen:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}  # its uvicorn
    env["PYTHONPATH"] = str(code)
    log = open(workdir / f"server-{port}.log", "wb")
    server = subprocess.Popen(command, cwd=workdir, stdout=log, stderr=subprocess.STDOUT, env=env)
    deadline = time.time() + 180
    while time.time() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}{health}", timeout=2).status_code == 200:
                return server
        except httpx.HTTPError:
            time.sleep(0.5)
    server.kill()
    tail = (workdir / f"server-{port}.log").read_text()[-2000:]
    raise RuntimeError(f"{command[:5]} did not start:\n{tail}")


SERVERS = {
    # name: (command after the port is known, health path, scoring path, body of a list of records)
    "anomaly-distill serve-api": (
        lambda port, store: [
            sys.executable,
            "-m",
            "flows.cli",
            "serve-api",
            "--model-name",
            NAME,
            "--port",
            str(port),
            "--workers",
            str(WORKERS),
            "--live-store",
            str(store),
        ],
        "/health",
        "/score",
        lambda records: orjson.dumps(records),
    ),
    "mlflow models serve": (
        lambda port, store: [
            sys.executable,
            "-m",
            "mlflow",
            "models",
            "serve",
            "-m",
            f"models:/{NAME}@champion",
            "--env-manager",
            "local",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-w",
            str(WORKERS),
        ],
        "/ping",
        "/invocations",
        lambda records: orjson.dumps({"dataframe_records": records}),
    ),
}


def measure_server(name: str, workdir: Path, features: pd.DataFrame) -> dict:
    command, health, path, body = SERVERS[name]
    port = free_port()
    server = started(command(port, workdir / "service-store"), port, health, workdir)
    one = body(live_rows(features, 1).to_dict(orient="records"))
    thousand = body(live_rows(features, 1000).to_dict(orient="records"))
    try:
        return {
            "sequential": closed_loop(port, post_request(path, one), connections=1, seconds=10, limit=3000),
            "concurrent": closed_loop(port, post_request(path, one), connections=CLIENTS, seconds=10),
            "batch": closed_loop(port, post_request(path, thousand), connections=1, seconds=10, limit=200),
        }
    finally:
        server.terminate()
        server.wait(60)


def service(workdir: Path, features: pd.DataFrame) -> list[str]:
    results = {name: measure_server(name, workdir, features) for name in SERVERS}
    lines = [
        "",
        f"| server ({WORKERS} workers) | 1 record, sequential: p50 / p99 | requests/s | {CLIENTS} concurrent clients: "
        "requests/s | p50 / p99 | 1,000 records, sequential: p50 | rows/s |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        seq, con, batch = r["sequential"], r["concurrent"], r["batch"]
        lines.append(
            f"| {name} | {seq['p50_ms']:.2f} / {seq['p99_ms']:.2f} ms | {seq['requests_per_s']:,.0f} "
            f"| {con['requests_per_s']:,.0f} | {con['p50_ms']:.2f} / {con['p99_ms']:.2f} ms "
            f"| {batch['p50_ms']:.1f} ms | {batch['requests_per_s'] * 1000:,.0f} |"
        )
    ours, theirs = (results[name] for name in SERVERS)
    ratios = {kind: ours[kind]["requests_per_s"] / theirs[kind]["requests_per_s"] for kind in ours}
    lines.append(
        f"| ratio serve-api / mlflow | | {ratios['sequential']:.1f}x | {ratios['concurrent']:.1f}x | | | "
        f"{ratios['batch']:.1f}x |"
    )
    return lines


def side_by_side(workdir: Path, features: pd.DataFrame, before: str, rounds: int = 3) -> list[str]:
    """serve-api of `before` (a temporary worktree) and of this checkout, both up at once, measured in turn
    (4 s each, `rounds` times): medians of requests/s, so a change in the host's speed hits both alike."""
    request = post_request("/score", orjson.dumps(live_rows(features, 1).to_dict(orient="records")))
    with worktree(before) as tree:
        servers = {}
        try:
            for label, code in ((f"before ({before})", tree), ("this checkout", ROOT)):
                port = free_port()
                command = SERVERS["anomaly-distill serve-api"][0](port, workdir / f"side-by-side-{port}")
                servers[label] = (port, started(command, port, "/health", workdir, code))
            results = {(label, clients): [] for label in servers for clients in (1, CLIENTS)}
            for _ in range(rounds):
                for clients in (1, CLIENTS):
                    for label, (port, _) in servers.items():
                        results[label, clients].append(closed_loop(port, request, connections=clients, seconds=4))
        finally:
            for _, server in servers.values():
                server.terminate()
                server.wait(60)
    lines = ["", f"| serve-api code | 1 record, 1 client: requests/s (p50) | 1 record, {CLIENTS} clients: requests/s |"]
    lines.append("|---|---|---|")
    for label in servers:
        one, many = results[label, 1], results[label, CLIENTS]
        p50 = np.median([r["p50_ms"] for r in one])
        lines.append(
            f"| {label} | {np.median([r['requests_per_s'] for r in one]):,.0f} ({p50:.2f} ms) "
            f"| {np.median([r['requests_per_s'] for r in many]):,.0f} |"
        )
    return lines


def drift(workdir: Path, features: pd.DataFrame) -> list[str]:
    import mlflow.pyfunc

    from flows.drift import DriftParameters, drift_monitoring
    from stores.live_store import LiveStore

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
    parser.add_argument("--before", help="an earlier commit whose serve-api to measure beside this checkout's")
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
        lines += throughput(Path(args.data), features) + drift(workdir, features) + service(workdir, features)
        if args.before:
            lines += side_by_side(workdir, features, args.before)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
