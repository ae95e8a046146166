"""Writing and publishing a build's parts as Prefect tasks (in the flow's process)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
from prefect import task
from prefect.cache_policies import NO_CACHE

from synthaix.sink import DatasetWriter


@task(name="write-part", task_run_name="write-part-{number}", cache_policy=NO_CACHE)
def write_part(writer: DatasetWriter, number: int, table: pa.Table) -> None:
    writer.write(table)


@task(name="publish-dataset", cache_policy=NO_CACHE)
def publish(writer: DatasetWriter, manifest: dict[str, Any]) -> dict[str, Path]:
    return writer.commit(manifest)
