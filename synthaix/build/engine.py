"""The build engine: one object that owns a build's parts and reads top to bottom:

    plan -> generate chunks -> admit (unique, exact, near) -> write -> publish -> manifest

It knows nothing of Prefect: chunks go to a ChunkExecutor and the build's own steps through
Steps (both in `build/executor.py`); `flows/` passes Prefect-backed ones so every step is a
task run. A failure anywhere rolls the dedupe table back and leaves the previous output as it
was (the sink publishes all or nothing).
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import datetime as dt
import json
import logging
import os
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

import pyarrow as pa

from synthaix import progress, stopping
from synthaix.assemble import (
    Assembler,
    Batch,
    RoundPlanner,
    UniqueFilter,
    batch_rows,
)
from synthaix.assemble import tracked_unique_columns as unique_columns
from synthaix.build.executor import ChunkExecutor, Steps
from synthaix.build.manifest import (
    DedupeTable,
    Dropped,
    Manifest,
    RowCounts,
    already_appended,
    appended_slots,
    appended_span,
    chunks_and_rows,
    config_hash,
    new_manifest,
    next_row,
    slot_of,
)
from synthaix.build.shortfall import since, why_short
from synthaix.columns.llm import LlmColumn
from synthaix.config import DatasetConfig, room_problems
from synthaix.constraints import MIN_PASS_RATE
from synthaix.constraints import SAMPLE_ROWS as TRIED_ROWS
from synthaix.dedupe.index import DedupeIndex
from synthaix.errors import CapacityError
from synthaix.generate import Chunk, ChunkResult, dataset_schema
from synthaix.ledger import KEEP_OTHERS, ChunkLedger, clear_ledgers, generation_hash
from synthaix.llm.stats import LlmStats, attach_spent, spent_before, usd
from synthaix.sink import BUILD_KEY, DatasetWriter

SAMPLE_ROWS = 10
log = logging.getLogger("synthaix")


class Build:
    """One build of `config`. `sink` makes the writer (DatasetWriter; a MemorySink for a
    preview); `on_rows` sees every written table; `persistent=False` keeps dedupe in memory."""

    def __init__(
        self,
        config: DatasetConfig,
        executor: ChunkExecutor,
        *,
        steps: Steps | None = None,
        sink: Callable[[DatasetConfig, pa.Schema], Any] = DatasetWriter,
        on_rows: Callable[[pa.Table], None] | None = None,
        persistent: bool = True,
        planner: Callable[[int], Any] | None = None,
        publish: bool = True,
    ) -> None:
        """`planner(first_row)`: the rounds' planner (a child table's; default RoundPlanner).
        `publish=False`: the sink's commit only stages (a table of a multi-table build);
        what follows a publish is left in `after_publish` for the caller to run."""
        self.config = config
        self.executor = executor
        self.steps = steps or Steps()
        self.sink = sink
        self.on_rows = on_rows
        self.persistent = persistent
        self.sample: pa.Table | None = None
        self.llm = LlmStats()  # what this attempt spent
        self.earlier = LlmStats()  # what the interrupted attempts it resumes spent
        self.earlier_attempts: list[str] = []  # their build ids
        self.reused_chunks = 0
        self.reused_rows = 0
        self.rejected: dict[str, int] = {}  # rows each constraint dropped
        self.unique_in_chunks = 0  # rows repeating a unique value, dropped before any request
        self.generated = 0  # rows of the chunks that came back, whatever became of them
        self.batches = 0  # batches admitted; batch N (from 0) is dedupe-N and write-part-N
        self._writes: ThreadPoolExecutor | None = None
        self._written: Future[None] | None = None
        self._planner_factory = planner
        self._planner: Any = None
        self._in_flight: dict[Any, Chunk] = {}  # executor handles of the chunks running
        self._build_id = ""  # this attempt's, once the sink is open
        self._previous: Manifest | None = None  # the output's manifest before this build
        self._slot: str | None = None  # a deployment run's append slot (manifest.slot_of)
        self.publish = publish
        self.after_publish: list[Callable[[], None]] = []
        self._dedupe: DedupeIndex | None = None
        self._opening: Future[None] | None = None
        self._ahead: Callable[[Assembler], list[Chunk]] | None = None

    def run(self) -> Manifest:
        config, steps = self.config, self.steps
        started = time.perf_counter()
        with self.sink(config, dataset_schema(config)) as writer:
            self._build_id = writer.build_id
            fingerprint = config_hash(config)
            identity = {"build_id": writer.build_id, "config_hash": fingerprint}
            writer.part_metadata = {BUILD_KEY: json.dumps(identity).encode()}
            previous = self._previous = writer.previous_manifest()
            self._slot = slot_of(config, fingerprint)
            if (unchanged := already_appended(config, self._slot, previous)) is not None:
                return unchanged
            first_row = next_row(previous, writer.existing.rows, config.mode)
            _check_room(config, previous, writer.existing.rows)
            _say_memory(config, writer.existing.rows + config.rows)
            published = previous.build_id if previous is not None else None
            ledger = self._ledger(first_row, writer.build_id, published)
            dedupe = self._dedupe = DedupeIndex(config, persistent=self.persistent)
            try:
                # Opening the table loads LanceDB (2.5 s on 2 cores, most of it importing the
                # package): the first chunks are generated meanwhile. Nothing is admitted or
                # written before it is open, and a failure to open still stops the build there.
                self._opening = _in_background(
                    steps.run,
                    "open-dedupe",
                    dedupe.open,
                    writer.build_id,
                    previous.dedupe if previous else None,
                    writer.existing.parts,
                )
                prepared = time.perf_counter()
                assembler, planner = self._generate(writer, dedupe, ledger, first_row)
                self._opened()
                table = steps.run("finish-dedupe", dedupe.finish)
                generated = time.perf_counter()
                self._say_resumed()
                seconds = {"prepare": prepared - started, "generate": generated - prepared}
                manifest = self._manifest(writer, assembler, planner, dedupe, table, seconds)
                steps.run(
                    "publish-dataset" if self.publish else "stage-table", writer.commit, manifest
                )
            except BaseException as exc:
                self._roll_back(dedupe, wait=isinstance(exc, Exception))
                if isinstance(exc, Exception):
                    attach_spent(exc, self.llm)  # what this attempt paid: the CLI says it
                raise
            self.after_publish.append(dedupe.committed)
            if self.persistent:  # published: nothing left to resume, of any config
                own = config.name if config._in_tables else None  # a table's ledgers
                self.after_publish.append(partial(clear_ledgers, config.output_dir, own))
            if self.publish:
                self.published()
        return manifest

    def published(self) -> None:
        """What follows a publish (run by the caller when `publish=False`)."""
        for action in self.after_publish:
            action()
        self.after_publish.clear()

    def abort(self) -> None:
        """The caller's publish failed: undo this build's dedupe additions."""
        if self._dedupe is not None:
            self._roll_back(self._dedupe, wait=True)
        self.after_publish.clear()  # as written: the file, the Parquet metadata and this are one

    # -- generate and admit ----------------------------------------------------------------
    def _generate(
        self, writer: Any, dedupe: DedupeIndex, ledger: ChunkLedger | None, first_row: int
    ) -> tuple[Assembler, Any]:
        config = self.config
        unique = unique_columns(config)
        if self._planner_factory is not None:
            planner: Any = self._planner_factory(first_row)
        else:
            planner = RoundPlanner(config, first_row=first_row)
        self._planner = planner
        llm = any(isinstance(c, LlmColumn) for c in config.columns)
        # Constraints validate could not sample are tried on the first round (see below):
        # none of the next one is paid for before they are (not in a preview, whose chunks
        # drop the rows it does not show).
        sampled_late = _sampled_late(config) and getattr(planner, "llm_rows", None) is None
        self._ahead = None
        if llm and isinstance(planner, RoundPlanner):
            ahead = planner.ahead
            self._ahead = lambda a: [] if sampled_late and planner.rounds == 1 else ahead(a)
        seen = writer.existing_values(unique)
        batch = batch_rows(dedupe.dims if dedupe.texts else 0)
        assembler = Assembler(config.rows, UniqueFilter(unique, seen), batch)

        # The drops and rows generated when the last round began: what stopped the build is
        # what that round lost its rows to.
        round_start = [(self._dropped(assembler, dedupe), self.generated)]

        def limits() -> tuple[str, str]:
            before, generated = round_start[0]
            dropped = since(self._dropped(assembler, dedupe), before)
            rows, rejects = self.generated - generated, self.llm.rejected_rows
            key = [c.name for c in config.columns if c.primary_key]
            return why_short(
                dropped,
                rows,
                rejects,
                unique,
                dedupe.keys,
                dedupe.texts,
                key,
                key_set=bool(config.dedupe.key),
                counted=not isinstance(planner, RoundPlanner),  # a child table's counts
            )

        progress.started(config.name, config.rows)
        # Parts are written on a thread of their own, one at a time, while the next batch is
        # generated and admitted: Parquet encoding releases the GIL, so on 2 cores it overlaps
        # generation instead of stalling it (written in line, it held up the flow ~1 s per 1M).
        try:
            with self.executor as executor, ThreadPoolExecutor(1, "synthaix-write") as writes:
                self._writes = writes
                try:
                    while chunks := planner.next_round(assembler, limits):
                        round_start[0] = (self._dropped(assembler, dedupe), self.generated)
                        for batch in self._round(executor, chunks, assembler, ledger):
                            self._admit(batch, assembler, dedupe, writer)
                        if (batch := assembler.flush()) is not None:
                            self._admit(batch, assembler, dedupe, writer)
                        if planner.rounds == 1 and assembler.missing > 0 and sampled_late:
                            _rare_constraints(self._dropped(assembler, dedupe), self.generated)
                    self._wait_written()
                except Exception:
                    self._keep_running_chunks(executor, ledger)
                    raise
                except BaseException:  # a cancelled flow run (SIGTERM), an interrupt
                    stopping.stop(writer.build_id)  # chunks send no further request
                    self._keep_running_chunks(executor, ledger)
                    raise
        finally:
            stopping.forget(writer.build_id)  # its chunks have ended with the executor
        return assembler, planner

    def _round(
        self,
        executor: ChunkExecutor,
        chunks: list[Chunk],
        assembler: Assembler,
        ledger: ChunkLedger | None,
    ) -> Any:
        """Keep `workers` chunks in flight, and at most `workers` more finished early and
        waiting for an earlier one: memory stays bounded by the window, not by the dataset,
        and a slow chunk does not idle the others. Yields batches as they are released.
        Chunks in the ledger (from a killed attempt) are not run again."""
        limit = self.config.runner.workers
        schema = dataset_schema(self.config)
        pending = list(reversed(chunks))
        in_flight = self._in_flight

        def free() -> int:
            return min(limit - len(in_flight), 2 * limit - len(in_flight) - assembler.buffered)

        while pending or in_flight:
            self._opened(wait=False)
            if assembler.missing <= 0:
                pending.clear()  # every row is in: the chunks not started would go unused
            elif not pending and len(in_flight) < limit and self._ahead is not None:
                pending = list(reversed(self._ahead(assembler)))  # a worker would idle
            workers = free()
            while pending and (workers > 0 or not in_flight):
                chunk = pending.pop()
                saved = ledger.load(chunk, schema) if ledger else None
                if saved is not None:
                    self.reused_chunks += 1
                    self.reused_rows += saved.table.num_rows
                    self.generated += chunk.rows
                    yield from assembler.add(chunk.index, _with_parents(chunk, saved))
                    continue
                self._submit(executor, chunk, ledger)
                workers -= 1
            if not in_flight:
                continue
            done = executor.first_done(list(in_flight))
            chunk = in_flight.pop(done)
            try:
                result = executor.result(done)
            except Exception as exc:  # a request given up: what the chunk paid still counts
                self._paid(chunk, spent_before(exc), ledger)
                raise
            self._paid(chunk, result.llm, ledger)
            if ledger is not None:
                ledger.save(chunk, result)
            self.generated += chunk.rows
            for name, count in result.rejected.items():
                self.rejected[name] = self.rejected.get(name, 0) + count
            self.unique_in_chunks += result.unique_repeats
            batches = assembler.add(chunk.index, _with_parents(chunk, result))
            coming = assembler.pending_rows + sum(b.table.num_rows for b in batches)
            if batches and assembler.missing > coming and self._is_open():
                # The next chunk starts before these rows are admitted: the dedupe runs on
                # this thread (0.1-0.3 s a batch), and the freed worker waited for it
                # (measured: 8 of 16 LLM requests in flight meanwhile). Needed even if every
                # row is kept, it is the chunk that would have started right after. Not
                # while the table is still opening: if that fails, no chunk more is paid.
                self._start_early(executor, pending, ledger, free())
            if not pending and in_flight and self._ahead is not None:
                # An LLM round's last chunks: what is released is admitted now, while they
                # still wait for answers, not all at once after the last one (measured: the
                # dedupe of 4 chunks' rows then came after a build's last answer).
                batches += [batch] if (batch := assembler.flush()) is not None else []
            yield from batches

    def _start_early(
        self, executor: ChunkExecutor, pending: list[Chunk], ledger: ChunkLedger | None, free: int
    ) -> None:
        """Submit the next chunks of `pending` to `free` workers, up to one the ledger holds
        (taken from it in the loop, its rows admitted one chunk at a time as before)."""
        while pending and free > 0 and not (ledger is not None and ledger.holds(pending[-1])):
            self._submit(executor, pending.pop(), ledger)
            free -= 1

    def _submit(self, executor: ChunkExecutor, chunk: Chunk, ledger: ChunkLedger | None) -> None:
        """Start `chunk`; its worker logs each request it pays for in the ledger (read if the
        build is killed before the chunk is back)."""
        paid_log = str(ledger.paid_log) if ledger is not None and ledger.paid_log else None
        chunk = dataclasses.replace(chunk, paid_log=paid_log, build=self._build_id)
        self._in_flight[executor.submit(chunk)] = chunk

    def _paid(self, chunk: Chunk, stats: LlmStats, ledger: ChunkLedger | None) -> None:
        """Count what a chunk's requests cost; in the spend log first, so it is kept even if
        saving the chunk's rows fails."""
        if ledger is not None:
            ledger.spent(chunk, stats)
        self.llm += stats

    def _keep_running_chunks(self, executor: ChunkExecutor, ledger: ChunkLedger | None) -> None:
        """The build failed, or is being stopped (its chunks then stop at their next
        request): the chunks still running end anyway (leaving the executor waits for them).
        Count what they spent, and keep the rows of those that finished for the next attempt.
        (The CLI's Ctrl-C exits at once instead; the ledger has each request's spend.)"""
        in_flight, self._in_flight = self._in_flight, {}
        paying = any(isinstance(c, LlmColumn) for c in self.config.columns)
        while paying and in_flight:
            done = executor.first_done(list(in_flight))
            chunk = in_flight.pop(done)
            with contextlib.suppress(Exception):  # the build's own error is the one to raise
                try:
                    result = executor.result(done)
                except Exception as exc:
                    self._paid(chunk, spent_before(exc), ledger)
                    continue
                self._paid(chunk, result.llm, ledger)
                if ledger is not None:
                    ledger.save(chunk, result)

    def _say_resumed(self) -> None:
        """One log line when chunks came from an interrupted build's ledger, or its spend."""
        if not (self.reused_chunks or self.earlier_attempts):
            return
        config, earlier = self.config, self.earlier
        table = f"table {config.name}: " if config._in_tables else ""
        resumed = (
            f"resumed {chunks_and_rows(self.reused_chunks, self.reused_rows)} from the ledger "
            "of an interrupted build"
            if self.reused_chunks
            else "no chunk of the interrupted build had finished (nothing to resume)"
        )
        log.info(
            "%s%s; earlier attempts spent %s requests, %s",
            table,
            resumed,
            f"{earlier.requests:,}",
            usd(earlier, hint=False),
            extra={
                "dataset": config.name,
                "resumed_chunks": self.reused_chunks,
                "resumed_rows": self.reused_rows,
                "earlier_requests": earlier.requests,
                "earlier_cost_usd": earlier.cost_usd,
            },
        )

    def _admit(self, batch: Batch, assembler: Assembler, dedupe: DedupeIndex, writer: Any) -> None:
        """Drop exact and near duplicates, then stage the rest as a part."""
        table, parents = batch.table, batch.parents
        self.batches += 1
        self._opened()
        # A child table: of the rows no check drops, those their parents' counts still take.
        fits = None if parents is None else (lambda rows: self._planner.fits(parents[rows]))
        args = (table, batch.row_ids, assembler.missing, batch.hashes, fits)
        if dedupe.enabled:
            table = self.steps.run("dedupe", dedupe.admit, *args, number=self.batches - 1)
        else:
            table = dedupe.admit(*args)
        if parents is not None:  # count each parent's children
            self._planner.delivered(parents[dedupe.kept])
        if not table.num_rows:
            return
        self._wait_written()  # one part in flight: memory stays bounded; a failure stops here
        assert self._writes is not None
        step = contextvars.copy_context().run  # the flow run's context, for a task run
        self._written = self._writes.submit(
            step, self.steps.run, "write-part", writer.write, table, number=self.batches - 1
        )
        assembler.accepted(table.num_rows)
        if self.sample is None:
            self.sample = table.slice(0, SAMPLE_ROWS)
        if self.on_rows is not None:
            self.on_rows(table)
        progress.advanced(table.num_rows)

    def _is_open(self) -> bool:
        """The dedupe table is open (raising what opening it raised, if it failed)."""
        if self._opening is not None and not self._opening.done():
            return False
        self._opened(wait=False)
        return True

    def _opened(self, wait: bool = True) -> None:
        """Wait for the dedupe table to be open, raising what opening it raised. `wait=False`:
        only raise, if it failed already (no more chunks are paid for a build that cannot
        admit their rows)."""
        if self._opening is not None and (wait or self._opening.done()):
            self._opening.result()

    def _roll_back(self, dedupe: DedupeIndex, wait: bool) -> None:
        """Put the dedupe table back, after its opening is over (the two would race). An
        interrupt (Ctrl-C) does not wait for an open that may hang on a remote store: the
        rollback then runs when the open ends."""
        opening = self._opening
        if opening is not None and not opening.done() and not wait:
            opening.add_done_callback(lambda _: dedupe.abort())
            return
        with contextlib.suppress(Exception):
            self._opened()  # its failure is not the one to report
        dedupe.abort()

    def _wait_written(self) -> None:
        if self._written is not None:
            self._written.result()
            self._written = None

    # -- helpers ---------------------------------------------------------------------------
    def _manifest(
        self,
        writer: Any,
        assembler: Assembler,
        planner: Any,
        dedupe: DedupeIndex,
        table: DedupeTable | None,
        seconds: dict[str, float],
    ) -> Manifest:
        dropped = self._dropped(assembler, dedupe)
        generated = self.generated
        rows = RowCounts(
            delivered=assembler.delivered,
            total=writer.existing.rows + assembler.delivered,
            generated=generated,
            unused=generated - assembler.delivered - dropped.total,
            next_row=planner.next_row,
        )
        return new_manifest(
            self.config,
            writer.build_id,
            rows=rows,
            dropped=dropped,
            dedupe=table,
            chunks=planner.next_index,
            resumed_chunks=self.reused_chunks,
            resumed_rows=self.reused_rows,
            fill_rounds=planner.rounds - 1,
            llm=self.llm,
            llm_total=self.earlier + self.llm,
            earlier_attempts=self.earlier_attempts,
            embeddings=dedupe.embedding_spend,
            seconds={stage: round(value, 3) for stage, value in seconds.items()},
            outputs={kind: str(path) for kind, path in writer.output_paths().items()},
            slots=appended_slots(
                self._slot,
                self._previous.slots if self._previous else None,
                writer.build_id,
                self.config.mode,
            ),
            as_of_span=appended_span(self.config.as_of, self._previous, self.config.mode),
        )

    def _dropped(self, assembler: Assembler, dedupe: DedupeIndex) -> Dropped:
        return Dropped(
            invalid=self.llm.rejected_rows.get("gave_up", 0),
            unique_value=assembler.dropped_duplicates + self.unique_in_chunks,
            exact_duplicate=dedupe.stats.exact,
            near_duplicate=dedupe.stats.near,
            constraint=dict(self.rejected),
            # Rows that broke a constraint or got no valid LLM value never reach the assembler.
            in_chunks=self.generated - assembler.generated - self.unique_in_chunks,
        )

    def _ledger(self, first_row: int, attempt: str, published: str | None) -> ChunkLedger | None:
        """The chunk ledger of this config (None: nothing to resume); what the interrupted
        attempts spent goes to `earlier`. `published`: the build the output holds."""
        config = self.config
        has_llm = any(isinstance(c, LlmColumn) for c in config.columns)
        if not (self.persistent and has_llm and config.runner.resume):
            return None
        relations = config._relations
        salt = relations.fingerprint if relations is not None else ""  # the related rows
        table = config.name if config._in_tables else None
        ledger = ChunkLedger(config.output_dir, generation_hash(config) + salt, first_row, table)
        as_of = config.as_of.isoformat() if config.as_of else None
        if left := ledger.open(attempt, published, as_of):  # said now: a resume takes a while
            within = f"table {config.name}: " if config._in_tables else ""
            log.info(
                "%sresuming an interrupted build: its ledger holds %s chunks, not asked for again",
                within,
                f"{left:,}",
            )
        earlier = ledger.earlier  # priced now: a price is not part of the ledger's key
        cost = config.provider.cost(earlier.prompt_tokens, earlier.completion_tokens)
        unpriced = earlier.tokens if cost is None else 0
        self.earlier = earlier.model_copy(
            update={"cost_usd": cost or 0.0, "unpriced_tokens": unpriced}
        )
        self.earlier_attempts = ledger.earlier_attempts
        for chunks, theirs, written in ledger.others:
            _say_not_resumed(config, chunks, theirs, as_of, written)
        for chunks, theirs, written in ledger.dropped:
            at = f", as_of {theirs}" if theirs else ""
            text = (
                f"removed an older interrupted build's ledger (last written {_utc(written)}"
                f"{at}): {chunks:,} chunks"
            )
            progress.warn(text)
        return ledger


def _check_room(config: DatasetConfig, previous: Manifest | None, stored: int) -> None:
    """An append whose unique values or dedupe keys cannot fit beside the rows there is
    refused before anything is generated (it failed after all its rounds). Only when every
    stored row is the last build's, made by the same column: rows of earlier builds may hold
    values outside the column's range now, which take none of its values."""
    if config.mode != "append" or not stored or previous is None:
        return
    if previous.rows.delivered != stored:  # rows of earlier builds too
        return
    try:
        before = {c.name: c for c in previous.dataset_config().columns}
    except Exception:  # a manifest of another version: the rounds will tell
        return
    unchanged = {c.name for c in config.columns if before.get(c.name) == c}
    if problems := room_problems(config, stored, unchanged):
        raise CapacityError(
            f"cannot append {config.rows:,} row{'s' * (config.rows != 1)} to {config.name}: "
            + "; ".join(problems),
            hint="append fewer rows, or widen those columns",
        )


# A row's exact-dedupe key, DuckDB load, and value of each unique column checked (README,
# measured: 0.43 GB for 5M short texts).
KEY_BYTES, LOAD_BYTES, UNIQUE_BYTES = 40, 75, 85


def _say_memory(config: DatasetConfig, rows: int) -> None:
    """A note when what grows with the rows (exact-dedupe keys, the DuckDB load) would pass
    most of this machine's memory: a `rows` with one zero too many ran for hours before the
    worker ran out of memory."""
    from synthaix.dedupe.keys import key_columns

    unique = len(unique_columns(config))
    per_row = (
        (KEY_BYTES if key_columns(config) else 0)
        + (LOAD_BYTES if "duckdb" in config.output.formats else 0)
        + UNIQUE_BYTES * unique
    )
    memory = _memory()
    if memory is None:
        return
    if rows * per_row <= 0.8 * memory:
        return
    checked = f", each unique column's values ~{UNIQUE_BYTES}" if unique else ""
    text = (
        f"{config.name}: {rows:,} rows may need ~{rows * per_row / 2**30:,.0f} GiB of memory "
        f"(exact-dedupe keys ~{KEY_BYTES} bytes a row, the DuckDB load ~{LOAD_BYTES}{checked}) "
        f"and this machine has {memory / 2**30:,.0f} GiB: lower rows, or drop what grows with "
        "them (dedupe: {exact: false}; output: {formats: [parquet]}; unique)"
    )
    progress.warn(text)


def _memory() -> int | None:
    """Bytes of memory this process may use: the machine's, or its container's limit (cgroup
    v2 `memory.max`, as a Kubernetes worker has), whichever is less."""
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not a POSIX system
        return None
    with contextlib.suppress(OSError, ValueError):
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit != "max":
            memory = min(memory, int(limit))
    return memory


def _utc(unix: float) -> str:
    return f"{dt.datetime.fromtimestamp(unix, dt.UTC):%Y-%m-%d %H:%M} UTC"


def _say_not_resumed(
    config: DatasetConfig, chunks: int, as_of: str | None, ours: str | None, written: float
) -> None:
    """An interrupted build of another config (whose relative times stood at `as_of`; this
    one's at `ours`; its ledger last written at `written`) left chunks this one cannot reuse:
    say so, and how to resume it (its ledger stays until this build publishes). Each ledger
    says when it was written: two of them read as one note twice."""
    table = f"table {config.name}: " if config._in_tables else ""
    how = (
        f"build again with --as-of {as_of} (its relative times stood then)"
        if as_of and as_of != ours
        else "build again with its config, seed and SynthAIx version"
    )
    text = (
        f"{table}an unfinished (failed or interrupted) build of another config (last written "
        f"{_utc(written)}) left {chunks:,} chunk{'s' if chunks != 1 else ''} in its ledger; "
        f"they are not reused. To resume it instead, stop this one and {how}; the ledger is "
        f"removed when this build publishes (and the oldest of {KEEP_OTHERS + 1} such, when "
        "another build starts)"
    )
    progress.warn(text)


def _in_background(fn: Callable[..., Any], *args: Any) -> Future[Any]:
    """`fn(*args)` on a thread of its own, in the caller's context (a flow run's, so a step
    becomes a task run of it)."""
    pool = ThreadPoolExecutor(1, "synthaix-background")
    try:
        return pool.submit(contextvars.copy_context().run, fn, *args)
    finally:
        pool.shutdown(wait=False)


def _with_parents(chunk: Chunk, result: ChunkResult) -> ChunkResult:
    """A child table's result knows each row's parent (rows may have been left out)."""
    if chunk.parents is not None:
        result.parents = chunk.parents[result.row_ids - chunk.first_row]
    return result


def _sampled_late(config: DatasetConfig) -> bool:
    """Whether `validate` could not try the constraints on sampled rows: a table that reads
    related rows, or a constraint that reads an llm column (null in a sample: it passes)."""
    from synthaix.sqlexpr import checked

    llm = {c.name for c in config.columns if isinstance(c, LlmColumn)}
    reads = {name for c in config.constraints for name in checked(c.check)[1]}
    return bool(config._related) or bool(llm & reads)


def _rare_constraints(dropped: Dropped, generated: int) -> None:
    """What `validate` tries on sampled rows, tried on the first round's where it cannot (see
    `_sampled_late`): a constraint holding for under MIN_PASS_RATE of them, or
    the constraints together, stops the build now, not after rounds that cannot make it."""
    if generated < TRIED_ROWS or not dropped.constraint:
        return
    rates = {name: 1 - rows / generated for name, rows in dropped.constraint.items()}
    rare = [f"'{name}' ({rate:.1%})" for name, rate in rates.items() if rate < MIN_PASS_RATE]
    together = 1 - dropped.broke_constraints / generated
    if rare:
        what = f"the constraint{'s' if len(rare) > 1 else ''} {', '.join(rare)}"
    elif together < MIN_PASS_RATE and len(rates) > 1:
        what = f"the constraints together ({together:.1%}; each holds alone)"
    else:
        return
    raise CapacityError(
        f"{what} held for under {MIN_PASS_RATE:.0%} of the {generated:,} rows of the first "
        "round: the rounds to come cannot make the rows",
        hint="relax the constraint, or build the relation into the columns (after/before "
        "offsets, parameters by a column, a sql column)",
    )
