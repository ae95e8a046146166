"""Turn chunks that finish in any order into exactly N rows, in a deterministic order.

Chunks are released in index order (a small buffer holds the ones that finish early), rows
that repeat a value of a `unique` column are dropped, and fill-up rounds replace them (columns
that can renumber a repeated value, like derived emails, keep the row instead). Because every
decision is taken in index order, the output does not depend on completion order.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from synthaix.columns.identity import UuidColumn
from synthaix.columns.numeric import SequenceColumn
from synthaix.config import DatasetConfig
from synthaix.errors import CapacityError
from synthaix.generate import Chunk, ChunkResult, plan_chunks

MAX_FILL_ROUNDS = 25
STALLED_ROUNDS = 3
MIN_ACCEPTANCE = 0.01


def tracked_unique_columns(config: DatasetConfig) -> UniqueColumns:
    """Unique columns that need checking: sequences are unique by construction, and random
    v4 UUIDs collide with odds of about 1e-25 per million rows."""
    tracked = [
        c for c in config.columns if c.unique and not isinstance(c, SequenceColumn | UuidColumn)
    ]
    repairs = {c.name: c.make_unique for c in tracked if getattr(c, "repairs_duplicates", False)}
    return UniqueColumns([c.name for c in tracked], repairs)


Repair = Callable[[Any, int], Any]


class UniqueColumns(list[str]):
    """Names of the unique columns, and `repairs`: for the columns that make a repeated value
    unique themselves (derived emails and usernames), `make_unique(value, n)`."""

    def __init__(self, names: list[str], repairs: dict[str, Repair] | None = None) -> None:
        super().__init__(names)
        self.repairs = repairs or {}


class UniqueFilter:
    """Keeps rows whose unique-column values were never seen before (nulls are exempt).

    A repeated value of a column with a repair is renumbered instead (ann.lee2@example.com),
    and its row kept: rows are taken in chunk order, so the numbers are deterministic.
    `columns` may be UniqueColumns, whose repairs apply unless `repairs` is given."""

    def __init__(
        self,
        columns: list[str],
        seen: dict[str, set] | None = None,
        repairs: dict[str, Repair] | None = None,
    ) -> None:
        self.columns = columns
        self.seen = [set((seen or {}).get(name, ())) for name in columns]
        repairs = getattr(columns, "repairs", {}) if repairs is None else repairs
        self.repairs = [repairs.get(name) for name in columns]
        self.repaired = 0
        # The next number to try for each repaired value, so a name shared by thousands of
        # rows is not counted up from 2 each time.
        self._numbers: list[dict[Any, int]] = [{} for _ in columns]

    def apply(self, table: pa.Table) -> pa.Table:
        if not self.columns:
            return table
        keep = []
        seen, repairs = self.seen, self.repairs
        values = [table[c].to_pylist() for c in self.columns]
        before = self.repaired
        for i, row in enumerate(zip(*values, strict=True)):
            if any(v is not None and v in seen[j] and not repairs[j] for j, v in enumerate(row)):
                continue
            for j, v in enumerate(row):
                if v is not None and v in seen[j]:
                    v = values[j][i] = self._renumbered(j, v)
                if v is not None:
                    seen[j].add(v)
            keep.append(i)
        if self.repaired > before:
            for j, name in enumerate(self.columns):
                if repairs[j]:
                    field = table.schema.field(name)
                    index = table.schema.get_field_index(name)
                    table = table.set_column(index, field, pa.array(values[j], field.type))
        if len(keep) == table.num_rows:
            return table
        return table.take(pa.array(keep, type=pa.int64()))

    def _renumbered(self, column: int, value: Any) -> Any:
        make_unique, seen = self.repairs[column], self.seen[column]
        assert make_unique is not None
        n = self._numbers[column].get(value, 2)
        while (candidate := make_unique(value, n)) in seen:
            n += 1
        self._numbers[column][value] = n + 1
        self.repaired += 1
        return candidate


@dataclass
class Batch:
    """Released rows, in order, with the generator's row numbers and (when the chunk task
    computed them) their exact-key hashes."""

    table: pa.Table
    row_ids: np.ndarray
    hashes: np.ndarray | None


class Assembler:
    """Receives chunk results in any order and releases their rows in chunk order, in batches,
    dropping rows that repeat a `unique` column's value. Admitting (dedupe) and writing the
    batches is the caller's: it reports what it kept with `accepted`.

    Batches are up to BATCH_ROWS rows, BATCH_CHUNKS chunks or BATCH_SECONDS of waiting, so a
    build of many small chunks does not pay a dedupe and a write per chunk."""

    def __init__(self, target: int, unique: UniqueFilter) -> None:
        self.target = target
        self.unique = unique
        self.delivered = 0
        self.generated = 0
        self.dropped_duplicates = 0
        self.next_index = 0
        self._early: dict[int, ChunkResult] = {}
        self._batch: list[pa.Table] = []
        self._batch_rows = 0
        self._batch_started = 0.0

    @property
    def buffered(self) -> int:
        return len(self._early)

    @property
    def missing(self) -> int:
        return self.target - self.delivered

    def add(self, index: int, result: ChunkResult) -> list[Batch]:
        """`result.row_ids`: the generator's number of each row (stable across re-runs)."""
        self._early[index] = result
        batches = []
        while self.next_index in self._early:
            batch = self._release(self._early.pop(self.next_index))
            self.next_index += 1
            if batch is not None:
                batches.append(batch)
        return batches

    def accepted(self, rows: int) -> None:
        self.delivered += rows

    def _release(self, result: ChunkResult) -> Batch | None:
        table = result.table
        self.generated += table.num_rows
        if self.missing <= 0:
            return None
        table = table.append_column(_ROW_ID, pa.array(result.row_ids, pa.int64()))
        if result.hashes is not None:
            table = table.append_column(_HASH, pa.array(result.hashes, pa.int64()))
        repaired = self.unique.repaired
        kept = self.unique.apply(table)
        self.dropped_duplicates += table.num_rows - kept.num_rows
        if self.unique.repaired > repaired and _HASH in kept.column_names:
            kept = kept.drop_columns([_HASH])  # hashed before renumbering: the dedupe rehashes
        if not self._batch:
            self._batch_started = time.monotonic()
        self._batch.append(kept)
        self._batch_rows += kept.num_rows
        if (
            self._batch_rows >= BATCH_ROWS
            or len(self._batch) >= BATCH_CHUNKS
            or time.monotonic() - self._batch_started >= BATCH_SECONDS
            or self._batch_rows >= self.missing
        ):
            return self.flush()
        return None

    def flush(self) -> Batch | None:
        if not self._batch:
            return None
        kept = pa.concat_tables(self._batch, promote_options="default")
        self._batch, self._batch_rows = [], 0
        hashed = kept[_HASH] if _HASH in kept.column_names else None
        hashes = hashed.to_numpy() if hashed is not None and not hashed.null_count else None
        ids = kept[_ROW_ID].to_numpy()
        extra = [c for c in (_ROW_ID, _HASH) if c in kept.column_names]
        return Batch(kept.drop_columns(extra), ids, hashes)


BATCH_ROWS = 50_000
BATCH_CHUNKS = 32
BATCH_SECONDS = 1.0
_ROW_ID = "__synthaix_row_id"
_HASH = "__synthaix_key_hash"


class RoundPlanner:
    """Plans the first round (all N rows) and then fill-up rounds sized from the shortfall."""

    def __init__(self, config: DatasetConfig, first_row: int) -> None:
        self.config = config
        self.next_row = first_row
        self.next_index = 0
        self.rounds = 0
        self._stalled = 0
        self._round_start = (0, 0)
        self._planned = 0
        self._last_delivered = -1

    def next_round(self, assembler: Assembler, limits: str) -> list[Chunk]:
        """The chunks of the next round; `limits` names what bounds distinct rows (for the
        message when rounds stop making progress). Call after the last batch is written."""
        missing = assembler.missing
        if missing <= 0:
            return []
        if self.rounds:
            self._check_progress(assembler, limits)
        # Size the round from the last round's acceptance (it falls as unique values run out),
        # with a margin, so fill-up converges in a few rounds.
        delivered, generated = assembler.delivered, assembler.generated
        if self.rounds == 0:
            rows = missing
        else:
            # Against the rows planned, not those generated: constraints and LLM failures
            # drop rows inside the chunks, before the assembler sees them.
            tried = self._planned
            acceptance = (delivered - self._round_start[0]) / tried if tried else 1.0
            rows = math.ceil(missing / max(acceptance, MIN_ACCEPTANCE) * 1.2)
            # Never more than a whole build in one round: bounds the waste when it cannot work.
            rows = min(rows, max(assembler.target, self.config.chunk_size))
        self._round_start = (delivered, generated)
        self._planned = rows
        chunks = plan_chunks(
            rows, self.config.chunk_size, first_row=self.next_row, first_index=self.next_index
        )
        self.next_row += rows
        self.next_index += len(chunks)
        self.rounds += 1
        return chunks

    def _check_progress(self, assembler: Assembler, limits: str) -> None:
        self._stalled = self._stalled + 1 if assembler.delivered == self._last_delivered else 0
        self._last_delivered = assembler.delivered
        if self._stalled >= STALLED_ROUNDS or self.rounds > MAX_FILL_ROUNDS:
            raise CapacityError(
                f"could only produce {assembler.delivered:,} of {assembler.target:,} rows after "
                f"{self.rounds} rounds: {limits} cannot yield more",
                hint="widen the value ranges or add columns, lower rows, or relax the "
                "constraints (unique, dedupe.key, dedupe.threshold)",
            )


def constraints(unique: list[str], keys: list[str], texts: list[str]) -> str:
    """What limits the distinct rows: unique columns and the dedupe checks that are on."""
    found = []
    if unique:
        found.append(f"distinct values of the unique columns ({', '.join(unique)})")
    if keys:
        found.append(f"distinct rows over the dedupe key ({', '.join(keys)})")
    if texts:
        found.append(f"text that is not a near duplicate ({', '.join(texts)})")
    return " and ".join(found) or "the generator"
