"""The dataset build flow: Prefect parameters -> the build engine (`synthaix.build`) with a
Prefect chunk executor and task-run steps -> the manifest. Composition only.

translate-description (only for plain words) -> plan-build -> open-dedupe -> generate-chunk
(mapped on the chunk runner: threads, Dask or Ray; chunk-000000...) with dedupe-000000 and
write-part-000000 per part, fill-up rounds until exactly N rows -> finish-dedupe ->
publish-dataset -> write-report (when asked) -> report-build (summary and sample artifacts).
"""

from __future__ import annotations

from prefect import flow
from prefect.task_runners import ThreadPoolTaskRunner

from flows import parameters as p
from flows.executor import PrefectChunkExecutor, TaskSteps
from flows.heartbeat import while_running
from flows.outcome import failed, quiet_user_errors
from synthaix.build.engine import Build
from synthaix.errors import SynthaixError
from synthaix.llm.credentials import redacted
from synthaix.overrides import typed
from synthaix.relational.config import RelationalConfig
from tasks.plan import from_description, plan_build, scheduled_as_of
from tasks.progress import ProgressArtifact, report_artifacts, write_report


@flow(
    name="build-dataset",
    task_runner=ThreadPoolTaskRunner(max_workers=16),
    validate_parameters=True,
)
def build_dataset(
    config_path: p.ConfigPath = p.CONFIG_PATH,
    config: p.ConfigInline = p.CONFIG,
    description: p.Description = p.DESCRIPTION,
    rows: p.Rows = p.ROWS,
    seed: p.Seed = p.SEED,
    as_of: p.AsOf = p.AS_OF,
    mode: p.Mode = p.MODE,
    out: p.Out = p.OUT,
    runner: p.Runner = p.RUNNER,
    workers: p.Workers = p.WORKERS,
    chunk_size: p.ChunkSize = p.CHUNK_SIZE,
    model: p.Model = p.MODEL,
    base_url: p.BaseUrl = p.BASE_URL,
    overrides: p.Overrides = p.OVERRIDES,
    report: bool = p.REPORT,
    preflight: bool = p.PREFLIGHT,
):  # -> Manifest | DatasetManifest, or a Failed state on a user error
    """Build a dataset from a YAML config file, an inline config, or plain words, and return
    its manifest. Empty parameters take the config's values."""
    quiet_user_errors()
    config_path, config, description = p.given(config_path), config or None, p.given(description)
    overrides = typed(
        dict(rows=rows, seed=seed, as_of=as_of or scheduled_as_of(), mode=mode, out=out)
        | dict(runner=runner, workers=workers, chunk_size=chunk_size, model=model)
        | dict(base_url=base_url)
    ) | (overrides or {})
    with while_running():  # the run's heartbeats, when the CLI sends them
        try:
            if description:  # a form's empty field is no description
                provider = p.provider_for(model, base_url)
                config = from_description(description, config_path, config, provider, rows or 1000)
                config_path = None
            config = plan_build(config_path, config, overrides, preflight, bool(description))
            if isinstance(config, RelationalConfig):
                from flows.build_tables import build_tables

                manifest, sample = build_tables(config)
            else:
                live = ProgressArtifact(config)
                steps, executor = TaskSteps(), PrefectChunkExecutor(config)
                build = Build(config, executor, steps=steps, on_rows=live.advanced)
                manifest, sample = build.run(), build.sample
                live.finished()  # an append of a slot appended already delivers no row
            link = write_report(config) if report else None
            report_artifacts(config, manifest, sample, link)
            return manifest
        except SynthaixError as error:
            return failed(error)
        except Exception as error:  # the state message and logs say it without secrets
            raise redacted(error) from error
