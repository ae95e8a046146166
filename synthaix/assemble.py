"""Turn chunks that finish in any order into exactly N rows, in a deterministic order.

Chunks are released in index order (a small buffer holds the ones that finish early), rows
that repeat a value of a `unique` column are dropped, and fill-up rounds replace them (columns
that can renumber a repeated value, like derived emails, keep the row instead). Because every
decision is taken in index order, the output does not depend on completion order.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from synthaix.columns.identity import UuidColumn
from synthaix.columns.llm import LlmColumn
from synthaix.columns.numeric import SequenceColumn
from synthaix.config import DatasetConfig
from synthaix.errors import CapacityError
from synthaix.generate import Chunk, ChunkResult, plan_chunks

MAX_FILL_ROUNDS = 25
STALLED_ROUNDS = 3
MIN_ACCEPTANCE = 0.01
SPARE_SHARE = 0.001  # of a build's rows, planned ahead against losses in the last chunks
# A fill-up round plans its shortfall over the acceptance so far, times a margin so a few
# rounds converge. Rows an LLM filled beyond the shortfall are paid and unused: an LLM
# build's margin is smaller, risking one more round (a round trip) rather than the money
# (measured: 8-25 % of a constrained LLM build's rows went unused at 1.2).
MARGIN = 1.2
LLM_MARGIN = 1.05
# What the rows of a build that stopped making progress were lost to, and a hint; asked only
# then (synthaix.build.shortfall).
Shortfall = Callable[[], tuple[str, str]]


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
    `columns` may be UniqueColumns, whose repairs apply unless `repairs` is given.

    The rules are those of taking the rows one by one, each against the values taken before
    it; `apply` reaches the same outcome with set operations on whole columns. Which rows are
    dropped depends only on the columns without a repair (a repaired column never drops a
    row), and each repaired column is then numbered on its own over the rows kept."""

    def __init__(
        self,
        columns: list[str],
        seen: dict[str, set] | None = None,
        repairs: dict[str, Repair] | None = None,
    ) -> None:
        self.columns = columns
        # A set given is taken over, not copied: the stored values of a unique column are
        # about 85 bytes each (5M of them, 0.4 GB).
        given = seen or {}
        self.seen = [
            v if isinstance(v := given.get(name, set()), set) else set(v) for name in columns
        ]
        repairs = getattr(columns, "repairs", {}) if repairs is None else repairs
        self.repairs = [repairs.get(name) for name in columns]
        self.repaired = 0
        # The next number to try for each repaired value, so a name shared by thousands of
        # rows is not counted up from 2 each time.
        self._numbers: list[dict[Any, int]] = [{} for _ in columns]

    def apply(self, table: pa.Table) -> pa.Table:
        if not self.columns or table.num_rows == 0:
            return table
        values = [table[c].to_pylist() for c in self.columns]
        codes = [_codes(table[c], v) for c, v in zip(self.columns, values, strict=True)]
        plain = [j for j, repair in enumerate(self.repairs) if repair is None]
        keep = self._keep(plain, values, codes)
        for j, name in enumerate(self.columns):
            if self.repairs[j] is None:
                continue
            changed = self._number(j, values[j], codes[j], keep)
            if changed:
                index = table.schema.get_field_index(name)
                field = table.schema.field(index)
                mask = np.zeros(table.num_rows, dtype=bool)
                mask[list(changed)] = True
                numbered = pa.array(list(changed.values()), field.type)
                column = pc.replace_with_mask(table[name].combine_chunks(), mask, numbered)
                table = table.set_column(index, field, column)
        return table if keep.all() else table.filter(pa.array(keep))

    def _keep(
        self, plain: list[int], values: list[list[Any]], codes: list[np.ndarray]
    ) -> np.ndarray:
        """Rows whose values in the columns without a repair were not taken before them. A row
        whose values were all new when the batch began (the usual case) is kept, and its
        values are taken in bulk; only the others are decided one by one, in order."""
        rows = len(values[0])
        special = np.zeros(rows, dtype=bool)
        for j in plain:
            present = codes[j] >= 0
            special |= present & (_contained(values[j], self.seen[j]) | _repeated(codes[j]))
        keep = np.ones(rows, dtype=bool)
        if special.any():
            # A value first held by a new row was taken by that row, which is always kept.
            by_new = {j: (~special[_first_rows(codes[j])]).tolist() for j in plain}
            for i in np.flatnonzero(special).tolist():
                row = [(j, values[j][i]) for j in plain]
                if any(v is not None and (v in self.seen[j] or by_new[j][i]) for j, v in row):
                    keep[i] = False
                else:
                    for j, v in row:
                        if v is not None:
                            self.seen[j].add(v)
        new = ~special
        for j in plain:
            self.seen[j].update(itertools.compress(values[j], new & (codes[j] >= 0)))
        return keep

    def _number(
        self, j: int, values: list[Any], codes: np.ndarray, keep: np.ndarray
    ) -> dict[int, Any]:
        """Renumber the kept rows' values that were taken before them; {row: new value}.

        Taken: in `seen`, or held by an earlier kept row. The k-th taken row of a value gets
        the k-th number from where that value's numbering stands. That is what the rules
        give unless a number lands on another value of the batch or on another number; a
        number already in `seen` is skipped, value by value. The outcome is checked, and
        if a number lands anywhere else the column is numbered row by row instead."""
        seen, numbers, make_unique = self.seen[j], self._numbers[j], self.repairs[j]
        assert make_unique is not None
        rows = np.flatnonzero(keep & (codes >= 0))
        kept = values if len(rows) == len(values) else [values[i] for i in rows.tolist()]
        taken = _contained(kept, seen) | _repeated(codes[rows])
        if not taken.any():
            seen.update(kept)
            return {}
        at = rows[taken]
        # Rank of each taken row among the taken rows of its value, in row order.
        order = np.argsort(codes[at], kind="stable")
        sorted_codes = codes[at][order]
        starts = np.flatnonzero(np.r_[True, sorted_codes[1:] != sorted_codes[:-1]])
        sizes = np.diff(np.r_[starts, len(order)])
        rank = np.empty(len(at), dtype=np.int64)
        rank[order] = np.arange(len(order)) - np.repeat(starts, sizes)
        first_of_value = at[order[starts]].tolist()
        bases = [values[i] for i in first_of_value]
        first_number = np.fromiter(map(numbers.get, bases, itertools.repeat(2)), np.int64)
        group = np.empty(len(at), dtype=np.int64)
        group[order] = np.repeat(np.arange(len(starts)), sizes)
        n = first_number[group] + rank
        originals = [values[i] for i in at.tolist()]
        made = list(map(make_unique, originals, n.tolist()))
        if not seen.isdisjoint(made):  # skip the numbers in seen, value by value
            made, n = self._skip_seen(j, originals, made, n, group, len(starts))
        distinct = set(made)
        if len(distinct) < len(made) or not distinct.isdisjoint(values):
            return self._number_row_by_row(j, values, keep)
        last = np.zeros(len(starts), dtype=np.int64)
        np.maximum.at(last, group, n)
        numbers.update(zip(bases, (last + 1).tolist(), strict=True))
        self.repaired += len(made)
        seen.update(itertools.compress(kept, ~taken))
        seen.update(made)
        return dict(zip(at.tolist(), made, strict=True))

    def _skip_seen(
        self,
        j: int,
        originals: list[Any],
        made: list[Any],
        n: np.ndarray,
        group: np.ndarray,
        groups: int,
    ) -> tuple[list[Any], np.ndarray]:
        """Numbers counted again for the values whose numbers hit `seen`, skipping those."""
        seen, make_unique = self.seen[j], self.repairs[j]
        assert make_unique is not None
        hit = np.zeros(groups, dtype=bool)
        hit[group[np.fromiter(map(seen.__contains__, made), bool, len(made))]] = True
        made, n = list(made), n.copy()
        following: dict[int, int] = {}
        for k in np.flatnonzero(hit[group]).tolist():
            number = following.get(int(group[k]), int(n[k]))
            while (candidate := make_unique(originals[k], number)) in seen:
                number += 1
            made[k], n[k] = candidate, number
            following[int(group[k])] = number + 1
        return made, n

    def _number_row_by_row(self, j: int, values: list[Any], keep: np.ndarray) -> dict[int, Any]:
        changed = {}
        seen = self.seen[j]
        for i in np.flatnonzero(keep).tolist():
            v = values[i]
            if v is not None and v in seen:
                v = changed[i] = self._renumbered(j, v)
            if v is not None:
                seen.add(v)
        return changed

    def _renumbered(self, column: int, value: Any) -> Any:
        make_unique, seen = self.repairs[column], self.seen[column]
        assert make_unique is not None
        n = self._numbers[column].get(value, 2)
        while (candidate := make_unique(value, n)) in seen:
            n += 1
        self._numbers[column][value] = n + 1
        self.repaired += 1
        return candidate


def _contained(values: list[Any], seen: set) -> np.ndarray:
    if not seen:
        return np.zeros(len(values), dtype=bool)
    return np.fromiter(map(seen.__contains__, values), bool, len(values))


def _codes(column: pa.ChunkedArray, values: list[Any]) -> np.ndarray:
    """A number per row, equal for rows whose values are equal by Python's `==` (as the
    rules compare them); -1 for nulls."""
    kind = column.type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_integer(kind):
        # Arrow's equality is Python's for these types (not for floats: -0.0, NaN).
        codes = pc.dictionary_encode(column.combine_chunks()).indices
        return pc.fill_null(codes, -1).to_numpy(zero_copy_only=False).astype(np.int64)
    # Any type: the row where the value first appears (NaN is unequal to itself, as in a set).
    first = dict(zip(reversed(values), range(len(values) - 1, -1, -1), strict=True))
    codes = np.fromiter(map(first.__getitem__, values), np.int64, len(values))
    codes[column.is_null().to_numpy(zero_copy_only=False)] = -1
    return codes


def _first_rows(codes: np.ndarray) -> np.ndarray:
    """The first row holding each row's value."""
    if len(codes) == 0:
        return np.zeros(0, dtype=np.int64)
    order = np.argsort(codes, kind="stable")
    sorted_codes = codes[order]
    starts = np.r_[True, sorted_codes[1:] != sorted_codes[:-1]]
    first = order[np.flatnonzero(starts)][np.cumsum(starts) - 1]
    rows = np.empty(len(codes), dtype=np.int64)
    rows[order] = first
    return rows


def _repeated(codes: np.ndarray) -> np.ndarray:
    """Whether a row's value appears in an earlier row."""
    return _first_rows(codes) != np.arange(len(codes))


def sure_repeats(config: DatasetConfig, values: dict[str, pa.Array]) -> np.ndarray | None:
    """Rows of a chunk that the unique check drops, unless the earlier row whose value they
    repeat is dropped first (its llm values unusable): those repeating an earlier row's value
    (not null) of the table's one unique column without a repair. None when it cannot be
    told yet (no such column, or not made yet); with two, whether a row stays depends on
    which earlier rows do."""
    tracked = tracked_unique_columns(config)
    plain = [name for name in tracked if name not in tracked.repairs]
    if len(plain) != 1 or plain[0] not in values:
        return None
    column = pa.chunked_array([values[plain[0]]])
    codes = _codes(column, column.to_pylist())
    return _repeated(codes) & (codes >= 0)


@dataclass
class Batch:
    """Released rows, in order, with the generator's row numbers and (when the chunk task
    computed them) their exact-key hashes."""

    table: pa.Table
    row_ids: np.ndarray
    hashes: np.ndarray | None
    parents: np.ndarray | None = None  # a child table's rows' parents


# A batch costs two task runs (dedupe, write-part), ~70 ms of CPU each with Prefect's server
# on the same machine: 500k rows (or 32 chunks, or a second's worth) spread that over more
# rows than 200k did (1M rows in 100k chunks through the flow: 287k -> 333k rows/s, medians of
# 3 alternated runs; peak RSS 0.73-0.84 GB against 0.69-0.77), and make larger Parquet parts.
BATCH_ROWS = 500_000
# The near-duplicate check holds a batch's (rows, dims) float32 vectors, a few copies of them
# while it admits the batch: a batch closes once its vectors reach this (the chunk that
# reaches it stays whole).
NEAR_BATCH_BYTES = 128 * 2**20
BATCH_CHUNKS = 32
BATCH_SECONDS = 1.0


def batch_rows(dims: int) -> int:
    """The rows at which a batch closes: with the near-duplicate check (`dims`: its vector
    size; 0 without it), those whose vectors fill NEAR_BATCH_BYTES (256 dims: 131k; 1,536:
    21k)."""
    return min(BATCH_ROWS, NEAR_BATCH_BYTES // (4 * dims)) if dims else BATCH_ROWS


class Assembler:
    """Receives chunk results in any order and releases their rows in chunk order, in batches,
    dropping rows that repeat a `unique` column's value. Admitting (dedupe) and writing the
    batches is the caller's: it reports what it kept with `accepted`.

    A batch closes once it holds `batch_rows` rows, BATCH_CHUNKS chunks or BATCH_SECONDS of
    waiting, so a build of many small chunks does not pay a dedupe and a write per chunk."""

    def __init__(
        self,
        target: int,
        unique: UniqueFilter,
        batch_rows: int = BATCH_ROWS,
    ) -> None:
        """`batch_rows`: see `batch_rows` above."""
        self.target = target
        self.unique = unique
        self.batch_rows = batch_rows
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

    @property
    def pending_rows(self) -> int:
        """Rows released and kept, in the batch that is not admitted yet."""
        return self._batch_rows

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
        if result.parents is not None:
            table = table.append_column(_PARENT, pa.array(result.parents, pa.int64()))
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
            self._batch_rows >= self.batch_rows
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
        parents = kept[_PARENT].to_numpy() if _PARENT in kept.column_names else None
        extra = [c for c in (_ROW_ID, _HASH, _PARENT) if c in kept.column_names]
        return Batch(kept.drop_columns(extra), ids, hashes, parents)


_ROW_ID = "__synthaix_row_id"
_HASH = "__synthaix_key_hash"
_PARENT = "__synthaix_parent"


class RoundPlanner:
    """Plans the first round (all N rows) and then fill-up rounds sized from the shortfall."""

    def __init__(
        self,
        config: DatasetConfig,
        first_row: int,
        first_round: int = 0,
        follow: int = 0,
        llm_rows: int | None = None,
    ) -> None:
        """`first_round`: plan at least this many rows first. `follow`: a preview of a build of
        that many rows, whose first round's chunks it plans one by one, in order, while it
        needs rows: the same chunks make the same rows (a sampler that draws per chunk, as a
        name's parts or a `by` segment, gives a row other values in a chunk of another
        size). `llm_rows`: the rows of each chunk whose llm columns a preview fills."""
        self.config = config
        self.follow = follow
        self.llm_rows = llm_rows
        self._followed = 0  # rounds that followed the build's first round
        self.next_row = first_row
        self.next_index = 0
        self.rounds = 0
        self._stalled = 0
        self._delivered_before = 0  # rows delivered when the last round was planned
        self._planned = 0
        self.first_round = first_round
        self._last_delivered = -1
        self._sizes: list[int] = []  # planned rows of each chunk, by index
        self._may_plan_ahead = False  # at most once per round, so stalls are still caught
        self._spared = False  # spare rows planned ahead this round (see `ahead`)
        self._planned_ahead = False  # the last round overlapped the one before
        self._llm = any(isinstance(c, LlmColumn) for c in config.columns)

    def next_round(self, assembler: Assembler, limits: Shortfall) -> list[Chunk]:
        """The chunks of the next round; `limits` says what the rows were lost to (for the
        message when rounds stop making progress). Call after the last batch is written."""
        missing = assembler.missing
        if missing <= 0:
            return []
        following = self.next_row < self.follow
        if self.rounds and not following:  # the build's own chunks run out: not a stall
            self._check_progress(assembler, limits)
        # Size the round from the last round's acceptance (it falls as unique values run out),
        # with a margin, so fill-up converges in a few rounds.
        delivered = assembler.delivered
        if following:
            size = self.config.chunk_size
            rows = min(self.follow - self.next_row, -(-missing // size) * size)
            self._followed += 1  # the build's own first round: no fill-up round
        elif self.rounds == 0:
            rows = max(missing, self.first_round)
        else:
            # Against the rows planned, not those generated: constraints and LLM failures
            # drop rows inside the chunks, before the assembler sees them. A round planned
            # ahead overlapped the one before it, so its own acceptance cannot be told apart:
            # the build's so far stands for it.
            tried = self._planned
            acceptance = (delivered - self._delivered_before) / tried if tried else 1.0
            if self._planned_ahead:
                released = sum(self._sizes[: assembler.next_index])
                acceptance = delivered / released if released else 1.0
            rows = self._rows_for(missing, acceptance, assembler.target)
        self._delivered_before = delivered
        self._may_plan_ahead, self._planned_ahead, self._spared = True, False, False
        self.rounds += 1
        return self._plan(rows)

    def ahead(self, assembler: Assembler) -> list[Chunk]:
        """The next round's chunks before this one ends, when the rows still to come may fall
        short. Called when a worker would idle otherwise, it saves the fill-up round's wait
        at the end of a build (an LLM round trip or more). Which rows a round numbers then
        depends on timing, so only builds whose rows depend on the answers anyway (LLM
        columns) call it; a sampler build plans each round after the last. The chunks planned
        ahead belong to the round they run in, and `next_round` still checks that rounds
        make progress.

        The rows still to come are counted at the rate lost so far, as `next_round` does.
        Duplicates do not keep to that rate: a row's chance to repeat one grows with the rows
        before it, so the last 30 % of a build lose about as many as the first 70 % (3 in
        9,000 rows, in a benchmark; one request of the rows lost in the last chunk then went
        out after it in 5 of 6 builds, 0.5 s of 16 s). So spare rows are planned too: those
        losses at that growth (counting one row lost before any is) and two standard
        deviations more (about Poisson), at most SPARE_SHARE of the build's rows before the
        round's margin (a build under 1,000 rows plans none). Spare rows alone are planned
        once a round, and do not use up the round's plan for a shortfall seen later."""
        released = sum(self._sizes[: assembler.next_index])
        if not self._may_plan_ahead or released < self.config.chunk_size:
            return []  # once per round; and too little seen to tell
        coming = assembler.pending_rows
        acceptance = (assembler.delivered + coming) / released
        outstanding = sum(self._sizes[assembler.next_index :])
        short = assembler.missing - coming - acceptance * outstanding
        lost = max(0, released - assembler.delivered - coming)
        later = (lost + 1) * (((released + outstanding) / released) ** 2 - 1)
        cap = math.floor(SPARE_SHARE * assembler.target)
        spare = min(math.ceil(later + 2 * math.sqrt(later)), cap)
        if short > 0:
            self._may_plan_ahead = False
        elif short + spare > 0 and not self._spared:
            self._spared = True
        else:
            return []
        self._planned_ahead = True
        return self._plan(self._rows_for(short + spare, acceptance, assembler.target))

    def _rows_for(self, short: float, acceptance: float, target: int) -> int:
        """Rows to plan for `short` rows at this acceptance, with a margin so fill-up converges
        in a few rounds. A sampler build plans as many as that takes at an acceptance of
        MIN_ACCEPTANCE or more (a constraint `validate` lets through holds that often): capped
        at a whole build a round, a 2 % constraint ran out of rounds (26 builds' rows make
        half of it). Otherwise never more than a whole build in one round: that bounds the
        waste where rounds cannot work, and an LLM build's rows lost to failed answers are
        paid for (its constraints drop rows before their requests)."""
        margin = LLM_MARGIN if self._llm else MARGIN
        rows = math.ceil(short / max(acceptance, MIN_ACCEPTANCE) * margin)
        if acceptance >= MIN_ACCEPTANCE and not self._llm:
            return rows
        return min(rows, max(target, self.follow, self.config.chunk_size))  # a preview: its build's

    def _plan(self, rows: int) -> list[Chunk]:
        self._planned = rows
        chunks = plan_chunks(
            rows, self.config.chunk_size, first_row=self.next_row, first_index=self.next_index
        )
        if self.llm_rows is not None:
            chunks = [dataclasses.replace(c, llm_rows=self.llm_rows) for c in chunks]
        self._sizes += [chunk.rows for chunk in chunks]
        self.next_row += rows
        self.next_index += len(chunks)
        return chunks

    def _check_progress(self, assembler: Assembler, limits: Shortfall) -> None:
        self._stalled = self._stalled + 1 if assembler.delivered == self._last_delivered else 0
        self._last_delivered = assembler.delivered
        if self._stalled >= STALLED_ROUNDS or self.rounds - self._followed > MAX_FILL_ROUNDS:
            why, hint = limits()
            raise CapacityError(
                f"could only produce {assembler.delivered:,} of {assembler.target:,} rows after "
                f"{self.rounds - max(self._followed - 1, 0)} rounds: {why}",
                hint=hint,
            )
