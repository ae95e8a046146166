"""Publishing a finished build as a Prefect task."""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from synthaix.sink import DatasetWriter


@task(name="publish-dataset", cache_policy=NO_CACHE)
def publish(writer: DatasetWriter) -> dict[str, Path]:
    return writer.commit()
