"""Shared fixtures. Tests use the bundled demo set or generated data where they can; what needs ../shared,
PostgreSQL, Chromium or Playwright goes through `require`: a skip with the reason here, a failure under .ci/run
(REQUIRE_ALL=1), where nothing may be skipped."""

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "data" / "demo" / "thyroid.csv"
SHARED = ROOT.parent / "shared" / "data"
ADBENCH = SHARED / "adbench"
NAB = SHARED / "nab"

# Before anything imports Prefect: the tests, and the CLI subprocesses they start, get a Prefect home of their own,
# so the ephemeral API's SQLite database and result storage are not the user's ~/.prefect.
os.environ["PREFECT_HOME"] = tempfile.mkdtemp(prefix="anomaly-distill-tests-prefect-")
atexit.register(shutil.rmtree, os.environ["PREFECT_HOME"], ignore_errors=True)


# The test files that use the machine's PostgreSQL. One of them restarts it under the others' servers, so under
# pytest-xdist (`make test`) they run on one process, one after another.
SHARED_POSTGRESQL = {
    f"tests/integration/{name}.py"
    for name in ("test_deploy_restart", "test_postgres_restart", "test_servers", "test_work_pool")
}


# Under `make test` the files are dealt out in collection order, so the longest go first (their test times in
# BENCHMARKS.md "How long make test takes"): the PostgreSQL unit on one process, these on the other, then the short
# files fill in until both end together. In file-name order test_trust.py (~200 s) is dealt last of the long files.
# Measured, the gain is within the machine's run-to-run spread (BENCHMARKS.md).
LONGEST_FIRST = (
    *sorted(SHARED_POSTGRESQL),
    *(
        f"tests/integration/{name}.py"
        for name in ("test_trust", "test_training_flow", "test_live_flows", "test_segments")
    ),
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {path: i for i, path in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))  # stable: a file's order holds


def pytest_xdist_make_scheduler(config, log):
    """`--dist loadfile` (a file's tests on one process, in order, with its module fixtures), with the files in
    SHARED_POSTGRESQL dealt out as one unit."""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling  # here: the hook runs only where pytest-xdist does

    class FilesAndPostgreSQL(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = super()._split_scope(nodeid)
            return "postgresql" if path in SHARED_POSTGRESQL else path

    return FilesAndPostgreSQL(config, log)


def require(ok: bool, reason: str) -> None:
    """Skip (with the reason) when something outside the repository is missing; fail instead under CI."""
    if ok:
        return
    if os.environ.get("REQUIRE_ALL") == "1":
        pytest.fail(f"required for this run (REQUIRE_ALL=1): {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture
def adbench():
    require(ADBENCH.is_dir(), f"shared ADBench data not found at {ADBENCH}")
    return ADBENCH


@pytest.fixture(scope="session")
def thyroid():
    """The bundled demo set (ADBench thyroid) as a labelled table."""
    from anomaly_distill.data import load_table

    return load_table(DEMO, "label")


@pytest.fixture
def small_frame() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(400, 4)), columns=["a", "b", "c", "d"])
    frame.loc[:19, ["a", "b"]] += 6  # 5 % obvious anomalies
    frame["label"] = 0
    frame.loc[:19, "label"] = 1
    return frame
