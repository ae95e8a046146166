"""Fill one chunk of rows from the sampler columns. Pure: same config + chunk = same table."""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from synthaix import constraints, spendlog
from synthaix.columns import ChunkContext
from synthaix.columns.llm import LlmColumn
from synthaix.config import DatasetConfig
from synthaix.dedupe.keys import key_hashes
from synthaix.llm.fill import StageFiller, stage_of
from synthaix.llm.stats import LlmStats, StatsRecorder, attach_spent

if TYPE_CHECKING:
    from synthaix.llm.client import LlmClient

# Raised when a sampler makes other values for the same config and seed (2: full names in the
# locale's order; 3: a full name's parts of one gender, locales' own names): an interrupted
# build never resumes from chunks the older samplers made.
SAMPLER_VERSION = 3


@dataclass(frozen=True)
class Chunk:
    """A slice of the build. `index` orders delivery; `first_row` seeds it (and numbers rows)."""

    index: int
    first_row: int
    rows: int
    # A child table's chunk: each row's parent (among the build's new parent rows).
    parents: np.ndarray | None = field(default=None, compare=False, repr=False)
    # Where the worker logs each request it pays for (the build's ledger; None: no ledger).
    paid_log: str | None = field(default=None, compare=False, repr=False)
    # The build it belongs to (its id): a stopped build's chunks send no further request.
    build: str = field(default="", compare=False, repr=False)
    # Rows of the chunk its llm columns fill (the first ones), the rest dropped before any
    # request: a preview shows the first rows of the build's own chunk, paying for those only.
    llm_rows: int | None = field(default=None, compare=False, repr=False)
    # The rows whose llm columns a multi-table preview fills, the rest kept with them empty.
    llm_fill: LlmFill | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class LlmFill:
    """The rows of a table a multi-table preview pays the LLM for (the rows shown, and those
    that rows shown elsewhere read), told apart by the hash of their `columns`: values made
    before the llm columns, the same in both of the preview's makes. `every`: all rows. The
    others keep their llm columns empty, and stay (as do rows whose answers were unusable):
    every table's rows are still the build's."""

    columns: tuple[str, ...] = ()
    hashes: np.ndarray | None = field(default=None, compare=False)
    every: bool = False

    def mask(self, values: dict[str, pa.Array], rows: int) -> np.ndarray:
        if self.every or self.hashes is None or not set(self.columns) <= values.keys():
            return np.ones(rows, dtype=bool)
        made = pa.table({name: values[name] for name in self.columns})
        return np.isin(key_hashes(made, list(self.columns)), self.hashes)


def plan_chunks(
    rows: int, chunk_size: int, *, first_row: int = 0, first_index: int = 0
) -> list[Chunk]:
    count = -(-rows // chunk_size)
    return [
        Chunk(first_index + i, first_row + i * chunk_size, min(chunk_size, rows - i * chunk_size))
        for i in range(count)
    ]


def dataset_schema(config: DatasetConfig) -> pa.Schema:
    fields = []
    for column in config.columns:
        meta = {"synthaix.type": column.type}  # type: ignore[attr-defined]
        if column.description:
            meta["description"] = column.description
        fields.append(pa.field(column.name, column.arrow_type(), metadata=meta))
    return pa.schema(fields)


def column_rng(seed: int, first_row: int, column: str) -> np.random.Generator:
    """Each column of each chunk gets its own stream: independent of chunk order and of the
    other columns, so editing one column leaves the others' values unchanged."""
    return np.random.default_rng(
        np.random.SeedSequence([seed, first_row, zlib.crc32(column.encode())])
    )


@dataclass
class ChunkResult:
    """A generated chunk: its rows, their row numbers, what the LLM path spent on them, and
    the rows' exact-dedupe key hashes (computed here, in parallel, not in the build's thread)."""

    table: pa.Table
    row_ids: np.ndarray
    llm: LlmStats = field(default_factory=LlmStats)
    hashes: np.ndarray | None = None
    rejected: dict[str, int] = field(default_factory=dict)  # rows each constraint dropped
    parents: np.ndarray | None = None  # a child table's rows' parents (set by the engine)
    # Rows left out before their llm columns were asked for, repeating a unique value of an
    # earlier row of the chunk: the unique check's drops, made where they cost nothing.
    unique_repeats: int = 0


def generate_chunk(
    config: DatasetConfig,
    chunk: Chunk,
    llm: LlmClient | None = None,
    keys: Sequence[str] = (),
    constrained: bool = True,
) -> ChunkResult:
    """Sampler columns from the chunk's seeded streams; LLM columns in batched requests through
    `llm` (without one, as in a preview with no provider, they are left null). `keys`: the
    exact-dedupe key columns to hash. Rows that break a constraint are left out and counted
    (`constrained=False`: kept, for sampling the constraints' pass rates).

    Rows whose LLM values could not be obtained (after re-asks) are left out: the build's
    fill-up rounds replace them. A failure carries what the chunk paid before it
    (`spent_before`).
    """
    recorder = StatsRecorder(spendlog.paid(chunk.paid_log, chunk.index))
    try:
        return _generate_chunk(config, chunk, llm, keys, constrained, recorder)
    except Exception as exc:
        attach_spent(exc, recorder.snapshot())
        raise


def _generate_chunk(
    config: DatasetConfig,
    chunk: Chunk,
    llm: LlmClient | None,
    keys: Sequence[str],
    constrained: bool,
    recorder: StatsRecorder,
) -> ChunkResult:
    from synthaix.assemble import sure_repeats  # it imports this module

    schema = dataset_schema(config)
    values: dict[str, pa.Array] = {}
    relations = config._relations
    if relations is not None:  # a table that reads related rows (multi-table datasets)
        values.update(relations.context(config.seed, chunk.first_row, chunk.rows, chunk.parents))
    complete = np.ones(chunk.rows, dtype=bool)
    if chunk.llm_rows is not None:
        complete[chunk.llm_rows :] = False
    fill: np.ndarray | None = None  # rows to fill (llm_fill), known at the first llm stage
    repeating = np.zeros(chunk.rows, dtype=bool)  # left unfilled: a unique value repeated
    for column, field_ in zip(config.columns, schema, strict=True):
        rng = column_rng(config.seed, chunk.first_row, column.name)
        if isinstance(column, LlmColumn) and llm is None:
            array = pa.nulls(chunk.rows, field_.type)
        elif isinstance(column, LlmColumn):
            if column.name not in values:  # filled together with the rest of its stage
                stage = stage_of(config.columns, config.columns.index(column))
                filler = StageFiller(
                    llm, config.description, stage, recorder, chunk.build, chunk.index
                )
                # Rows that already break a constraint, or that the unique check drops for a
                # value an earlier row holds, are not worth a request.
                wanted = complete & constraints.passing_so_far(config, values, chunk.rows)
                if (repeats := sure_repeats(config, values)) is not None:
                    repeating |= wanted & repeats
                    wanted &= ~repeats
                if chunk.llm_fill is not None:
                    if fill is None:
                        fill = chunk.llm_fill.mask(values, chunk.rows)
                    wanted &= fill
                filled, mask = filler.fill(values, chunk.rows, wanted)
                values.update(filled)
                if chunk.llm_fill is None:  # a preview's rows stay, filled or not
                    complete &= mask
            array = values[column.name]
        else:
            ctx = ChunkContext(chunk.rows, chunk.first_row, rng, config.locale, values)
            array = column.generate(ctx)
        if column.nullable > 0:
            # Own stream, so which rows are null does not depend on how many values the
            # column drew (a preview of 20 rows shows the build's first 20).
            nulls = column_rng(config.seed, chunk.first_row, f"{column.name}\0nulls")
            array = pc.if_else(pa.array(nulls.random(chunk.rows) < column.nullable), None, array)
        values[column.name] = array.cast(field_.type)
    table = pa.Table.from_arrays([values[f.name] for f in schema], schema=schema)
    row_ids = np.arange(chunk.first_row, chunk.first_row + chunk.rows, dtype=np.int64)
    rejected: dict[str, int] = {}
    if constrained:
        checked = table
        if relations is not None and config.constraints:  # checks may read related fields
            extra = {k: v for k, v in values.items() if k not in schema.names}
            for name, array in extra.items():
                checked = checked.append_column(name, array)
        passed, rejected = constraints.apply(config, checked)
        complete &= passed
    if not complete.all():
        table = table.filter(pa.array(complete))
        row_ids = row_ids[complete]
    hashes = key_hashes(table, list(keys)) if keys else None
    repeated = int((repeating & ~complete).sum()) if chunk.llm_fill is None else 0
    return ChunkResult(table, row_ids, recorder.stats, hashes, rejected, unique_repeats=repeated)
