"""Where `make run`'s time goes: `anomaly-distill train` on the demo set, phase by phase, for this checkout and
(side by side, in the same run) for an earlier commit checked out in a temporary worktree.

Usage: .venv/bin/python benchmarks/overhead.py [--before REF] [--repeats 3] [--servers]
(--servers: against a Prefect server and an MLflow server on PostgreSQL, started for the run by infra/servers.py,
instead of the embedded defaults; this checkout is then also measured through `anomaly-distill daemon`, started
for the run in the same environment, which the commands reach through $ANOMALY_DISTILL_DAEMON)
The runs of one checkout share a temporary directory (sqlite MLflow store) and PREFECT_HOME, as a user's
repeated `make run` does: the first creates both databases and trains the teacher, the others reuse them and
register nothing new (same data, parameters and code); the table shows the median of those, and the first run's
overhead in its last column. Phases come from the log's timestamps and the CLI's own "Time:" line:
- start: process start → the flow's first log line (imports, embedded Prefect API start)
- validation: data loading and the Great Expectations gate (the flow's first tasks)
- compute: teacher, soft labels, student, evaluation (the CLI's stage timers)
- tracking: the rest of the flow (MLflow logging, registration, aliases, Prefect task overhead)
- exit: the flow's last log line → process end
"""

import argparse
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import numpy as np
from worktree import worktree  # beside this script

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "data/demo/thyroid.csv"
STAMP = re.compile(r"^(\d\d:\d\d:\d\d\.\d{3}) \| \w+ +\| (.*)$")


SERVERS: dict[str, str] = {}  # PREFECT_API_URL and MLFLOW_TRACKING_URI of running servers (--servers)


def run_env(code: Path, workdir: Path, prefect_home: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(code), "PREFECT_HOME": str(prefect_home)}
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{workdir / 'mlflow.db'}"
    env.pop("ANOMALY_DISTILL_DAEMON", None)
    return env | SERVERS


def run_once(code: Path, workdir: Path, prefect_home: Path, daemon: Path | None = None) -> dict:
    env = run_env(code, workdir, prefect_home) | ({"ANOMALY_DISTILL_DAEMON": str(daemon)} if daemon else {})
    command = [sys.executable, "-m", "flows.cli", "train", "--data", str(DEMO), "--label-column", "label"]
    command += ["--model-name", "overhead"]
    started = datetime.now()
    t0 = time.perf_counter()
    out = subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True, check=True)
    if daemon and "run by the anomaly-distill daemon" not in out.stderr:
        raise RuntimeError(f"the run did not go through the daemon:\n{out.stderr[-2000:]}")
    wall = time.perf_counter() - t0
    lines = out.stdout.splitlines() + out.stderr.splitlines()
    stamps = [(m.group(1), m.group(2)) for m in map(STAMP.match, lines) if m]

    def seconds(text: str, last: bool = False) -> float:
        hits = [t for t, message in stamps if text in message]
        clock = datetime.combine(started.date(), datetime.strptime(hits[-1 if last else 0], "%H:%M:%S.%f").time())
        return (clock - started).total_seconds()

    flow_start, flow_end = seconds("Beginning flow run"), seconds("Flow run", last=True)
    validated = seconds("Task run 'validate_data")
    compute = sum(
        float(s)
        for s in re.findall(
            r"(?:train_teacher|generate_soft_labels|distill_student|evaluate) "
            r"([\d.]+) s",
            out.stdout,
        )
    )
    flow = flow_end - flow_start
    return {
        "wall": wall,
        "start": flow_start,
        "validation": validated - flow_start,
        "compute": compute,
        "tracking": flow - (validated - flow_start) - compute,
        "exit": wall - flow_end,
    }


def measure(code: Path, repeats: int, daemon: bool = False) -> list[dict]:
    with tempfile.TemporaryDirectory() as tmp:
        workdir, home = Path(tmp), Path(tmp) / "prefect-home"
        if not daemon:
            return [run_once(code, workdir, home) for _ in range(repeats)]
        socket_path = workdir / "daemon.sock"
        command = [sys.executable, "-m", "flows.cli", "daemon", "--socket", str(socket_path)]
        log = open(workdir / "daemon.log", "wb")
        server = subprocess.Popen(command, cwd=workdir, env=run_env(code, workdir, home), stdout=log, stderr=log)
        try:
            deadline = time.time() + 180
            while not socket_path.exists() and server.poll() is None and time.time() < deadline:
                time.sleep(0.2)
            return [run_once(code, workdir, home, socket_path) for _ in range(repeats)]
        finally:
            server.terminate()
            server.wait(60)


def row(label: str, runs: list[dict]) -> str:
    keys = ["wall", "start", "validation", "compute", "tracking", "exit"]
    warm = runs[1:] or runs
    cells = [f"{np.median([r[k] for r in warm]):.1f}" for k in keys]
    overhead = np.median([r["wall"] - r["compute"] for r in warm])
    first = runs[0]["wall"] - runs[0]["compute"]
    return f"| {label} | " + " | ".join(cells) + f" | **{overhead:.1f}** | {first:.1f} |"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--before", help="an earlier commit to measure side by side (a temporary worktree)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--servers", action="store_true", help="against a Prefect and an MLflow server on PostgreSQL (infra/servers.py)"
    )
    args = parser.parse_args()
    if args.servers:
        with running_servers():
            return table(args)
    return table(args)


@contextmanager
def running_servers():
    """Fresh databases and servers on free ports for the run; stopped and dropped afterwards."""
    sys.path.insert(0, str(ROOT))
    from infra import servers as infra

    suffix = os.urandom(4).hex()
    with tempfile.TemporaryDirectory() as state:
        settings = infra.Settings.with_new_secrets(
            prefect_db=f"ad_overhead_prefect_{suffix}",
            mlflow_db=f"ad_overhead_mlflow_{suffix}",
            prefect_port=free_port(),
            mlflow_port=free_port(),
            state=Path(state),
        )
        try:
            infra.start(settings, "prefect", "mlflow")
            SERVERS.update(settings.client_env())
            yield
        finally:
            SERVERS.clear()
            for name in ("prefect", "mlflow"):
                infra.stop(settings, name)
            for database in settings.databases:
                infra.drop_database(settings, database)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def table(args) -> None:
    lines = [
        "| code | wall | start | validation | compute | tracking | exit | wall − compute | first run: wall − compute |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    if args.before:
        with worktree(args.before) as tree:
            lines.append(row(f"before ({args.before})", measure(tree, args.repeats)))
    lines.append(row("this checkout", measure(ROOT, args.repeats)))
    if args.servers:
        lines.append(row("this checkout, through `anomaly-distill daemon`", measure(ROOT, args.repeats, daemon=True)))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
