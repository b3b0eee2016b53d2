"""The browser and the MLflow UI the tests look through: Debian's Chromium driven by Playwright, screenshots
under outputs/browser/, and `mlflow server` on a test's sqlite store."""

import importlib.util
import os
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

from infra.servers import mlflow_job_execution
from tasks.tracking import tracking_uri
from tests.conftest import require

CHROMIUM = "/usr/bin/chromium"  # Debian's package; .ci/run installs it
SCREENSHOTS = Path(__file__).resolve().parents[2] / "outputs" / "browser"  # the test's output folder (gitignored)
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]  # no calls home: this machine has no way out


@contextmanager
def browser(servers=None):
    """A Chromium page (with the MLflow login when `servers`). Playwright's sync API runs an event loop in this
    thread while it is open: asyncio.run and Prefect's sync-or-async helpers fail or return coroutines then (hence
    _sync=True in `run`)."""
    require(os.path.exists(CHROMIUM), f"Chromium not installed at {CHROMIUM} (apt-get install chromium; .ci/run does)")
    require(importlib.util.find_spec("playwright") is not None, "playwright not installed (pip install playwright)")
    import playwright.sync_api as playwright

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with playwright.sync_playwright() as driver:
        chromium = driver.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        login = {"username": servers.mlflow_admin, "password": servers.mlflow_admin_password} if servers else None
        yield chromium.new_page(viewport={"width": 1400, "height": 1000}, http_credentials=login)
        chromium.close()


def expect(locator):
    import playwright.sync_api as playwright

    return playwright.expect(locator)


@contextmanager
def mlflow_ui(workspace):
    """`mlflow server` on this test's sqlite store, as a user starts it to look at the runs. One worker: one browser
    reads it, and each of the default four imports MLflow (the start took 12.7 s with four, 6.5 s with one)."""
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", tracking_uri(), "--port", str(port)]
    command += ["--workers", "1"]
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": mlflow_job_execution()}
    server = subprocess.Popen(command, cwd=workspace, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 90
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
                break
            except OSError:
                assert time.time() < deadline and server.poll() is None, "mlflow server did not start"
                time.sleep(0.5)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(30)
