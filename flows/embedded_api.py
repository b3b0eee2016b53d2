"""The embedded Prefect API of a one-off CLI run, started while the heavy libraries import and stopped without
waiting for its shutdown.

With no `PREFECT_API_URL`, Prefect starts a temporary API server (a subprocess, ~3 s) on the first client call,
and at exit stops it and waits for it (~3 s more). Here it is started on a thread as soon as the command begins —
the subprocess runs on another core while torch, scikit-learn and MLflow import — and told to stop when the
command's logs and events are sent; the process then exits without waiting for the server's own shutdown (its
runs are complete: flows end only after their final state is stored).
"""

import atexit
import threading


class EarlyApi:
    def __init__(self):
        self.server = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._start, name="prefect-api-start", daemon=True)

    def _start(self) -> None:
        try:
            from prefect.server.api.server import SubprocessASGIServer

            server = SubprocessASGIServer()  # the instance Prefect's own client will find (one per port key)
            server.start()
            self.server = server
            # Registered after Prefect's own stop hook, so it runs before it (exit hooks run last-in, first-out),
            # and before the log and event workers' drains, which register later, so it runs after them.
            atexit.register(self.stop_without_waiting)
        except BaseException as error:  # Prefect will try again itself, and report what fails then
            self.error = error

    def ready(self) -> None:
        """Waits for the start to finish (Prefect must not start a second one meanwhile)."""
        self.thread.join()

    def stop_without_waiting(self) -> None:
        process = getattr(self.server, "server_process", None)
        if process is not None and process.poll() is None:
            process.terminate()
            self.server.server_process = None  # Prefect's exit hook then has nothing left to wait for


def start_embedded_api() -> EarlyApi | None:
    """Starts the temporary API when this run would use one; None against a configured server."""
    from prefect.settings import PREFECT_API_URL, PREFECT_SERVER_EPHEMERAL_ENABLED

    if PREFECT_API_URL.value() or not PREFECT_SERVER_EPHEMERAL_ENABLED.value():
        return None
    api = EarlyApi()
    api.thread.start()
    return api
