"""The streaming helpers of batch scoring (tasks/scoring.py)."""

import threading
import time

import pytest

from tasks.scoring import read_ahead


def test_read_ahead_keeps_order_and_raises_where_the_error_was():
    def items():
        yield from range(5)
        raise ValueError("row 5 is bad")

    seen = []
    with pytest.raises(ValueError, match="row 5 is bad"):
        for item in read_ahead(items(), depth=2):
            seen.append(item)
    assert seen == [0, 1, 2, 3, 4]


def test_a_consumer_that_stops_early_leaves_no_thread_behind():
    produced = []

    def items():
        for item in range(1000):
            produced.append(item)
            yield item

    stream = read_ahead(items(), depth=1)
    assert next(stream) == 0
    stream.close()  # as when the scoring loop raises
    deadline = time.monotonic() + 5
    while any(t.name == "read-ahead" for t in threading.enumerate()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(t.name == "read-ahead" for t in threading.enumerate())
    assert len(produced) < 10  # it stopped reading, too
