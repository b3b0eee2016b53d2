import httpx
import pytest
from websockets.exceptions import ConnectionClosedError
from websockets.frames import Close

from flows.resilient_serve import _is_outage


def _chained(outer: Exception, cause: Exception) -> Exception:
    outer.__cause__ = cause
    return outer


def _runner_start_during_a_server_stop() -> Exception:
    """The chain Prefect's runner raised when the server stopped during its event-stream handshake (seen in CI)."""
    closed = ConnectionClosedError(Close(1012, "service restart"), Close(1012, "service restart"), True)
    closed.__cause__ = ConnectionResetError(104, "Connection reset by peer")
    handshake = _chained(Exception("Unable to authenticate to the event stream."), closed)
    return _chained(RuntimeError("Runner failed to start: event_emitter"), handshake)


@pytest.mark.parametrize(
    "error",
    [
        _runner_start_during_a_server_stop(),
        _chained(RuntimeError("Service exceeded error threshold."), ValueError()),
        _chained(RuntimeError("poll failed"), httpx.ConnectError("refused")),
    ],
    ids=["event-stream-closed-1012", "poll-loop-gave-up", "connect-refused"],
)
def test_a_server_that_went_away_is_an_outage_to_wait_out(error):
    assert _is_outage(error)


def test_a_real_error_is_not_mistaken_for_an_outage():
    request = httpx.Request("POST", "http://api/deployments/")
    refused = httpx.HTTPStatusError("422", request=request, response=httpx.Response(422, request=request))
    assert not _is_outage(_chained(RuntimeError("apply failed"), refused))
    assert not _is_outage(ValueError("a bad cron string"))
