"""`anomaly-distill daemon`: a resident process that runs `anomaly-distill train` against running servers.

A one-off `train` spends ~5 s importing torch, scikit-learn, Great Expectations, Prefect and MLflow before its flow
starts. The daemon imports them once. `train`, with $ANOMALY_DISTILL_DAEMON naming the daemon's socket, sends its
arguments there and prints what the run prints; its exit status is the run's. The daemon runs only what would
have run in the command itself: the same checkout with its code unchanged since the daemon started, the same
PREFECT_*/MLFLOW_*/ANOMALY_DISTILL_* settings, in the command's working directory. Otherwise it declines, says why,
and the command runs in its own process as before. One run at a time: a second command waits for the first.
The socket is its owner's alone (mode 0600). A command interrupted by its user leaves the run going to its end.
"""

import contextlib
import io
import json
import logging
import os
import socket
import socketserver
import sys
import traceback
from collections.abc import Callable
from pathlib import Path

DAEMON_ENV = "ANOMALY_DISTILL_DAEMON"
PREFECT_LOGGERS = ("", "prefect", "prefect.flow_runs", "prefect.task_runs")  # the loggers Prefect gives handlers
SETTINGS_PREFIXES = ("PREFECT_", "MLFLOW_", "ANOMALY_DISTILL_", "AWS_", "DASK_", "OMP_")
ROOT = Path(__file__).resolve().parents[1]
OUT, ERR, EXIT, DECLINED = b"o", b"e", b"x", b"n"


def run_settings(environ) -> dict[str, str]:
    """The environment a run depends on (servers, credentials, stores, PREFECT_HOME): must match the daemon's."""
    return {k: v for k, v in environ.items() if k.startswith(SETTINGS_PREFIXES) and k != DAEMON_ENV}


def send_frame(sock: socket.socket, kind: bytes, payload: bytes) -> None:
    sock.sendall(kind + len(payload).to_bytes(4, "big") + payload)


def read_frame(stream) -> tuple[bytes, bytes] | None:
    head = stream.read(5)
    if len(head) < 5:
        return None
    payload = stream.read(int.from_bytes(head[1:], "big"))
    return head[:1], payload


class Channel(io.TextIOBase):
    """stdout or stderr of one run, sent to its command. A command that went away stops the output, not the run."""

    def __init__(self, sock: socket.socket, kind: bytes):
        self.sock, self.kind, self.open = sock, kind, True

    def write(self, text: str) -> int:
        if self.open and text:
            try:
                send_frame(self.sock, self.kind, text.encode())
            except OSError:
                self.open = False
        return len(text)

    def isatty(self) -> bool:
        return False


def forward_train(argv: list[str]) -> int | None:
    """Runs `anomaly-distill <argv>` in the daemon named by $ANOMALY_DISTILL_DAEMON: the run's exit status, or
    None (after a note on stderr) when there is no daemon or it declined — the command then runs here."""
    path = os.environ.get(DAEMON_ENV)
    if not path:
        return None
    request = {"argv": argv, "cwd": os.getcwd(), "root": str(ROOT), "settings": run_settings(os.environ)}
    try:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(path)
    except OSError as error:
        print(f"note: no daemon at {path} ({type(error).__name__}); running here", file=sys.stderr)
        return None
    with sock, sock.makefile("rb") as replies:
        sock.sendall(json.dumps(request).encode() + b"\n")
        try:
            return _relay(replies, path)
        except KeyboardInterrupt:
            print(f"\ninterrupted: the run goes on in the daemon at {path} to its end", file=sys.stderr)
            return 130


def _relay(replies, path: str) -> int | None:
    while (frame := read_frame(replies)) is not None:
        kind, payload = frame
        if kind == DECLINED:
            print(f"note: the daemon at {path} declined ({payload.decode()}); running here", file=sys.stderr)
            return None
        if kind == EXIT:
            return int(payload)
        stream = sys.stdout if kind == OUT else sys.stderr
        stream.write(payload.decode())
        stream.flush()
    print(
        f"error: the daemon at {path} stopped during the run. Re-run the same command: cached steps are reused and "
        "no duplicate model version is made.",
        file=sys.stderr,
    )
    return 3


class Daemon(socketserver.UnixStreamServer):
    """Serves one command at a time, in the order they connect."""

    def __init__(self, path: str, run_cli: Callable[[list[str]], int]):
        from tasks.registration import code_digest

        self.settings, self.code = run_settings(os.environ), code_digest()
        self.run_cli = run_cli  # the CLI's entry point, handed in by `anomaly-distill daemon` (it imports this module)
        super().__init__(path, RunHandler)
        os.chmod(path, 0o600)

    def decline_reason(self, request: dict) -> str | None:
        from tasks.registration import code_digest

        if request.get("root") != str(ROOT):
            return f"it runs the checkout at {ROOT}, not {request.get('root')}"
        if request.get("settings") != self.settings:
            differ = sorted(set(request.get("settings", {}).items()) ^ set(self.settings.items()))
            return f"settings differ: {sorted({name for name, _ in differ})}"
        if code_digest() != self.code:
            return "the code changed since it started: restart it"
        if not (isinstance(request.get("argv"), list) and request["argv"][:1] == ["train"]):
            return "it runs `train` only"
        return None


class RunHandler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        self.request.settimeout(30)  # a command sends its request at once; anything else must not hold the daemon
        try:
            request = json.loads(self.rfile.readline())
        except (ValueError, OSError):
            return
        self.request.settimeout(None)
        reason = self.server.decline_reason(request)
        if reason:
            send_frame(self.request, DECLINED, reason.encode())
            return
        err = Channel(self.request, ERR)
        err.write(f"(run by the anomaly-distill daemon, pid {os.getpid()})\n")
        code = run_command(self.server.run_cli, request["argv"], request["cwd"], Channel(self.request, OUT), err)
        with contextlib.suppress(OSError):
            send_frame(self.request, EXIT, str(code).encode())


def run_command(main: Callable[[list[str]], int], argv: list[str], cwd: str, out: Channel, err: Channel) -> int:
    with contextlib.chdir(cwd), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        console_logging_to(err)
        try:
            return main(argv)
        except SystemExit as stop:
            return stop.code if isinstance(stop.code, int) else int(stop.code is not None)
        except Exception:
            traceback.print_exc()
            return 1
        finally:
            console_logging_to(sys.__stderr__)


def console_logging_to(stream) -> None:
    """Prefect's console handler writes to the stderr of the moment logging was set up: point it at this run's."""
    for name in PREFECT_LOGGERS:
        for handler in logging.getLogger(name).handlers:
            if hasattr(handler, "console"):
                handler.console.file = stream
            elif isinstance(handler, logging.StreamHandler) and handler.stream in (sys.stderr, sys.__stderr__):
                handler.setStream(stream)


def serve(path: str, run_cli: Callable[[list[str]], int]) -> int:
    """`anomaly-distill daemon --socket PATH`: imports what a run needs, then serves commands until stopped."""
    if not os.environ.get("PREFECT_API_URL"):
        print("error: the daemon serves runs against running servers: set PREFECT_API_URL", file=sys.stderr)
        return 2
    os.environ.pop(DAEMON_ENV, None)  # its own runs run here
    if os.path.exists(path):
        with socket.socket(socket.AF_UNIX) as probe, contextlib.suppress(OSError):
            probe.connect(path)
            print(f"error: a daemon already listens at {path}", file=sys.stderr)
            return 2
        os.unlink(path)  # left by a daemon that was killed
    import flows.training  # noqa: F401  (the imports a run would otherwise pay for)
    from tasks.validation import warm_up

    warm_up()
    with Daemon(path, run_cli) as daemon:
        print(f"anomaly-distill daemon: serving `train` at {path} (pid {os.getpid()})", file=sys.stderr, flush=True)
        try:
            daemon.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            os.unlink(path)
    return 0
