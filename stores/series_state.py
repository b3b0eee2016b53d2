"""The live state of online series models: one row per (model, version, series), in a SQLite file on the
service's disk beside its write-ahead log.

A request for a series reads its state, scores its points from it and writes the state after them in one
`BEGIN IMMEDIATE` transaction, so two workers (processes) never score the same series from diverging states:
the second waits for the first and goes on from its state. WAL journal with synchronous=NORMAL: a committed
state survives the process being killed (SIGKILL); only a power loss may take the last commits back.
A version's states are its own: a new champion starts from its warm state, and an old version's rows stay for a
rollback to go on from.

The state moves only with the request's rows: the request's log line is written inside the transaction and cut off
again if the commit fails, so a request refused for a full disk leaves both the log and the state as they were."""

import sqlite3
import threading
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import numpy as np
import orjson

from anomaly_distill.data import DataError
from stores.storage import storage_error

SCHEMA = """CREATE TABLE IF NOT EXISTS series_state (
    model TEXT NOT NULL, version TEXT NOT NULL, series TEXT NOT NULL,
    last_timestamp TEXT NOT NULL, points INTEGER NOT NULL, state BLOB NOT NULL,
    PRIMARY KEY (model, version, series))"""


class SeriesStateStore:
    """One connection per process, used under a lock; the detectors of the last request of each series stay in
    memory and are reused while the stored point count says no other process has moved the series since."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute(SCHEMA)
        self.lock = threading.Lock()
        self.cache: dict[tuple, tuple[int, list]] = {}  # (model, version, series) -> (points, detectors)

    def advance(
        self,
        model,
        name: str,
        version: str,
        series: str,
        stamps: list[datetime],
        values: np.ndarray,
        first: str,
        store: Callable[[np.ndarray, np.ndarray, Callable[[], None]], object] | None = None,
    ):
        """Scores `values` (checked points of one series, oldest first, at the UTC times `stamps`; `first` is the
        first timestamp as sent) from the series' state (the version's warm state for a new series) and stores the
        state after them. Points at or before the series' last scored timestamp are refused: a point is learnt
        from once. `store(alarms, calibrated scores, commit)` keeps the scored points and calls `commit` (which
        stores the state) before it returns; what it returns is returned (by default: the state alone is stored, and
        (alarms, calibrated scores) returned). If anything fails, the state stays where it was."""
        key = (name, version, series)
        with self.lock:
            try:
                self.db.execute("BEGIN IMMEDIATE")
                alarms, calibrated = self._advance_locked(model, key, stamps, values, first)
                return (store or _state_only)(alarms, calibrated, self._commit)
            except BaseException as error:
                self.cache.pop(key, None)  # its detectors may have moved past what is stored
                self._roll_back()
                if isinstance(error, sqlite3.OperationalError):
                    raise storage_error(
                        f"the series state at {self.path}", error, "nothing from this request was stored"
                    ) from error
                raise

    def _commit(self) -> None:
        self.db.execute("COMMIT")

    def _roll_back(self) -> None:
        if self.db.in_transaction:  # SQLite rolls some failures (a full disk) back itself
            try:
                self.db.execute("ROLLBACK")
            except sqlite3.OperationalError:
                pass

    def _advance_locked(self, model, key: tuple, stamps: list[datetime], values: np.ndarray, first: str):
        where = "WHERE model=? AND version=? AND series=?"
        row = self.db.execute(f"SELECT last_timestamp, points FROM series_state {where}", key).fetchone()
        if row is not None and stamps[0] <= datetime.fromisoformat(row[0]):
            name, version, series = key
            raise DataError(
                f"series {series!r} of {name} v{version} was scored up to {row[0]}; record 0 ({first}) is not "
                "after it (send each point once, in order)"
            )
        points = 0 if row is None else row[1]
        cached = self.cache.get(key)
        if cached is not None and cached[0] == points:
            detectors = cached[1]
        elif row is None:
            detectors = model.detectors()
        else:
            stored = self.db.execute(f"SELECT state FROM series_state {where}", key).fetchone()[0]
            detectors = model.detectors(orjson.loads(stored))
        alarms, calibrated = model.run(detectors, values)
        state = orjson.dumps([d.state() for d in detectors], option=orjson.OPT_SERIALIZE_NUMPY)
        points += len(values)
        self.db.execute(
            "INSERT OR REPLACE INTO series_state VALUES (?, ?, ?, ?, ?, ?)",
            (*key, stamps[-1].isoformat(), points, state),
        )
        self.cache[key] = (points, detectors)
        return alarms, calibrated

    def summary(self, name: str) -> list[dict]:
        with self.lock:
            rows = self.db.execute(
                "SELECT version, series, last_timestamp, points FROM series_state WHERE model=? "
                "ORDER BY version, series",
                (name,),
            ).fetchall()
        return [dict(zip(("version", "series", "last_timestamp", "points"), r)) for r in rows]


def _state_only(alarms: np.ndarray, calibrated: np.ndarray, commit: Callable[[], None]) -> tuple:
    commit()
    return alarms, calibrated
