"""Fault injection for the soak (benchmarks/soak.py): a CLI run started with this folder first on PYTHONPATH
imports it at start-up. SOAK_FAULT=alias_reads_fail_after=N: after its first N reads of a registry alias, every
read fails the way MLflow reports a server that did not answer. Nothing else changes."""

import os

_FAULT = os.environ.get("SOAK_FAULT", "")

if _FAULT.startswith("alias_reads_fail_after="):
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import INTERNAL_ERROR
    from mlflow.tracking.client import MlflowClient

    _allowed, _reads, _read = int(_FAULT.partition("=")[2]), [], MlflowClient.get_model_version_by_alias

    def _failing_read(self, name, alias):
        _reads.append(alias)
        if len(_reads) > _allowed:
            raise MlflowException(
                "API request to /api/2.0/mlflow/registered-models/alias failed with exception ConnectionError "
                "(soak fault: registry unreachable)",
                INTERNAL_ERROR,
            )
        return _read(self, name, alias)

    MlflowClient.get_model_version_by_alias = _failing_read
