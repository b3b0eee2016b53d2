"""Training stages 2-4: the teacher (cached), its soft labels, and the distilled student, each logged."""

import pickle
import tempfile
from pathlib import Path

import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from anomaly_distill.config import EngineConfig
from anomaly_distill.data import (
    Table,
    frame_digest,
)
from anomaly_distill.tabular import pipeline
from anomaly_distill.tabular.segments import Segmented, segment_tables
from tasks import tracking
from tasks.common import IO_RETRIES, digest_of


def _teacher_key(config: EngineConfig, digest: str) -> str:
    return digest_of(
        "teacher",
        digest,
        config.seed,
        config.test_fraction,
        config.contamination,
        config.student.squash,
        config.teacher.model_dump_json(),
    )


@task(cache_key_fn=lambda ctx, p: _teacher_key(p["config"], p["digest"]), persist_result=True)
def train_teacher(train: Table, config: EngineConfig, digest: str) -> pipeline.TrainedTeacher:
    return pipeline.train_teacher(train, config, cluster_map())


def cluster_map():
    """On a Dask worker (flow run with the Dask task runner), fan the ensemble members out over the cluster."""
    try:
        # Dask only on a Dask cluster
        from distributed import get_worker, worker_client

        get_worker()
    except (ImportError, ValueError):
        return map

    def dask_map(fn, items):
        with worker_client() as dask:
            return dask.gather(dask.map(fn, list(items), pure=False))

    return dask_map


@task(cache_key_fn=lambda ctx, p: digest_of("segment", _teacher_key(p["config"], p["digest"])), persist_result=True)
def train_segment(train: Table, config: EngineConfig, digest: str) -> tuple[pipeline.TrainedTeacher, pipeline.Student]:
    return pipeline.train_segment(train, config, cluster_map())


def train_per_segment(train: Table, config: EngineConfig, min_rows: int) -> tuple[Segmented, Segmented]:
    """One teacher + student per segment, submitted together: they run in parallel on the task runner (Dask)."""
    tables = segment_tables(train, min_rows)
    futures = {
        name: train_segment.submit(table, config, frame_digest(table.scoring_frame(), table.labels))
        for name, table in tables.items()
    }
    results = {name: future.result() for name, future in futures.items()}
    column = train.segments.name
    return (
        Segmented(column, {name: pair[0] for name, pair in results.items()}),
        Segmented(column, {name: pair[1] for name, pair in results.items()}),
    )


@task(
    cache_key_fn=lambda ctx, p: digest_of(
        _teacher_key(p["config"], p["digest"]), p["config"].distill.model_dump_json()
    ),
    persist_result=True,
)
def generate_soft_labels(
    trained: pipeline.TrainedTeacher, train: Table, config: EngineConfig, digest: str
) -> pd.DataFrame:
    return pipeline.generate_soft_labels(trained, train, config)


@task(cache_policy=NO_CACHE, **IO_RETRIES)
def log_teacher(run_id: str, trained: pipeline.TrainedTeacher, config: EngineConfig, cached: bool) -> None:
    size = len(pickle.dumps(trained))
    tracking.log_params(run_id, {"teacher": config.teacher.model_dump(), "seed": config.seed})
    tracking.log_metrics(run_id, {"params": trained.teacher.n_params, "size_bytes": size})
    tracking.set_tags(run_id, {"from_cache": cached})
    summary = {
        "kind": config.teacher.kind,
        "class": type(trained.teacher).__name__,
        "parameters": trained.teacher.n_params,
        "pickled_bytes": size,
        "threshold": trained.threshold,
        "from_cache": cached,
        "settings": config.teacher.model_dump(),
    }
    tracking.log_json(run_id, summary, "teacher.json")


@task(cache_policy=NO_CACHE, **IO_RETRIES)
def log_soft_labels(run_id: str, soft_labels: pd.DataFrame) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "soft_labels.parquet"
        soft_labels.to_parquet(path)
        tracking.log_file(run_id, path)


@task(cache_policy=NO_CACHE)
def distill_student(
    soft_labels: pd.DataFrame, trained: pipeline.TrainedTeacher, train: Table, config: EngineConfig
) -> pipeline.Student:
    return pipeline.distill_student(soft_labels, trained, train, config)


@task(cache_policy=NO_CACHE, **IO_RETRIES)
def log_student(run_id: str, student: pipeline.Student, config: EngineConfig) -> None:
    tracking.log_params(
        run_id,
        {
            "student": config.student.model_dump(),
            "distill": config.distill.model_dump(),
            "contamination": config.contamination,
            "seed": config.seed,
        },
    )
    tracking.log_history(run_id, student.history)
    tracking.log_metrics(run_id, {"threshold": student.threshold, "epochs_run": len(student.history)})
    before = getattr(student, "compressed_from", None)
    if before:
        tracking.log_metrics(run_id, {f"uncompressed_{key}": value for key, value in before.items()})
