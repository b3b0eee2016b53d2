"""A full disk is an error, not a loss, for real: the service on a small tmpfs answers 503 with the reason and
keeps exactly what it acknowledged; batch scoring exits non-zero and leaves no file and no rows."""

import time

import httpx
import pytest

from flows.cli import main
from serving.app import create_app
from stores.live_store import ROW_ID, LiveStore
from tests.integration.conftest import LIVE_MODEL as NAME
from tests.integration.conftest import served_in_thread
from tests.small_disk import FULL_ERRORS, SmallDisk


@pytest.fixture
def disk(workspace):
    small = SmallDisk(workspace / "disk")
    yield small
    small.close()


@pytest.fixture
def service_on(disk, champion):
    app = create_app(NAME, live_store=str(disk.path / "store"), poll_seconds=0)
    with served_in_thread(app) as client:
        yield client, champion.features.to_dict(orient="records")


def test_the_service_answers_503_on_a_full_disk_and_keeps_exactly_what_it_acknowledged(disk, service_on):
    client, records = service_on
    acknowledged = []

    def score(rows: list) -> httpx.Response:
        answer = client.post("/score", json=rows)
        if answer.status_code == 200:
            acknowledged.extend(answer.json()["row_ids"])
        return answer

    assert score(records[:5]).status_code == 200
    disk.fill()
    # Each request's log line needs more than the room left in the log's last page: small (scored on the event
    # loop), small again after a pause (a lone sender's line is written there too), large (scored on a thread)
    for rows, pause in ((records[:50], 0), (records[:50], 0.2), (records[:60], 0), (records[:2000], 0)):
        time.sleep(pause)
        refused = score(rows)
        assert refused.status_code == 503 and refused.headers["retry-after"] == "30"
        detail = refused.json()["detail"]
        assert "the write-ahead log at" in detail and "nothing from this request was stored" in detail
        assert any(reason in detail for reason in FULL_ERRORS), detail
    disk.free()
    assert score(records[:7]).status_code == 200
    stored = LiveStore(str(disk.path / "store")).read()
    assert sorted(stored[ROW_ID]) == sorted(acknowledged) and len(acknowledged) == 12


def test_batch_scoring_on_a_full_disk_exits_non_zero_and_leaves_nothing(workspace, disk, champion, capsys):
    champion.features.to_csv(workspace / "live.csv", index=False)
    disk.fill(leave=16 << 10)

    def score(store, out) -> int:
        args = ["score", "--data", str(workspace / "live.csv"), "--model-name", NAME, "--live-store", str(store)]
        return main([*args, "--out", str(out), "--chunk-rows", "200"])

    for store, out in (  # the live store, then the output file on the full disk
        (disk.path / "store", workspace / "scored.csv"),
        (workspace / "store", disk.path / "scored.parquet"),
        (workspace / "store", disk.path / "scored.csv"),
    ):
        assert score(store, out) == 2
        error = capsys.readouterr().err
        assert "could not be written" in error and "nothing of this job was kept" in error
        assert "Traceback" not in error and any(reason in error for reason in FULL_ERRORS), error
        assert not out.exists() and LiveStore(str(store)).read().empty
        assert [p.name for p in disk.path.rglob("*") if p.is_file() and p != disk.filler] == []
    assert not (workspace / "scored.csv").exists()
