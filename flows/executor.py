"""The engine's two seams, backed by Prefect: chunks as mapped task runs on the chunk runner
(threads, Dask or Ray), and every build step as a task run of the flow, so the UI shows them."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.exceptions import CancelledRun
from prefect.futures import PrefectFuture, as_completed
from prefect.tasks import exponential_backoff

from flows.runners import chunk_runner
from synthaix.build.executor import Steps
from synthaix.config import DatasetConfig
from synthaix.errors import ConfigError
from synthaix.generate import Chunk, ChunkResult
from synthaix.stopping import BuildStopped
from tasks.generate import generate_chunk

T = TypeVar("T")


class PrefectChunkExecutor:
    def __init__(self, config: DatasetConfig) -> None:
        self.config = config
        self.runner = chunk_runner(config.runner)
        self._connected = False  # a chunk was submitted: the cluster answered
        prefix = f"{config.name}-" if config._in_tables else ""  # a table's, in a dataset
        self.task = generate_chunk.with_options(
            task_run_name=prefix + "chunk-{chunk.index:06d}",
            retries=config.runner.retries,
            retry_delay_seconds=exponential_backoff(backoff_factor=config.runner.retry_backoff),
        )

    def __enter__(self) -> PrefectChunkExecutor:
        with self._cluster():
            self.runner.__enter__()
        return self

    @contextlib.contextmanager
    def _cluster(self) -> Iterator[None]:
        """A cluster at runner.address that does not answer (Dask connects at the first
        chunk; its timeout, or Ray's ConnectionError): one line, not their traceback. Only
        until a chunk was submitted: a later OSError (a worker lost) is not about the address."""
        runner = self.config.runner
        try:
            yield
        except OSError as exc:
            if not runner.address or self._connected:
                raise
            raise ConfigError(
                f"cannot reach the {runner.type} cluster at runner.address {runner.address}: {exc}",
                hint="check the address and that the scheduler runs, or leave runner.address "
                "empty for a local cluster",
            ) from None

    def __exit__(self, *exc: Any) -> None:
        self.runner.__exit__(*exc)

    def submit(self, chunk: Chunk) -> PrefectFuture[ChunkResult]:
        with self._cluster(), self._detached():
            future = self.runner.submit(self.task, {"config": self.config, "chunk": chunk})
        self._connected = True
        return future

    @contextlib.contextmanager
    def _detached(self) -> Iterator[None]:
        """A table of a multi-table dataset submits its chunks from inside its `build-table`
        task run. Dask and Ray pickle the submitting task run's context along (its task and
        parameters, which hold the build): that failed on every multi-table config. There the
        chunk task runs are submitted as the flow run's own; threads keep them nested."""
        if self.config.runner.type == "thread":
            yield
            return
        from prefect.context import TaskRunContext

        token = TaskRunContext.__var__.set(None)  # type: ignore[arg-type]
        try:
            yield
        finally:
            TaskRunContext.__var__.reset(token)

    def first_done(self, handles: list[PrefectFuture[ChunkResult]]) -> PrefectFuture[ChunkResult]:
        return next(as_completed(handles))

    def result(self, handle: PrefectFuture[ChunkResult]) -> ChunkResult:
        try:
            return handle.result()
        except CancelledRun as cancelled:  # cancelled by Prefect: read as the build stopping
            raise BuildStopped(str(cancelled)) from None


class _Call:
    """A step's function and arguments, handed over by reference: Prefect sees one opaque
    parameter instead of tables and writers it would inspect (~140 ms a call was measured)."""

    __slots__ = ("args", "fn")

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.fn, self.args = fn, args


@task(name="step", cache_policy=NO_CACHE)
def _step(call: _Call) -> Any:
    return call.fn(*call.args)


class TaskSteps(Steps):
    """Task-run names are unique in a flow run: `write-part-000003`, or `orders-write-part-000003`
    in a multi-table dataset, numbered from 0 like the chunks."""

    def __init__(self, prefix: str = "") -> None:
        self.prefix = prefix

    def run(self, name: str, fn: Callable[..., T], *args: Any, number: int | None = None) -> T:
        run_name = self.prefix + (name if number is None else f"{name}-{number:06d}")
        return _step.with_options(name=name, task_run_name=run_name)(_Call(fn, args))

    def within(self, table: str) -> TaskSteps:
        return TaskSteps(f"{table}-")
