"""Soak of the whole loop against real servers (Prefect + MLflow on PostgreSQL): simulated nightly cycles with
faults, and after every cycle the invariants a team relies on to leave retraining unattended.

    .venv/bin/python benchmarks/soak.py --cycles 30 --json benchmarks/soak.json      (make soak)

Each cycle: live traffic is scored into the live store; the nightly run trains on that night's data (a fresh
sample of the pool, or last night's file unchanged); drift is checked with retraining on drift. Faults, each in
its own cycles: drift injected (shifted traffic), the MLflow server SIGKILLed while a run trains (then restarted
and the same command re-run), a person's rollback, two runs triggered at the same moment, the champion's model
artifacts made unloadable for one nightly run.

Invariants, checked after every cycle against a fixed labelled audit set the runs never train on: exactly one
champion; its audit AUROC never below the best earlier champion's minus the gate tolerance (a person's choice,
e.g. a rollback, sets a new baseline); a version a person demoted never champion again without a person; no two
versions with the same training key; every scored live row still in the store.
"""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.small_disk (the full-disk night) lives beside the tests, not in the package
DEMO = ROOT / "data" / "demo" / "thyroid.csv"
NAME = "soak"
TOLERANCE = 0.01  # the gate's auroc_tolerance (default)
FAULTS = {  # never on an unchanged-data night (cycle % 3 == 2): there a fault would only meet a reused version
    3: "drift",  # an unlabelled retrain: compared on the champion's labelled reference snapshot, or held
    4: "kill_mlflow",
    6: "registry_unreachable",
    7: "rollback",
    9: "worse_candidate",  # 9-13: each night's training rows noisier than the last (11 reuses night 10's file)
    10: "worse_candidate",
    12: "worse_candidate",
    13: "worse_candidate",
    15: "simultaneous",
    16: "drift",
    18: "unloadable_champion",
    19: "rollback",
    21: "prefect_restart",
    22: "simultaneous",
    24: "disk_full",
    25: "unloadable_champion",
    27: "registry_unreachable",
    28: "kill_mlflow",
}
NOISE_STEP = 0.3  # the k-th worse-candidate night adds Gaussian noise of k x this x each column's std
FAULTS_PATH = ROOT / "benchmarks" / "faults"  # sitecustomize.py: registry reads that fail on cue


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Soak:
    def __init__(self, workdir: Path):
        from infra import servers

        self.servers, self.workdir = servers, workdir
        suffix = uuid.uuid4().hex[:8]
        self.settings = servers.Settings.with_new_secrets(
            prefect_db=f"ad_soak_prefect_{suffix}",
            mlflow_db=f"ad_soak_mlflow_{suffix}",
            prefect_port=free_port(),
            mlflow_port=free_port(),
            state=workdir / "state",
        )
        frame = pd.read_csv(DEMO)
        self.pool, self.audit = train_test_split(frame, test_size=0.3, stratify=frame["label"], random_state=99)
        self.env = {
            **os.environ,
            **self.settings.client_env(),
            "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
        }
        self.store = workdir / "live-store"
        self.scored_rows, self.faults, self.violations, self.log = 0, {}, [], []
        self.best_auroc, self.demoted, self.exit_codes, self.notes = 0.0, set(), [], []
        self.last_champion = None
        (workdir / "nightly.yaml").write_text("engine: {distill: {epochs: 20}}\n")
        (workdir / "worse.yaml").write_text(
            "engine: {distill: {epochs: 20}}\nholdout_column: holdout\ncheck_ranges: false\n"
        )

    def start(self) -> None:
        self.servers.start(self.settings, "prefect", "mlflow")
        os.environ.update(self.settings.client_env())

    def stop(self) -> None:
        for name in ("prefect", "mlflow"):
            self.servers.stop(self.settings, name)
        for database in self.settings.databases:
            self.servers.drop_database(self.settings, database)

    def cli(self, *args: str, wait: bool = True, env: dict | None = None):
        command = [sys.executable, "-m", "flows.cli", *args]
        process = subprocess.Popen(
            command,
            cwd=self.workdir,
            env={**self.env, **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        if not wait:
            return process
        out, _ = process.communicate(timeout=900)
        return process.returncode, out

    def nightly_data(self, cycle: int) -> Path:
        """A fresh sample of the pool most nights; every third night last night's file, unchanged. A worse-candidate
        night adds noise to the training rows only: the clean rows are the only ones the gate may hold out."""
        path = self.workdir / f"night-{cycle}.csv"
        if cycle % 3 == 2 and (self.workdir / f"night-{cycle - 1}.csv").exists():
            shutil.copy(self.workdir / f"night-{cycle - 1}.csv", path)
        elif FAULTS.get(cycle) == "worse_candidate":
            worse_nights = sorted(c for c, fault in FAULTS.items() if fault == "worse_candidate")
            self.noisy_sample(cycle, NOISE_STEP * (worse_nights.index(cycle) + 1)).to_csv(path, index=False)
        else:
            self.pool.sample(frac=0.8, random_state=cycle).to_csv(path, index=False)
        return path

    def noisy_sample(self, cycle: int, noise: float) -> pd.DataFrame:
        sample = self.pool.sample(frac=0.8, random_state=cycle).reset_index(drop=True)
        features = sample.columns.drop("label")
        train_rows = np.arange(len(sample)) < int(0.7 * len(sample))
        jitter = np.random.default_rng(cycle).normal(size=(int(train_rows.sum()), len(features)))
        sample.loc[train_rows, features] += noise * jitter * sample[features].std().to_numpy()
        return sample.assign(holdout=(~train_rows).astype(int))

    def train(self, data: Path, *extra: str, wait: bool = True, env: dict | None = None):
        config = "worse.yaml" if "holdout" in data.read_text().partition("\n")[0] else "nightly.yaml"
        args = [
            *f"train --data {data} --label-column label --model-name {NAME} --config {config}".split(),
            *extra,
        ]
        return self.cli(*args, wait=wait, env=env)

    def traffic(self, cycle: int, shifted: bool) -> None:
        rows = self.pool.drop(columns=["label"]).sample(300, random_state=1000 + cycle)
        if shifted:
            rows = rows.assign(f1=rows["f1"] * 3 + 0.05, f4=rows["f4"] + 0.3)
        path = self.workdir / f"traffic-{cycle}.csv"
        rows.to_csv(path, index=False)
        code, out = self.cli("score", "--data", str(path), "--model-name", NAME, "--live-store", str(self.store))
        if code == 0:
            self.scored_rows += len(rows)

    def cycle(self, cycle: int) -> None:
        fault = FAULTS.get(cycle)
        started = time.perf_counter()
        if cycle > 0:
            self.traffic(cycle, shifted=fault == "drift")
        data = self.nightly_data(cycle)
        self.expect = []  # this night's own checks, beside the invariants
        versions_before, champion_before = self.versions_and_champion()
        if fault == "kill_mlflow":
            since_ms = int(time.time() * 1000)
            process = self.train(data, wait=False)
            self.wait_for_student_run(since_ms)  # teacher trained, student distilling: the run is mid-way
            self.servers.kill(self.settings, "mlflow")
            killed_out, _ = process.communicate(timeout=900)
            self.servers.start(self.settings, "mlflow")
            code, out = self.train(data)
            self.expect += [
                (process.returncode == 3, f"the killed run exited {process.returncode}, not 3"),
                ("re-run the same command" in killed_out, "the killed run did not say to re-run the same command"),
                (self.versions_and_champion()[0] == versions_before + 1, "the re-run did not make exactly one version"),
            ]
        elif fault == "simultaneous":
            other = self.workdir / f"night-{cycle}-b.csv"
            self.pool.sample(frac=0.8, random_state=500 + cycle).to_csv(other, index=False)
            first, second = self.train(data, wait=False), self.train(other, wait=False)
            code = max(first.wait(900), second.wait(900))
        elif fault == "unloadable_champion":
            hidden = self.hide_champion_artifacts()
            code, out = self.train(data)
            hidden()
            versions, champion = self.versions_and_champion()
            self.expect += [
                (versions == versions_before + 1, "no new version was registered"),
                (champion == champion_before, "a champion that could not be scored was replaced (not fail-closed)"),
            ]
        elif fault == "registry_unreachable":  # the first alias read (the contract) answers; the gate's does not
            faulty = {"SOAK_FAULT": "alias_reads_fail_after=1", "PYTHONPATH": f"{FAULTS_PATH}:{ROOT}"}
            code, out = self.train(data, env=faulty)
            self.expect += [
                (code == 3, f"an unreachable registry exited {code}, not 3"),
                ("model registry" in out and "did not answer" in out, "the exit did not name the registry"),
                (self.versions_and_champion() == (versions_before, champion_before), "something was registered"),
            ]
            code, out = self.train(data)  # the registry is back: the same command again
        else:
            code, out = self.train(data)
        self.exit_codes.append(code)
        if fault == "worse_candidate":
            self.notes.append(self.newest_verdict())
        if fault == "prefect_restart":
            self.expect += self.deploy_through_a_prefect_restart(cycle)
        if fault == "disk_full":
            self.expect += self.service_on_a_full_disk(cycle)
        if fault == "rollback":
            rolled, _ = self.cli("rollback", "--model-name", NAME)
            if rolled == 0:
                self.demoted.add(self.last_rolled_back())
        if fault == "drift":
            before_drift = self.versions_and_champion()[0]
            self.cli("drift", "--model-name", NAME, "--live-store", str(self.store), "--retrain-on-drift")
            self.expect.append(self.unlabelled_retrain_was_compared(before_drift))
        if fault:
            self.faults[fault] = self.faults.get(fault, 0) + 1
        self.check(cycle, fault, time.perf_counter() - started)

    def deploy_through_a_prefect_restart(self, cycle: int) -> list[tuple[bool, str]]:
        """`deploy` (drift checks every 20 s, for a model of its own so that nothing it runs touches the soak's) while
        the Prefect server is stopped until the runner gives up, then started again: deploy must still be running,
        its deployments active, and a drift check must run after the restart. The runner gets no client retries
        and a 1 s poll, so that it gives up within seconds instead of minutes (what the outage is meant to reach)."""
        log = self.workdir / f"deploy-{cycle}.err"
        quick = {"PREFECT_CLIENT_MAX_RETRIES": "0", "PREFECT_RUNNER_POLL_FREQUENCY": "1"}
        command = [sys.executable, "-m", "flows.cli", "deploy", "--data", str(DEMO), "--label-column", "label"]
        command += ["--model-name", f"{NAME}-deploy", "--drift-interval", "20"]
        deploy = subprocess.Popen(
            command, cwd=self.workdir, env={**self.env, **quick}, stdout=subprocess.DEVNULL, stderr=log.open("wb")
        )
        try:
            self.wait_until(lambda: self.deployment("drift-monitoring/drift-check"), "the deployments are applied")
            self.servers.stop(self.settings, "prefect")
            self.wait_until(lambda: deploy.poll() is not None or "lost the Prefect API" in log.read_text(), "gives up")
            self.servers.start(self.settings, "prefect")
            restarted = time.time()
            self.wait_until(lambda: deploy.poll() is not None or "is back" in log.read_text(), "deploy is back")
            alive = deploy.poll() is None
            ran = alive and self.wait_until(lambda: self.drift_check_after(restarted), "a drift check", fail=False)
            active = alive and not self.deployment("drift-monitoring/drift-check").paused
        finally:
            deploy.terminate()
            stopped = deploy.wait(60)
        self.notes.append(f"prefect restart: deploy alive {alive}, active {active}, drift check ran {bool(ran)}")
        return [
            (alive, f"deploy exited across the restart: {log.read_text()[-300:]}"),
            (active, "the drift-check deployment is paused after the restart"),
            (bool(ran), "no drift check ran after the restart"),
            (stopped == 0, f"deploy stopped with {stopped} on SIGTERM, not 0"),
        ]

    @staticmethod
    def wait_until(condition, what: str, timeout: float = 180, fail: bool = True):
        deadline = time.time() + timeout
        while not (result := condition()):
            if time.time() > deadline:
                if fail:
                    raise RuntimeError(f"soak: {what} did not happen within {timeout:.0f} s")
                return result
            time.sleep(1)
        return result

    @staticmethod
    def deployment(name: str):
        from prefect.client.orchestration import get_client

        try:
            with get_client(sync_client=True) as prefect:
                return prefect.read_deployment_by_name(name)
        except Exception:  # noqa: BLE001 - not applied yet, or the server is still starting
            return None

    def drift_check_after(self, since: float) -> bool:
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

        drift_check = self.deployment("drift-monitoring/drift-check").id
        of_drift_check = DeploymentFilter(id=DeploymentFilterId(any_=[drift_check]))
        with get_client(sync_client=True) as prefect:
            runs = prefect.read_flow_runs(deployment_filter=of_drift_check)
        return any(run.start_time and run.start_time.timestamp() > since for run in runs)

    def service_on_a_full_disk(self, cycle: int) -> list[tuple[bool, str]]:
        """serve-api with its live store on a 1 MiB tmpfs: scores, the disk fills (503, nothing stored), the disk is
        freed (200 again); the store then holds exactly the acknowledged rows."""
        import httpx

        from stores.live_store import ROW_ID, LiveStore
        from tests.small_disk import SmallDisk

        disk, port = SmallDisk(self.workdir / f"disk-{cycle}"), free_port()
        command = ["serve-api", "--model-name", NAME, "--port", str(port), "--workers", "1", "--poll-seconds", "0"]
        service = self.cli(*command, "--live-store", str(disk.path / "store"), wait=False)
        rows = self.audit.drop(columns=["label"]).to_dict(orient="records")
        answers, acknowledged = [], []
        try:
            self.servers.wait_healthy(f"http://127.0.0.1:{port}/health", 180, service)
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
                for phase in ("before", "full", "freed"):
                    if phase == "full":
                        disk.fill()
                    elif phase == "freed":
                        disk.free()
                    # a full request's log line is more than the room left in the last page of the log's file
                    answer = client.post("/score", json=rows if phase == "full" else rows[:5])
                    answers.append(answer.status_code)
                    acknowledged += answer.json()["row_ids"] if answer.status_code == 200 else []
        finally:
            service.terminate()
            service.wait(30)
            stored = sorted(LiveStore(str(disk.path / "store")).read()[ROW_ID])
            disk.close()
        self.notes.append(f"full disk: answers {answers}, {len(acknowledged)} rows acknowledged, {len(stored)} stored")
        return [
            (answers == [200, 503, 200], f"a full disk answered {answers}, not 200/503/200"),
            (stored == sorted(acknowledged), "the store does not hold exactly the acknowledged rows"),
        ]

    def newest_verdict(self) -> str:
        """The newest version's gate outcome and the checks it failed (which comparison refused it)."""
        from tasks.tracking import client

        newest = max(client().search_model_versions(f"name='{NAME}'"), key=lambda v: int(v.version))
        failed = [r for r in newest.tags.get("gate_reasons", "").splitlines() if r.startswith(("FAIL", "NOT"))]
        return f"v{newest.version} gate {newest.tags.get('gate')}" + (f": {'; '.join(failed)}" if failed else "")

    def unlabelled_retrain_was_compared(self, made_before: int) -> tuple[bool, str]:
        """The drift retrain (unlabelled: no feedback in the soak) rested on a comparison, or was held."""
        from tasks.tracking import client

        versions = [v for v in client().search_model_versions(f"name='{NAME}'") if int(v.version) > made_before]
        reasons = [v.tags.get("gate_reasons", "") for v in versions]
        compared = all("labelled reference snapshot" in r or "HOLD:" in r for r in reasons)
        self.notes.append(f"drift retrain: {len(versions)} version(s), " + "; ".join(r[-160:] for r in reasons))
        return compared and bool(versions), "the drift retrain was promoted without a comparison (or none was made)"

    def wait_for_student_run(self, since_ms: int, timeout: float = 300) -> None:
        from tasks.tracking import client

        deadline = time.time() + timeout
        query = f"attributes.run_name = 'student' and attributes.start_time >= {since_ms}"
        while True:
            experiment = client().get_experiment_by_name("anomaly-distill")
            if experiment and client().search_runs([experiment.experiment_id], query):
                return
            if time.time() > deadline:
                raise RuntimeError("the run to be killed never reached its student step")
            time.sleep(0.2)

    def versions_and_champion(self) -> tuple[int, str | None]:
        from stores import registry
        from tasks.tracking import client

        try:
            versions = client().search_model_versions(f"name='{NAME}'")
        except Exception:  # noqa: BLE001 - no registered model before the first night
            return 0, None
        champion = registry.version_by_alias(NAME, registry.CHAMPION)
        return len(versions), champion and str(champion.version)

    def hide_champion_artifacts(self):
        """Moves the champion's logged model away (an artifact store losing files); returns how to undo it."""
        from stores import registry

        champion = registry.version_by_alias(NAME, registry.CHAMPION)
        model_id = champion.source.rsplit("/", 1)[-1]  # models:/m-…: the logged model's folder name
        root = self.settings.state / "mlflow-artifacts"
        folders = [p for p in root.rglob("*") if p.is_dir() and p.name == model_id]
        if not folders:
            raise RuntimeError(f"no artifact folder {model_id} under {root}")
        moved = [(folder, folder.with_name(folder.name + ".hidden")) for folder in folders[:1]]
        for folder, aside in moved:
            folder.rename(aside)
        return lambda: [aside.rename(folder) for folder, aside in moved]

    def last_rolled_back(self) -> str:
        from stores import registry
        from tasks.tracking import client

        versions = client().search_model_versions(f"name='{NAME}'")
        return max((v for v in versions if registry.DEMOTED_TAG in v.tags), key=lambda v: int(v.version)).version

    def audit_auroc(self, version: str) -> float:
        import mlflow.pyfunc

        model = mlflow.pyfunc.load_model(f"models:/{NAME}/{version}")
        scores = model.predict(self.audit.drop(columns=["label"]))["score"]
        return float(roc_auc_score(self.audit["label"], scores))

    def check(self, cycle: int, fault: str | None, seconds: float) -> None:
        from stores import registry
        from tasks.tracking import client

        versions = client().search_model_versions(f"name='{NAME}'")
        # search results carry no aliases: ask each version (an alias missing or on two versions is the failure)
        holders = [v.version for v in versions if "champion" in client().get_model_version(NAME, v.version).aliases]
        champion = registry.version_by_alias(NAME, registry.CHAMPION)
        problems = [text for ok, text in self.expect if not ok]
        if champion is None or len(holders) != 1:
            problems.append(f"champions: {holders}")
        by_person = registry.last_move(NAME)[0] == registry.PERSON
        auroc = self.audit_auroc(champion.version) if champion else float("nan")
        if champion and not by_person and auroc < self.best_auroc - TOLERANCE:
            problems.append(f"audit AUROC {auroc:.4f} < best earlier {self.best_auroc:.4f} - {TOLERANCE}")
        if champion and not by_person and str(champion.version) in self.demoted:
            problems.append(f"demoted v{champion.version} is champion again without a person")
        keys = [v.tags.get(registry.TRAINING_KEY_TAG) for v in versions]
        if len(keys) != len(set(keys)):
            problems.append("two versions share a training key")
        stored = len(pd.concat([pd.read_parquet(p) for p in self.store.rglob("part-*.parquet")])) if cycle else 0
        if stored != self.scored_rows:
            problems.append(f"live store holds {stored} rows, {self.scored_rows} were scored")
        if champion:  # a person's choice is the new baseline; the pipeline's may only raise it
            self.best_auroc = auroc if by_person else max(self.best_auroc, auroc)
        self.violations += [f"cycle {cycle}: {p}" for p in problems]
        self.log.append(
            {
                "cycle": cycle,
                "fault": fault,
                "champion": champion and champion.version,
                "versions": len(versions),
                "audit_auroc": auroc,
                "champion_moved": champion is not None and str(champion.version) != self.last_champion,
                "notes": self.notes,
                "seconds": round(seconds, 1),
                "violations": problems,
            }
        )
        print(
            f"cycle {cycle:2d} {fault or '':20s} champion v{champion and champion.version} of {len(versions)} "
            f"versions, audit AUROC {auroc:.4f}, {seconds:.0f} s {'OK' if not problems else problems}",
            flush=True,
        )
        self.last_champion, self.notes = champion and str(champion.version), []


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=30)
    parser.add_argument("--json", help="write the cycle log and the summary here")
    parser.add_argument(
        "--try",
        dest="try_faults",
        nargs="+",
        choices=sorted(set(FAULTS.values())),
        help="only these faults, one per night after a first champion (a quick check of the soak)",
    )
    args = parser.parse_args()
    if args.try_faults:
        nights = [c for c in range(1, 3 * len(args.try_faults) + 2) if c % 3 != 2][: len(args.try_faults)]
        FAULTS.clear()
        FAULTS.update(zip(nights, args.try_faults))
        args.cycles = nights[-1] + 1
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stopped from outside: still stop the servers
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        soak = Soak(Path(tmp))
        soak.start()
        try:
            for cycle in range(args.cycles):
                soak.cycle(cycle)
        finally:
            soak.stop()
    summary = {
        "cycles": args.cycles,
        "faults": soak.faults,
        "violations": soak.violations,
        "wall_seconds": round(time.perf_counter() - start),
        "live_rows_scored": soak.scored_rows,
        "log": soak.log,
    }
    print(json.dumps({k: v for k, v in summary.items() if k != "log"}, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2, default=str))
    return 1 if soak.violations else 0


if __name__ == "__main__":
    sys.exit(main())
