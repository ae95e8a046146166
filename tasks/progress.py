"""Live progress and the end-of-build artifacts in the Prefect UI."""

from __future__ import annotations

import time
from uuid import UUID

import pyarrow as pa
from prefect import task
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.cache_policies import NO_CACHE

from synthaix.build.manifest import Manifest, summary_markdown
from synthaix.config import DatasetConfig

SAMPLE_ROWS = 10
UPDATE_SECONDS = 1.0  # at most one progress update a second: each is a request to the server


def artifact_key(config: DatasetConfig, kind: str) -> str:
    return f"{config.name}-{kind}".replace("_", "-").lower()


class ProgressArtifact:
    """A progress artifact of the flow run, updated as rows are delivered."""

    def __init__(self, config: DatasetConfig) -> None:
        self.total = config.rows
        self.done = 0
        self._last = 0.0
        self.id: UUID = create_progress_artifact(  # type: ignore[assignment]
            progress=0.0,
            key=artifact_key(config, "progress"),
            description=f"Rows of {config.name} delivered, in percent",
        )

    def advanced(self, table: pa.Table) -> None:
        self.done += table.num_rows
        now = time.monotonic()
        if now - self._last >= UPDATE_SECONDS or self.done >= self.total:
            self._last = now
            update_progress_artifact(self.id, progress=round(100 * self.done / self.total, 1))


@task(name="report-build", cache_policy=NO_CACHE)
def report_artifacts(config: DatasetConfig, manifest: Manifest, sample: pa.Table | None) -> None:
    """The build summary (Markdown) and the first rows (table) in the Prefect UI."""
    create_markdown_artifact(
        markdown=summary_markdown(manifest),
        key=artifact_key(config, "summary"),
        description="SynthAIx build summary",
    )
    if sample is None:
        return
    rows = [
        {k: (v if isinstance(v, int | float | bool | None) else str(v)) for k, v in row.items()}
        for row in sample.slice(0, SAMPLE_ROWS).to_pylist()
    ]
    create_table_artifact(
        table=rows, key=artifact_key(config, "sample"), description=f"First rows of {config.name}"
    )
