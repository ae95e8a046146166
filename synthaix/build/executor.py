"""How a build runs its chunks and its steps: the two seams between the engine and Prefect.

- A ChunkExecutor generates chunks and hands back results in completion order. ThreadExecutor
  does it with local threads; `flows/` submits Prefect tasks (thread, Dask or Ray runners).
- Steps runs the build's own steps (open the dedupe table, admit a batch, write a part,
  publish): directly here; as task runs in `flows/`, so the Prefect UI shows each one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any, Protocol, TypeVar

from synthaix.columns.llm import LlmColumn
from synthaix.config import DatasetConfig
from synthaix.dedupe.keys import key_columns
from synthaix.generate import Chunk, ChunkResult, LlmFill, generate_chunk

T = TypeVar("T")


class ChunkExecutor(Protocol):
    def __enter__(self) -> ChunkExecutor: ...
    def __exit__(self, *exc: object) -> None: ...
    def submit(self, chunk: Chunk) -> Any:
        """Start generating `chunk`; returns a handle for `first_done` and `result`."""

    def first_done(self, handles: list[Any]) -> Any: ...
    def result(self, handle: Any) -> ChunkResult: ...


class ThreadExecutor:
    """Chunks on `runner.workers` local threads, with one LLM client for the whole build."""

    def __init__(
        self, config: DatasetConfig, llm: bool = True, fill: LlmFill | None = None
    ) -> None:
        """`llm=False`: leave llm columns empty (a preview with no provider); `fill`: fill
        them in those rows only (a multi-table preview)."""
        self.config = config
        self.fill = fill
        self.keys = key_columns(config)
        self.client = None
        if llm and any(isinstance(c, LlmColumn) for c in config.columns):
            from synthaix.llm.client import LlmClient

            self.client = LlmClient(config.provider)
        self._pool: ThreadPoolExecutor | None = None

    def __enter__(self) -> ThreadExecutor:
        self._pool = ThreadPoolExecutor(self.config.runner.workers, "synthaix-chunk")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def submit(self, chunk: Chunk) -> Future[ChunkResult]:
        assert self._pool is not None, "use the executor as a context manager"
        if self.fill is not None:
            chunk = dataclasses.replace(chunk, llm_fill=self.fill)
        return self._pool.submit(generate_chunk, self.config, chunk, self.client, self.keys)

    def first_done(self, handles: list[Future[ChunkResult]]) -> Future[ChunkResult]:
        done, _ = wait(handles, return_when=FIRST_COMPLETED)
        return next(iter(done))

    def result(self, handle: Future[ChunkResult]) -> ChunkResult:
        return handle.result()


class Steps:
    """Runs a build step. `name` and `number` name it (a task run `write-part-000003`)."""

    def run(self, name: str, fn: Callable[..., T], *args: Any, number: int | None = None) -> T:
        return fn(*args)

    def within(self, table: str) -> Steps:
        """The steps of one table of a multi-table dataset (named after it)."""
        return self
