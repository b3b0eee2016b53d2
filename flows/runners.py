"""Where a flow's submitted tasks run: local threads (default) or a Dask cluster through prefect-dask."""

from typing import Literal

RunnerKind = Literal["threads", "dask"]


def with_runner(flow, kind: str, address: str | None = None):
    """Dask: the cluster at `address` (tcp://scheduler:8786), else a LocalCluster of 2 worker processes."""
    if kind != "dask":
        return flow
    # prefect-dask (~1.7 s) only when Dask is asked for
    from prefect_dask import DaskTaskRunner

    runner = (
        DaskTaskRunner(address=address)
        if address
        else DaskTaskRunner(cluster_kwargs={"n_workers": 2, "threads_per_worker": 1, "processes": True})
    )
    return flow.with_options(task_runner=runner)
