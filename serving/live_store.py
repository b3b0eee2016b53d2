"""Append-only store of scored rows: Parquet files partitioned by date, on any fsspec URL (local path, s3://…).

Every append writes a new uniquely named file under a temporary name and renames it into place, so readers
never see half a file, a killed writer leaves only an ignored temp file, and concurrent writers cannot collide.
"""

import os
import uuid
from datetime import datetime, timezone

import fsspec
import pandas as pd

TIMESTAMP, ROW_ID = "scored_at", "row_id"  # scored_at: not "timestamp", which series data often uses
LIVE_STORE_ENV = "ANOMALY_DISTILL_LIVE_STORE"


def live_store_url(url: str | None = None) -> str:
    return url or os.environ.get(LIVE_STORE_ENV) or "live-store"


class LiveStore:
    def __init__(self, url: str):
        self.url = url
        self.fs, self.root = fsspec.core.url_to_fs(url)

    def append(self, frame: pd.DataFrame, when: datetime | None = None) -> pd.DataFrame:
        """Stamps the rows (time, and a new id unless they have one) and writes them atomically."""
        when = when or datetime.now(timezone.utc)
        stamped = frame.reset_index(drop=True).assign(**{TIMESTAMP: pd.Timestamp(when)})
        if ROW_ID not in stamped:
            stamped[ROW_ID] = [uuid.uuid4().hex for _ in range(len(frame))]
        folder = f"{self.root}/date={when.date().isoformat()}"
        self.fs.makedirs(folder, exist_ok=True)
        name = f"part-{when.strftime('%H%M%S%f')}-{uuid.uuid4().hex}.parquet"
        temporary = f"{folder}/.{name}.tmp"
        with self.fs.open(temporary, "wb") as handle:
            stamped.to_parquet(handle, index=False)
        self.fs.mv(temporary, f"{folder}/{name}")
        return stamped

    def read(self, since: datetime | None = None, until: datetime | None = None) -> pd.DataFrame:
        files = sorted(f for f in self.fs.glob(f"{self.root}/date=*/part-*.parquet") if _in_window(f, since, until))
        if not files:
            return pd.DataFrame()
        frames = []
        for path in files:
            with self.fs.open(path, "rb") as handle:
                frames.append(pd.read_parquet(handle))
        rows = pd.concat(frames, ignore_index=True)
        if since is not None:
            rows = rows[rows[TIMESTAMP] >= pd.Timestamp(since)]
        if until is not None:
            rows = rows[rows[TIMESTAMP] < pd.Timestamp(until)]
        return rows.reset_index(drop=True)


def _in_window(path: str, since: datetime | None, until: datetime | None) -> bool:
    day = path.rsplit("date=", 1)[1].split("/", 1)[0]
    return (since is None or day >= since.date().isoformat()) and (until is None or day <= until.date().isoformat())


def scored_rows(features: pd.DataFrame, scored: pd.DataFrame, model_name: str, version: str) -> pd.DataFrame:
    """Input rows beside their scores and the version that scored them; a series model scores only the points
    with a full window behind them (the last len(scored) rows)."""
    features = features.iloc[len(features) - len(scored) :].reset_index(drop=True)
    scored = scored.drop(columns=[c for c in scored.columns if c in features.columns])
    rows = pd.concat([features, scored.reset_index(drop=True)], axis=1)
    return rows.assign(model_name=model_name, model_version=version)
