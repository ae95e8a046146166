"""The dataset build flow: Prefect parameters -> the build engine (`synthaix.build`) with a
Prefect chunk executor and task-run steps -> the manifest. Composition only.

translate-description (only for plain words) -> plan-build -> open-dedupe -> generate-chunk
(mapped on the chunk runner: threads, Dask or Ray) with dedupe-NNNNNN and write-part-NNNNNN
in chunk order, fill-up rounds until exactly N rows -> finish-dedupe -> publish-dataset ->
report-build (summary and sample artifacts).
"""

from __future__ import annotations

from typing import Literal

from prefect import flow
from prefect.task_runners import ThreadPoolTaskRunner

from flows.executor import PrefectChunkExecutor, TaskSteps
from synthaix.build.engine import Build
from synthaix.build.manifest import Manifest
from synthaix.config import DatasetConfig
from synthaix.llm.provider import ProviderConfig
from synthaix.relational.config import RelationalConfig
from synthaix.relational.manifest import DatasetManifest
from tasks.plan import plan_build, translate_description
from tasks.progress import ProgressArtifact, report_artifacts


@flow(
    name="build-dataset",
    task_runner=ThreadPoolTaskRunner(max_workers=16),
    validate_parameters=True,
)
def build_dataset(
    config_path: str | None = None,
    config: DatasetConfig | RelationalConfig | None = None,
    description: str | None = None,
    rows: int | None = None,
    seed: int | None = None,
    out: str | None = None,
    mode: Literal["overwrite", "append"] | None = None,
    runner: Literal["thread", "dask", "ray"] | None = None,
    preflight: bool = True,
) -> Manifest | DatasetManifest:
    """Build a dataset from a YAML config file (`config_path`), an inline `config`, or plain
    words (`description`, translated by the LLM provider from $OPENAI_BASE_URL). A config
    with `tables:` builds every table, each a `build-table` task run holding its chunk tasks,
    and returns the dataset manifest."""
    if description is not None and config is None and config_path is None:
        config, _ = translate_description(description, ProviderConfig(), rows or 1000)
    config = plan_build(config_path, config, rows, seed, out, mode, runner, preflight)
    if isinstance(config, RelationalConfig):
        from flows.build_tables import build_tables

        return build_tables(config)
    live = ProgressArtifact(config)
    build = Build(config, PrefectChunkExecutor(config), steps=TaskSteps(), on_rows=live.advanced)
    manifest = build.run()
    report_artifacts(config, manifest, build.sample)
    return manifest
