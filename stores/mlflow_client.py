"""The MLflow client: where the tracking store is, and reading a run's artifacts."""

import json
import os
import tempfile
from pathlib import Path

import mlflow
import pandas as pd
from mlflow.tracking import MlflowClient

DEFAULT_DB = "mlflow.db"


def tracking_uri() -> str:
    """MLFLOW_TRACKING_URI if set (a server in production), else a sqlite file in the working directory."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path.cwd() / DEFAULT_DB}"


def client() -> MlflowClient:
    uri = tracking_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return MlflowClient(uri, uri)


def _read_artifact(run_id: str, artifact: str, read):
    with tempfile.TemporaryDirectory() as tmp:
        return read(
            mlflow.artifacts.download_artifacts(
                run_id=run_id, artifact_path=artifact, dst_path=tmp, tracking_uri=tracking_uri()
            )
        )


def load_json_artifact(run_id: str, artifact: str):
    return _read_artifact(run_id, artifact, lambda path: json.loads(Path(path).read_text()))


def load_parquet_artifact(run_id: str, artifact: str) -> pd.DataFrame:
    return _read_artifact(run_id, artifact, pd.read_parquet)
