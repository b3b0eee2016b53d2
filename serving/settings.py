"""The scoring service's settings, one model for `serve-api`'s flags, `create_app`'s keywords and the
$ANOMALY_DISTILL_SERVE settings each worker process reads."""

from pydantic import Field

from anomaly_distill.config import OptionalText, StrictModel


class ServeParameters(StrictModel):
    model_name: str = Field("anomaly-detector", description="Registered model to serve.")
    alias: str = Field("champion", description="Registry alias served; the service follows it when it moves.")
    host: str = Field(
        "127.0.0.1",
        description="Bind address (default: this machine only; any other needs $ANOMALY_DISTILL_API_KEY).",
    )
    port: int = Field(8008, ge=1, le=65535, description="Port.")
    workers: int = Field(2, ge=1, description="Worker processes on the one port.")
    live_store: OptionalText = Field(
        None, description="Live store URL (default: $ANOMALY_DISTILL_LIVE_STORE or ./live-store)."
    )
    poll_seconds: float = Field(30.0, ge=0, description="How often to check whether the alias moved (0: never).")
    max_body_bytes: int = Field(32 << 20, ge=1, description="Larger request bodies get 413 (32 MiB).")
    wal_dir: OptionalText = Field(
        None,
        description="Write-ahead log folder, on local disk (default <live store>/_wal; ./live-wal for a remote store).",
    )
    wal_sync: bool = Field(
        True, description="fsync the write-ahead log before answering (off: a power cut may lose answered rows)."
    )
    seal_seconds: float = Field(60.0, gt=0, description="A log segment is sealed and compacted after this long.")

    def app_settings(self) -> dict:
        """What `create_app` takes: everything but where and how many processes listen."""
        return self.model_dump(exclude={"host", "port", "workers"})
