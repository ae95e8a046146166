"""Dedupe steps as Prefect tasks. They run in the flow's process, in chunk order, so the
LanceDB table has one writer however the chunk tasks are spread."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from prefect import task
from prefect.cache_policies import NO_CACHE

from synthaix.config import DatasetConfig
from synthaix.dedupe.index import DedupeIndex


@task(name="open-dedupe", cache_policy=NO_CACHE)
def open_dedupe(
    config: DatasetConfig, build_id: str, previous: dict[str, Any], existing: list[Path]
) -> DedupeIndex:
    index = DedupeIndex(config)
    index.open(build_id, previous.get("dedupe"), existing)
    return index


@task(name="dedupe-chunk", task_run_name="dedupe-{chunk_index}", cache_policy=NO_CACHE)
def dedupe_chunk(
    index: DedupeIndex, chunk_index: int, table: pa.Table, row_ids: np.ndarray, limit: int
) -> pa.Table:
    return index.admit(table, row_ids, limit)


@task(name="finish-dedupe", cache_policy=NO_CACHE)
def finish_dedupe(index: DedupeIndex) -> dict[str, Any]:
    return index.finish()


class DedupeStep:
    """What the assembler calls: each chunk's dedupe as a visible task run."""

    def __init__(self, index: DedupeIndex) -> None:
        self.index = index
        self.keys, self.texts = index.keys, index.texts
        self._calls = 0

    def admit(self, table: pa.Table, row_ids: np.ndarray, limit: int) -> pa.Table:
        if not self.index.enabled:
            return table.slice(0, limit)
        self._calls += 1
        return dedupe_chunk(self.index, self._calls, table, row_ids, limit)
