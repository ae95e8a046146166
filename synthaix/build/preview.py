"""A preview: the build's first rows from the same engine, kept in memory, nothing written.
Uniqueness and exact (and near) dedupe apply within the preview, as they would in a build."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pyarrow as pa

from synthaix.assemble import RoundPlanner
from synthaix.build.engine import Build
from synthaix.build.executor import ThreadExecutor
from synthaix.columns.llm import LlmColumn
from synthaix.config import DatasetConfig
from synthaix.dedupe.keys import key_columns
from synthaix.llm.stats import LlmStats
from synthaix.sink import Existing

CHUNK_CAP = 200_000  # rows; a bigger chunk_size previews in chunks of 200,000 (other draws)


class MemorySink:
    """The sink of a preview: holds the rows, publishes nothing."""

    build_id = "preview"

    def __init__(self, config: DatasetConfig, schema: pa.Schema) -> None:
        self.schema = schema
        self.existing = Existing()
        self.part_metadata: dict[bytes, bytes] = {}
        self.parts: list[pa.Table] = []

    def __enter__(self) -> MemorySink:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def previous_manifest(self) -> None:
        return None

    def existing_values(self, columns: list[str]) -> dict[str, set]:
        return {}

    def write(self, table: pa.Table) -> None:
        self.parts.append(table)

    def commit(self, manifest: object) -> dict[str, Path]:
        return {}

    def output_paths(self) -> dict[str, Path]:
        return {}

    def table(self) -> pa.Table:
        return pa.concat_tables(self.parts) if self.parts else self.schema.empty_table()


def preview_rows(
    config: DatasetConfig,
    rows: int,
    llm: bool = True,
    on_spent: Callable[[LlmStats], None] | None = None,
) -> pa.Table:
    """The first `rows` rows a build of `config` makes (`llm=False`: llm columns left empty,
    for a config whose provider is not reachable); `on_spent` is told what they cost."""
    sinks: list[MemorySink] = []

    def sink(config: DatasetConfig, schema: pa.Schema) -> MemorySink:
        sinks.append(MemorySink(config, schema))
        return sinks[-1]

    # Samplers that draw per chunk (a name's parts, `by` segments, patterns, correlated_with)
    # give a row other values in a chunk of another size: the preview makes the build's own
    # first-round chunks, in order, as many as its rows need. Their llm columns are filled
    # for the rows shown only (each row filled costs a request's share).
    llm_columns = any(isinstance(c, LlmColumn) for c in config.columns)
    if llm_columns and not llm:
        config = dedupe_without_llm_columns(config)
    shown = config.model_copy(
        update={"rows": min(rows, config.rows), "chunk_size": min(config.chunk_size, CHUNK_CAP)}
    )
    llm_rows = shown.rows if llm_columns and llm else None

    def planner(first_row: int) -> RoundPlanner:
        return RoundPlanner(shown, first_row, follow=config.rows, llm_rows=llm_rows)

    executor = ThreadExecutor(shown, llm=llm)
    manifest = Build(shown, executor, sink=sink, persistent=False, planner=planner).run()
    if on_spent is not None:
        on_spent(manifest.llm)
    return sinks[-1].table()


def dedupe_without_llm_columns(config: DatasetConfig) -> DatasetConfig:
    """Llm columns left empty are alike in every row: no check that reads them (every row
    would repeat the first). A key with an llm column is off (the build's rows may repeat
    the other columns, which its llm text tells apart), as is the near check (its text)."""
    llm = {c.name for c in config.columns if isinstance(c, LlmColumn)}
    exact = config.dedupe.exact and not llm & set(key_columns(config))
    update = {"exact": exact, "near": False}
    return config.model_copy(update={"dedupe": config.dedupe.model_copy(update=update)})
