"""Rows → wall time, rows/s and peak memory for training and batch scoring (`make bench-scale`).

Data: rows drawn with replacement from ADBench donors (619,326 rows, 10 features) with Gaussian jitter of 1 % of
each column's standard deviation added, so no two rows repeat; labels are the donor row's. Written as Parquet in
row groups of 1M rows, generated a row group at a time.

Every command runs as `/usr/bin/time -v anomaly-distill …` in a fresh process against a sqlite MLflow store and
the embedded Prefect API: "peak RSS" is time's maximum resident set size of the command's own process; with Dask
the workers are other processes, so the table adds "tree RSS": the largest sum over the process tree, sampled
every 0.2 s. Scoring reads Parquet and writes Parquet (--out) and the live store.

Usage: .venv/bin/python benchmarks/scale.py [--train N ...] [--score N ...] [--workdir DIR] [--json PATH]
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
DONORS = ROOT.parent / "shared/data/adbench/11_donors.npz"
CLI = ROOT / ".venv/bin/anomaly-distill"
ROW_GROUP = 1_000_000
JITTER = 0.01  # of each column's standard deviation
SCORING_MODEL = "scale-1m"  # scoring uses the model trained on 1M rows


def generate(path: Path, rows: int, labels: bool, seed: int = 0) -> Path:
    if path.exists():
        return path
    donors = np.load(DONORS)
    X, y = donors["X"], donors["y"].astype(np.int64)
    noise = JITTER * X.std(axis=0)
    rng = np.random.default_rng(seed)
    columns = [f"f{i}" for i in range(X.shape[1])]
    partial = path.with_suffix(".partial")
    with pq.ParquetWriter(partial, _schema(columns, labels)) as writer:
        for begin in range(0, rows, ROW_GROUP):
            pick = rng.integers(0, len(X), size=min(ROW_GROUP, rows - begin))
            values = X[pick] + rng.normal(size=(len(pick), X.shape[1])) * noise
            arrays = [pa.array(values[:, i]) for i in range(X.shape[1])] + ([pa.array(y[pick])] if labels else [])
            writer.write_table(pa.table(arrays, names=columns + (["label"] if labels else [])))
    partial.rename(path)
    return path


def _schema(columns: list[str], labels: bool) -> pa.Schema:
    return pa.schema([(c, pa.float64()) for c in columns] + ([("label", pa.int64())] if labels else []))


def run_measured(command: list[str], env: dict) -> dict:
    """Wall seconds, time -v's peak RSS of the command, and the sampled peak RSS of its whole process tree."""
    start = time.perf_counter()
    process = subprocess.Popen(
        ["/usr/bin/time", "-v", *command], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    tree_peak = [0]
    sampler = threading.Thread(target=_sample_tree, args=(process.pid, tree_peak), daemon=True)
    sampler.start()
    output, _ = process.communicate()
    seconds = time.perf_counter() - start
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({process.returncode}):\n{output[-3000:]}")
    peak_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", output).group(1))
    streamed = re.search(r"anomalies, ([\d,]+) rows/s", output)  # score's own rate: first batch read to commit
    return {
        "seconds": seconds,
        "peak_rss_mb": peak_kb / 1024,
        "tree_rss_mb": tree_peak[0] / 2**20,
        "streamed_rows_per_second": int(streamed.group(1).replace(",", "")) if streamed else None,
    }


def _sample_tree(pid: int, peak: list) -> None:
    try:
        root = psutil.Process(pid)
        while root.is_running() and root.status() != psutil.STATUS_ZOMBIE:
            total = 0
            for process in [root, *root.children(recursive=True)]:
                try:
                    total += process.memory_info().rss
                except psutil.Error:
                    pass
            peak[0] = max(peak[0], total)
            time.sleep(0.2)
    except psutil.Error:
        pass


def environment(workdir: Path) -> dict:
    return {
        **os.environ,
        "MLFLOW_TRACKING_URI": f"sqlite:///{workdir}/mlflow.db",
        "PREFECT_HOME": str(workdir / "prefect"),
        "ANOMALY_DISTILL_LIVE_STORE": str(workdir / "live-store"),
    }


def train(workdir: Path, rows: int, runner: str) -> dict:
    data = generate(workdir / f"train-{rows}.parquet", rows, labels=True)
    name = "scale-1m" if rows == 1_000_000 and runner == "threads" else f"scale-{rows}-{runner}"
    command = [str(CLI), "train", "--data", str(data), "--label-column", "label", "--model-name", name]
    command += ["--task-runner", runner]
    return {"job": "train", "rows": rows, "runner": runner, **run_measured(command, environment(workdir))}


def score(workdir: Path, rows: int, runner: str) -> dict:
    data = generate(workdir / f"score-{rows}.parquet", rows, labels=False, seed=1)
    out = workdir / f"scored-{rows}-{runner}.parquet"
    command = [str(CLI), "score", "--data", str(data), "--model-name", SCORING_MODEL, "--out", str(out)]
    command += ["--task-runner", runner]
    result = run_measured(command, environment(workdir))
    written = pq.ParquetFile(out).metadata.num_rows
    assert written == rows, f"{out}: {written} rows written, {rows} scored"
    out.unlink()
    return {"job": "score", "rows": rows, "runner": runner, **result}


def markdown(results: list[dict]) -> str:
    lines = [
        "| job | runner | rows | wall s | rows/s (wall) | rows/s (streaming) | peak RSS MB (time -v) | tree RSS MB |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        streamed = r.get("streamed_rows_per_second")
        lines.append(
            f"| {r['job']} | {r['runner']} | {r['rows']:,} | {r['seconds']:.1f} | {r['rows'] / r['seconds']:,.0f} "
            f"| {f'{streamed:,}' if streamed else ''} | {r['peak_rss_mb']:,.0f} | {r['tree_rss_mb']:,.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--train", type=int, nargs="*", default=[100_000, 1_000_000, 10_000_000])
    parser.add_argument("--score", type=int, nargs="*", default=[1_000_000, 10_000_000, 50_000_000])
    parser.add_argument("--runners", nargs="*", default=["threads", "dask"])
    parser.add_argument("--workdir", type=Path, help="keep generated data here (default: a temporary folder)")
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks/scale.json")
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench-scale-"))
    workdir.mkdir(parents=True, exist_ok=True)
    results = []
    if 1_000_000 not in args.train and args.score and not (workdir / "mlflow.db").exists():
        results.append(train(workdir, 1_000_000, "threads"))  # the scoring model
    for rows in args.train:
        for runner in args.runners:
            results.append(train(workdir, rows, runner))
            print(markdown(results[-1:]).splitlines()[-1], file=sys.stderr, flush=True)
    for rows in args.score:
        for runner in args.runners:
            results.append(score(workdir, rows, runner))
            print(markdown(results[-1:]).splitlines()[-1], file=sys.stderr, flush=True)
    args.json.write_text(json.dumps(results, indent=1) + "\n")
    print(markdown(results))
    if not args.workdir:
        shutil.rmtree(workdir)


if __name__ == "__main__":
    main()
