"""`make test` runs two pytest processes; the test files that use the machine's PostgreSQL must share one."""

import re

from tests.conftest import ROOT, SHARED_POSTGRESQL

USES_POSTGRESQL = re.compile(r"def test_\w+\([^)]*\bservers\b|pg_isready|postgresql", re.IGNORECASE)


def test_every_test_file_that_uses_postgresql_runs_on_the_shared_process():
    files = sorted((ROOT / "tests" / "integration").glob("test_*.py"))
    using = {str(path.relative_to(ROOT)) for path in files if USES_POSTGRESQL.search(path.read_text())}
    assert using == SHARED_POSTGRESQL
