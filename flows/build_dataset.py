"""The dataset build flow: plan chunks, map generation over them, stream into the sink, publish."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Literal

from prefect import flow, unmapped
from prefect.futures import PrefectFuture, as_completed
from prefect.task_runners import ThreadPoolTaskRunner

from synthaix import progress
from synthaix.assemble import Assembler, RoundPlanner, UniqueFilter, tracked_unique_columns
from synthaix.columns.llm import LlmColumn
from synthaix.config import DatasetConfig, load_config
from synthaix.dedupe.index import DedupeIndex
from synthaix.errors import ConfigError
from synthaix.generate import Chunk, dataset_schema
from synthaix.llm.stats import LlmStats
from synthaix.manifest import BUILD_KEY, build_manifest, config_hash, next_row
from synthaix.sink import DatasetWriter
from synthaix.summary import BuildSummary
from tasks.generate import check_provider, generate_chunk
from tasks.publish import publish, report_artifacts


@flow(
    name="build-dataset",
    task_runner=ThreadPoolTaskRunner(max_workers=16),
    validate_parameters=True,
)
def build_dataset(
    config_path: str | None = None,
    config: DatasetConfig | None = None,
    rows: int | None = None,
    seed: int | None = None,
    out: str | None = None,
    mode: Literal["overwrite", "append"] | None = None,
) -> BuildSummary:
    """Build a dataset from a YAML config file (`config_path`) or an inline `config`."""
    started = time.perf_counter()
    if (config_path is None) == (config is None):
        raise ConfigError("give exactly one of config_path or config")
    base = config if config is not None else load_config(config_path)  # type: ignore[arg-type]
    config = base.with_overrides(rows=rows, seed=seed, out=Path(out) if out else None, mode=mode)

    with DatasetWriter(config, dataset_schema(config)) as writer:
        identity = {"build_id": writer.build_id, "config_hash": config_hash(config)}
        writer.part_metadata = {BUILD_KEY: json.dumps(identity).encode()}
        previous = writer.previous_manifest()
        unique = tracked_unique_columns(config)
        filter_ = UniqueFilter(unique, writer.existing_values(unique))

        def sink(table) -> None:
            writer.write(table)
            progress.advanced(table.num_rows)

        if any(isinstance(c, LlmColumn) for c in config.columns):
            check_provider(config.provider)
        dedupe = DedupeIndex(config)
        dedupe.open(writer.build_id, previous.get("dedupe"), writer.existing.parts)
        assembler = Assembler(config.rows, filter_, sink, dedupe)
        planner = RoundPlanner(config, first_row=next_row(previous, writer.existing.rows))
        progress.started(config.name, config.rows)
        prepared = time.perf_counter()
        llm = LlmStats()
        try:
            while chunks := planner.next_round(assembler):
                llm += _run_round(config, chunks, assembler)
            dedupe_section = dedupe.finish()
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
    summary.seconds = round(time.perf_counter() - started, 3)
    report_artifacts(config, manifest)
    return summary


def _run_round(config: DatasetConfig, chunks: list[Chunk], assembler: Assembler) -> LlmStats:
    """Keep `workers` chunks in flight, and at most `workers` more finished early and waiting for
    an earlier one: memory stays bounded by the window, not by the dataset size, and a slow
    chunk does not idle the others."""
    limit = config.runner.workers
    pending = list(reversed(chunks))
    in_flight: dict[PrefectFuture, Chunk] = {}
    llm = LlmStats()
    while pending or in_flight:
        free = min(limit - len(in_flight), 2 * limit - len(in_flight) - assembler.buffered)
        if pending and (free > 0 or not in_flight):
            batch = [pending.pop() for _ in range(min(max(free, 1), len(pending)))]
            futures = generate_chunk.map(config=unmapped(config), chunk=batch)
            in_flight.update(zip(futures, batch, strict=True))
        done = next(as_completed(list(in_flight)))
        chunk = in_flight.pop(done)
        result = done.result()
        llm += result.llm
        assembler.add(chunk.index, result.table, result.row_ids)
    return llm
