"""The task runner chunk tasks run on: local threads (default), a Dask or a Ray cluster."""

from __future__ import annotations

from typing import Any

from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from synthaix.config import RunnerConfig
from synthaix.errors import ConfigError


def chunk_runner(runner: RunnerConfig) -> TaskRunner[Any]:
    if runner.type == "dask":
        try:
            from prefect_dask import DaskTaskRunner
        except ImportError:
            raise _missing("dask") from None
        if runner.address:
            return DaskTaskRunner(address=runner.address)
        # A local cluster of worker processes, without a dashboard. Its scheduler still serves
        # HTTP (health, metrics), on 8787 unless told: a second build at once warned that the
        # port was taken. Any free local port instead.
        cluster = {"n_workers": runner.workers, "threads_per_worker": 1, "processes": True}
        http = {"dashboard_address": "127.0.0.1:0"}
        return DaskTaskRunner(
            cluster_kwargs={**cluster, "dashboard_address": None, "scheduler_kwargs": http}
        )
    if runner.type == "ray":
        try:
            from prefect_ray import RayTaskRunner
        except ImportError:
            raise _missing("ray") from None
        options = {"num_cpus": runner.workers} if not runner.address else {}
        return RayTaskRunner(address=runner.address, init_kwargs=options)
    return ThreadPoolTaskRunner(max_workers=runner.workers)


def _missing(kind: str) -> ConfigError:
    return ConfigError(
        f"runner.type '{kind}' needs the optional package prefect-{kind}",
        hint=f"pip install 'synthaix[{kind}]', or use runner.type: thread",
    )
