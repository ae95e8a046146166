"""The dataset build flow. Composition only: every step is a task of `tasks/`.

plan-build (translate-description first, when only a description is given) -> open-dedupe ->
generate-chunk, mapped over a sliding window on the chunk runner (threads, Dask or Ray) ->
per finished chunk, in chunk order: dedupe-chunk -> write-part -> fill-up rounds until exactly
N rows -> finish-dedupe -> publish-dataset -> report-build (summary and sample artifacts).
"""

from __future__ import annotations

import json
import time
from typing import Literal

from prefect import flow
from prefect.futures import PrefectFuture, as_completed
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner
from prefect.tasks import exponential_backoff

from flows.runners import chunk_runner
from synthaix import progress
from synthaix.assemble import Assembler, RoundPlanner, UniqueFilter, tracked_unique_columns
from synthaix.columns.llm import LlmColumn
from synthaix.config import DatasetConfig
from synthaix.generate import Chunk, ChunkResult, dataset_schema
from synthaix.ledger import ChunkLedger, generation_hash
from synthaix.llm.provider import ProviderConfig
from synthaix.llm.stats import LlmStats
from synthaix.manifest import BUILD_KEY, build_manifest, config_hash, next_row
from synthaix.sink import DatasetWriter
from synthaix.summary import BuildSummary
from tasks.dedupe import DedupeStep, finish_dedupe, open_dedupe
from tasks.generate import generate_chunk
from tasks.plan import plan_build, translate_description
from tasks.progress import ProgressArtifact, report_artifacts
from tasks.publish import publish, write_part


@flow(
    name="build-dataset",
    task_runner=ThreadPoolTaskRunner(max_workers=16),
    validate_parameters=True,
)
def build_dataset(
    config_path: str | None = None,
    config: DatasetConfig | None = None,
    description: str | None = None,
    rows: int | None = None,
    seed: int | None = None,
    out: str | None = None,
    mode: Literal["overwrite", "append"] | None = None,
    runner: Literal["thread", "dask", "ray"] | None = None,
) -> BuildSummary:
    """Build a dataset from a YAML config file (`config_path`), an inline `config`, or plain
    words (`description`, translated by the LLM provider from $OPENAI_BASE_URL)."""
    started = time.perf_counter()
    if description is not None and config is None and config_path is None:
        config, _ = translate_description(description, ProviderConfig(), rows or 1000)
    config = plan_build(config_path, config, rows, seed, out, mode, runner)
    has_llm = any(isinstance(c, LlmColumn) for c in config.columns)

    with DatasetWriter(config, dataset_schema(config)) as writer:
        identity = {"build_id": writer.build_id, "config_hash": config_hash(config)}
        writer.part_metadata = {BUILD_KEY: json.dumps(identity).encode()}
        previous = writer.previous_manifest()
        first_row = next_row(previous, writer.existing.rows, config.mode)
        ledger = None
        if has_llm and config.runner.resume:
            ledger = ChunkLedger(config.output_dir, generation_hash(config), first_row)
            ledger.open()
        dedupe = open_dedupe(config, writer.build_id, previous, writer.existing.parts)
        unique = tracked_unique_columns(config)
        filter_ = UniqueFilter(unique, writer.existing_values(unique))
        live = ProgressArtifact(config)
        sample: list = []

        def sink(table) -> None:
            write_part(writer, len(writer.parts) + 1, table)
            if not sample:
                sample.append(table.slice(0, 10))
            live.advanced(table.num_rows)
            progress.advanced(table.num_rows)

        assembler = Assembler(config.rows, filter_, sink, DedupeStep(dedupe))
        planner = RoundPlanner(config, first_row=first_row)
        progress.started(config.name, config.rows)
        prepared = time.perf_counter()
        llm = LlmStats()
        try:
            with chunk_runner(config.runner) as chunk_tasks:
                while chunks := planner.next_round(assembler):
                    llm += _run_round(config, chunks, assembler, chunk_tasks, ledger)
            dedupe_section = finish_dedupe(dedupe)
        except BaseException:
            dedupe.abort()
            raise
        generated = time.perf_counter()
        summary = BuildSummary(
            dataset=config.name,
            mode=config.mode,
            seed=config.seed,
            rows=assembler.delivered,
            total_rows=writer.existing.rows + assembler.delivered,
            generated_rows=assembler.generated,
            dropped_duplicates=assembler.dropped_duplicates,
            dropped_exact=dedupe.stats.exact,
            dropped_near=dedupe.stats.near,
            next_row=planner.next_row,
            chunks=planner.next_index,
            fill_rounds=planner.rounds - 1,
            seconds=round(generated - started, 3),
            outputs={kind: str(path) for kind, path in writer.output_paths().items()},
            llm=llm,
            stage_seconds={
                "prepare": round(prepared - started, 3),
                "generate": round(generated - prepared, 3),
            },
        )
        manifest = build_manifest(config, summary, writer.build_id, dedupe_section)
        try:
            publish(writer, manifest)
        except BaseException:
            dedupe.abort()
            raise
        dedupe.committed()
        if ledger is not None:
            ledger.clear()  # published: nothing left to resume
    summary.seconds = round(time.perf_counter() - started, 3)
    report_artifacts(config, manifest, sample[0] if sample else None)
    return summary


def _run_round(
    config: DatasetConfig,
    chunks: list[Chunk],
    assembler: Assembler,
    runner: TaskRunner,
    ledger: ChunkLedger | None,
) -> LlmStats:
    """Keep `workers` chunks in flight, and at most `workers` more finished early and waiting for
    an earlier one: memory stays bounded by the window, not by the dataset size, and a slow
    chunk does not idle the others. Chunks in the ledger (from a killed attempt) are not run
    again; their LLM stats are not counted, as this build did not pay for them."""
    limit = config.runner.workers
    schema = dataset_schema(config)
    task = generate_chunk.with_options(
        retries=config.runner.retries,
        retry_delay_seconds=exponential_backoff(backoff_factor=config.runner.retry_backoff),
    )
    pending = list(reversed(chunks))
    in_flight: dict[PrefectFuture, Chunk] = {}
    llm = LlmStats()
    while pending or in_flight:
        free = min(limit - len(in_flight), 2 * limit - len(in_flight) - assembler.buffered)
        while pending and (free > 0 or not in_flight):
            chunk = pending.pop()
            saved = ledger.load(chunk, schema) if ledger else None
            if saved is not None:
                assembler.add(chunk.index, saved.table, saved.row_ids)
                continue
            future = runner.submit(task, {"config": config, "chunk": chunk})
            in_flight[future] = chunk
            free -= 1
        if not in_flight:
            continue
        done = next(as_completed(list(in_flight)))
        chunk = in_flight.pop(done)
        result: ChunkResult = done.result()
        if ledger is not None:
            ledger.save(chunk, result)
        llm += result.llm
        assembler.add(chunk.index, result.table, result.row_ids)
    return llm
