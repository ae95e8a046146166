"""Publishing a finished build, and showing it in the Prefect UI."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from synthaix.config import DatasetConfig
from synthaix.manifest import summary_markdown
from synthaix.sink import DatasetWriter


@task(name="publish-dataset", cache_policy=NO_CACHE)
def publish(writer: DatasetWriter, manifest: dict[str, Any]) -> dict[str, Path]:
    return writer.commit(manifest)


@task(name="report-build", cache_policy=NO_CACHE)
def report_artifacts(config: DatasetConfig, manifest: dict[str, Any]) -> None:
    """The build summary as a Markdown artifact in the Prefect UI."""
    key = f"{config.name}-summary".replace("_", "-").lower()
    create_markdown_artifact(
        markdown=summary_markdown(manifest), key=key, description="SynthAIx build summary"
    )
