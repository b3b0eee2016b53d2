"""`prefect.serve` that outlives a Prefect API outage (a server restart) of up to a given number of seconds.

Why a loop around `serve` rather than a more tolerant runner: Prefect's runner polls in `critical_service_loop`
with a hard-coded `consecutive=3, backoff=1` (no setting changes it); the only knob, the poll interval, would delay
every run as much. Once that loop gives up the runner pauses the deployments (or fails trying, the API being down)
and `serve` raises. Serving again re-applies the deployments, and an apply sends `paused=False`: their schedules
are active again. Runs that were due during the outage are picked up then.
"""

import signal
import sys
import time

import httpx
import websockets.exceptions
from prefect import serve
from prefect.settings import get_current_settings


def serve_through_outages(deployments: list, outage_seconds: float) -> None:
    """Serves until Ctrl-C / SIGTERM. An unreachable API is waited for up to `outage_seconds`, then served again;
    one that stays away longer raises `httpx.ConnectError` naming it (the CLI's exit 3)."""
    url = get_current_settings().api.url
    if url and not _healthy(url):  # never up: no outage to wait out, fail at once as before
        raise httpx.ConnectError(f"no answer from {url}/health")
    try:
        while True:
            try:
                serve(*deployments)
                return  # the runner stopped on Ctrl-C / SIGTERM
            except Exception as error:
                if not url or not _is_outage(error):
                    raise
            _print(f"lost the Prefect API at {url}; waiting up to {outage_seconds:.0f} s for it to come back")
            _wait_until_healthy(url, outage_seconds)
            _print(f"the Prefect API at {url} is back; serving the deployments again")
    except KeyboardInterrupt:
        _print("stopped")


_CONNECTION_LOST = (
    httpx.TransportError,
    ConnectionError,
    websockets.exceptions.ConnectionClosed,
    websockets.exceptions.InvalidHandshake,
)


def _is_outage(error: BaseException | None) -> bool:
    """The runner's poll loop gave up ("Service exceeded error threshold.") or a call found no server. A server
    stopping while the runner starts closes its event stream (1012, service restart), which Prefect reports as
    "Unable to authenticate to the event stream"; the closed connection underneath is what counts."""
    while error is not None:
        if isinstance(error, _CONNECTION_LOST) or "exceeded error threshold" in str(error):
            return True
        if isinstance(error, httpx.HTTPStatusError) and error.response.status_code >= 500:
            return True
        error = error.__cause__ or error.__context__
    return False


def _wait_until_healthy(url: str, limit: float) -> None:
    # The runner's SIGTERM handler stays installed after `serve` returns and may point at its closed loop.
    signal.signal(signal.SIGTERM, _interrupt)
    deadline = time.monotonic() + limit
    while not _healthy(url):
        if time.monotonic() > deadline:
            raise httpx.ConnectError(f"no answer from {url}/health for {limit:.0f} s")
        time.sleep(2)


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=5).status_code == 200  # no login needed for the health check
    except httpx.HTTPError:
        return False


def _interrupt(*_) -> None:
    raise KeyboardInterrupt


def _print(message: str) -> None:
    print(f"deploy: {message}", file=sys.stderr, flush=True)
