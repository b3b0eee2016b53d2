"""The temporary Prefect API of a one-off CLI run: launched as the command begins, stopped without waiting.

With no API URL configured, Prefect starts a temporary API server (a uvicorn subprocess) on the first client call,
after importing its whole server package into the command's process (~5 s of one core, competing with every other
import for the GIL), and waits for it. Here the same subprocess is launched before the command imports anything
heavy, so it boots on the other core while torch, scikit-learn and MLflow import. Once Prefect's settings are
loaded and name no server, PREFECT_API_URL is pointed at it — Prefect then talks to it as to a dedicated server
and never imports the server package here (child processes, such as Dask workers, inherit the address). Where a
server is configured after all (in a Prefect profile), the launched one is stopped unused. At exit it is stopped
once the command's logs and events are sent, without waiting for its own shutdown (its runs are complete: flows
end only after their final state is stored).
"""

import atexit
import os
import random
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import nullcontext

SERVER_ENV = {
    "PREFECT_UI_ENABLED": "0",
    "PREFECT__SERVER_EPHEMERAL": "1",
    "PREFECT__SERVER_FINAL": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "0",  # a throwaway server; offline it logged an ERROR line per command
}
PORT_IN_USE_EXIT = 3  # uvicorn's exit status when another process took the port first


class EmbeddedApi:
    def __init__(self):
        self.process: subprocess.Popen | None = None
        self.port = 0
        self._launch()
        # Registered before Prefect's log and event workers register their drains at first use, so it runs after
        # them (exit hooks run last-in, first-out); also stops a server a command never got to use.
        atexit.register(self.stop_without_waiting)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def _launch(self) -> None:
        self.port = _free_port()
        command = [sys.executable, "-m", "uvicorn", "--factory", "prefect.server.api.server:create_app"]
        command += ["--host", "127.0.0.1", "--port", str(self.port), "--log-level", "error", "--lifespan", "on"]
        self.process = subprocess.Popen(command, env={**os.environ, **SERVER_ENV})

    def ready(self) -> bool:
        """Points Prefect at this server once it answers; False (and stopped) where Prefect has one configured or
        this one does not come up — Prefect then starts its own and reports what fails."""
        from prefect.context import refresh_global_settings_context
        from prefect.settings import (
            PREFECT_API_URL,
            PREFECT_SERVER_EPHEMERAL_ENABLED,
            PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS,
        )

        if PREFECT_API_URL.value() or not PREFECT_SERVER_EPHEMERAL_ENABLED.value():
            self.stop_without_waiting()
            return False
        if not self._wait_healthy(PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value()):
            self.stop_without_waiting()
            return False
        os.environ["PREFECT_API_URL"] = self.api_url
        os.environ.setdefault("PREFECT_UI_URL", "")  # it serves no UI: no "View at" links that lead nowhere
        refresh_global_settings_context()
        return True

    def connect(self):
        """`ready`, then the settings the command's flows run under: without flow-run heartbeats where this server
        is used. Heartbeats let a server notice a crashed run, and this one stops with the command; Prefect's
        heartbeat thread sleeps in 1 s steps and is joined when the flow ends, which cost every run up to a second
        (0.5 s on average)."""
        if not self.ready():
            return nullcontext()
        from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

        return temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None})

    def _wait_healthy(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() == PORT_IN_USE_EXIT:
                self._launch()
            elif self.process.poll() is not None:
                return False
            try:
                with urllib.request.urlopen(f"{self.api_url}/health", timeout=2) as response:
                    if response.status == 200:
                        return True
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.05)
        return False

    def stop_without_waiting(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()


def _free_port() -> int:
    for _ in range(50):
        port = random.randrange(8000, 9000)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    raise RuntimeError("no free port between 8000 and 8999 for the temporary Prefect API")


def flow_settings(api: EmbeddedApi | None):
    """The settings a command's flows run under: the launched API's where it serves them, else Prefect's own."""
    return nullcontext() if api is None else api.connect()


def start_embedded_api() -> EmbeddedApi | None:
    """Launches the temporary API unless the environment names a server (a profile's is checked in `ready`)."""
    if os.environ.get("PREFECT_API_URL"):
        return None
    return EmbeddedApi()
