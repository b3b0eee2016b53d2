"""What keeps `anomaly-distill` quick to start and to exit (issue 15's overhead work)."""

import subprocess
import sys

import pytest


def python(code: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120)


def test_the_cli_module_imports_no_heavy_library():
    """The embedded Prefect API starts as soon as the command begins only if the CLI module itself is light."""
    heavy = ["torch", "pandas", "sklearn", "mlflow", "prefect", "great_expectations"]
    done = python(f"import sys, flows.cli; print([m for m in {heavy!r} if m in sys.modules])")
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stderr


@pytest.mark.parametrize("args, code", [(["--help"], 0), (["--no-such-option"], 2), (["score"], 2)])
def test_the_console_entry_keeps_the_exit_status(args, code):
    done = python("import sys; from flows.cli import console; sys.argv[1:] = sys.argv[1:]; console()", *args)
    assert done.returncode == code, done.stderr


def test_an_uncaught_error_still_exits_1_with_its_traceback():
    done = python("import flows.cli; flows.cli.main = lambda: 1 / 0; flows.cli.console()")
    assert done.returncode == 1 and "ZeroDivisionError" in done.stderr


def test_no_early_api_against_a_configured_server():
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.embedded_api import start_embedded_api

    with temporary_settings({PREFECT_API_URL: "http://127.0.0.1:9/api"}):  # the environment is read at import
        assert start_embedded_api() is None
