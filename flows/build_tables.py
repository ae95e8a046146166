"""A multi-table build inside the dataset flow run: each table is a subflow run of its own
(`build-table`, named after the table) holding that table's mapped chunk tasks and steps; the
late columns and the one publish of every table are task runs of the dataset's flow run."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prefect import flow
from prefect.artifacts import create_markdown_artifact
from prefect.task_runners import ThreadPoolTaskRunner

from flows.executor import PrefectChunkExecutor, TaskSteps, _Call
from synthaix.relational.build import DatasetBuild
from synthaix.relational.config import RelationalConfig
from synthaix.relational.manifest import DatasetManifest, summary_markdown


@flow(
    name="build-table",
    flow_run_name="{table}",
    task_runner=ThreadPoolTaskRunner(max_workers=16),
    validate_parameters=False,
)
def build_table(table: str, call: _Call) -> Any:
    """One table of a multi-table dataset: its chunks, dedupe and parts (staged only)."""
    return call.fn(*call.args)


def _table_step(name: str, run: Callable[[], Any]) -> Any:
    return build_table(name, _Call(run, ()))


def build_tables(config: RelationalConfig) -> DatasetManifest:
    build = DatasetBuild(config, PrefectChunkExecutor, steps=TaskSteps(), table_step=_table_step)
    manifest = build.run()
    create_markdown_artifact(
        markdown=summary_markdown(manifest),
        key=f"{config.name}-summary".replace("_", "-").lower(),
        description="SynthAIx build summary (every table)",
    )
    return manifest
