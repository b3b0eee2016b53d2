"""Shared stores, below both `tasks/` (Prefect) and `serving/` (FastAPI): the MLflow client and model registry, the
live store of scored rows and its write-ahead log, table files, and the online series state. Nothing here imports
`tasks/`, `serving/` or `flows/` (import-linter checks it in `make lint`)."""
