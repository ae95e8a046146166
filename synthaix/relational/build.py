"""A multi-table build: each table, parents first, by the single-table engine; then the late
columns (aggregates over children, self references); then one publish of every table.

    for each table in build order:
        counts per parent (child tables) -> related rows for its chunks -> Build (staged only)
    late columns -> dataset manifest -> publish (Parquet + DuckDB, all or nothing)

A failure anywhere leaves the previous output as it was and undoes every table's dedupe
additions; chunk ledgers (tables with llm columns) stay until the publish, so a killed build
resumes where it stopped, its earlier tables included.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from synthaix.build.engine import Build
from synthaix.build.executor import ChunkExecutor, Steps
from synthaix.build.manifest import (
    already_appended,
    appended_slots,
    secrets_of,
    slot_of,
)
from synthaix.columns.reference import (
    AggregateColumn,
    ColumnWeights,
    ReferenceColumn,
    ZipfWeights,
)
from synthaix.columns.refs import resolve
from synthaix.config import DatasetConfig
from synthaix.errors import SynthaixError
from synthaix.ledger import generation_hash
from synthaix.llm.stats import LlmStats, attach_spent
from synthaix.relational.config import Alias, CountConfig, RelationalConfig, TablePlan
from synthaix.relational.context import (
    RelatedRows,
    SiblingRows,
    Stored,
    TableRelations,
    clear_cache,
    crc,
)
from synthaix.relational.manifest import (
    DatasetManifest,
    new_dataset_manifest,
    relational_hash,
)
from synthaix.relational.plan import ChildPlanner, draw_counts, reconcile
from synthaix.relational.sink import RelationalWriter, TableOutput, check_same_tables
from synthaix.sqlexpr import checked

Executors = Callable[[DatasetConfig], ChunkExecutor]


class DatasetBuild:
    """One build of a multi-table `config`. `executors(table_config)` gives each table its
    chunk executor; `table_step(name)` wraps each table's build (a Prefect task run);
    `on_table(table_config)`, when its rows are known, gives the hook that sees them written."""

    def __init__(
        self,
        config: RelationalConfig,
        executors: Executors,
        *,
        steps: Steps | None = None,
        table_step: Callable[[str, Callable[[], Any]], Any] | None = None,
        on_table: Callable[[DatasetConfig], Callable[[pa.Table], None]] | None = None,
    ) -> None:
        self.config = config
        self.executors = executors
        self.steps = steps or Steps()
        self.table_step = table_step or (lambda name, run: run())
        self.on_table = on_table
        self.builds: dict[str, Build] = {}
        self.samples: dict[str, pa.Table | None] = {}

    def run(self) -> DatasetManifest:
        config = self.config
        started = time.perf_counter()
        secrets = secrets_of(config.plan(config.order[0]).config)
        fingerprint = relational_hash(config, secrets)
        try:
            with RelationalWriter(config) as writer:
                previous = writer.previous_manifest() if config.mode == "append" else None
                check_same_tables(config, previous, writer.root)
                slot = slot_of(config, fingerprint)
                if (unchanged := already_appended(config, slot, previous)) is not None:
                    return unchanged
                try:
                    manifests = {}
                    for name in config.order:
                        with _named(name):
                            table_config, planner = self._prepare(name, writer)
                            build = Build(
                                table_config,
                                self.executors(table_config),
                                steps=self.steps.within(name),
                                sink=writer.sink,
                                on_rows=self.on_table and self.on_table(table_config),
                                planner=planner,
                                publish=False,
                            )
                            self.builds[name] = build
                            manifests[name] = self.table_step(name, build.run)
                            self.samples[name] = build.sample
                    built = time.perf_counter()
                    self.steps.run("late-columns", fill_late_columns, config, writer)
                    manifest = new_dataset_manifest(
                        config,
                        writer.build_id,
                        secrets,
                        order=config.order,
                        tables=manifests,
                        seconds={
                            "tables": round(built - started, 3),
                            "total": round(time.perf_counter() - started, 3),
                        },
                        outputs={k: str(v) for k, v in writer.output_paths().items()},
                        slots=appended_slots(
                            slot,
                            previous.slots if previous else None,
                            writer.build_id,
                            config.mode,
                        ),
                    )
                    outputs = [_table_output(config, config.plan(n)) for n in config.order]
                    self.steps.run("publish-dataset", writer.commit, manifest.to_json(), outputs)
                except BaseException as exc:
                    for build in self.builds.values():
                        build.abort()
                    if isinstance(exc, Exception):  # what every table's attempt paid
                        attach_spent(exc, sum((b.llm for b in self.builds.values()), LlmStats()))
                    raise
                for build in self.builds.values():  # under the output's lock, as for one table
                    build.published()
        finally:
            clear_cache()
        return manifest

    # -- a table's plan -----------------------------------------------------------------------
    def _prepare(
        self, name: str, writer: RelationalWriter
    ) -> tuple[DatasetConfig, Callable[[int], ChildPlanner] | None]:
        plan = self.config.plan(name)
        spec = plan.spec
        planner = None
        rows = spec.rows or 0
        if spec.parent is not None:
            assert spec.count is not None or spec.rows is not None
            counts = self._counts(plan, writer)
            rows = int(counts.sum())
            chunk_size = plan.config.chunk_size

            def planner(first_row: int, counts: np.ndarray = counts) -> ChildPlanner:
                return ChildPlanner(counts, chunk_size, first_row)

        table_config = plan.config.model_copy(update={"rows": rows})
        if plan.aliases or spec.siblings:
            table_config._relations = self._relations(plan, writer)
        return table_config, planner

    def _counts(self, plan: TablePlan, writer: RelationalWriter) -> np.ndarray:
        spec = plan.spec
        parent = writer.tables[spec.parent]  # type: ignore[index]
        new_parents = sum(pq.ParquetFile(p).metadata.num_rows for p in parent.parts)
        if new_parents == 0 and self._kept(spec.name):  # its parents' rows are all stored
            return np.zeros(0, dtype=np.int64)
        seed = np.random.SeedSequence([self.config.seed, crc(spec.name), parent.existing.rows])
        rng = np.random.default_rng(seed)
        count = spec.count
        if count is None:  # rows only: shared out as evenly as chance allows
            mean = (spec.rows or 0) / max(new_parents, 1)
            count = CountConfig(distribution="poisson", mean=mean)
        by = None
        if count.by is not None:
            column = count.by.removeprefix(f"{spec.parent}.")
            by = _read(parent.parts, [column])[column]
        counts, lows, highs = draw_counts(count, new_parents, rng, by)
        if spec.rows is not None:
            counts = reconcile(counts, spec.rows, lows, highs, rng)
        return counts

    def _kept(self, name: str) -> bool:
        """Whether the table descends from a table an append keeps (`rows: 0`): it gets no
        new parent, so no child, whatever its total says."""
        spec = self.config.table(name)
        while spec.parent is not None:
            spec = self.config.table(spec.parent)
        return spec.rows == 0

    def _relations(self, plan: TablePlan, writer: RelationalWriter) -> TableRelations:
        config = self.config
        reads = related_reads(plan)
        staging = writer.staging
        fields = {a: tuple(sorted(f for n, f in reads if n == a)) for a in plan.aliases}
        aliases = []
        for alias in plan.aliases.values():
            target = writer.tables[alias.table]
            columns = set(fields[alias.name]) | {alias.key}
            weights: Any = ("uniform",)
            nullable = 0.0
            if alias.kind == "lookup":
                column = next(c for c in plan.config.columns if c.name == alias.column)
                assert isinstance(column, ReferenceColumn)
                nullable = column.nullable
                if isinstance(column.weights, ZipfWeights):
                    weights = ("zipf", float(column.weights.zipf))
                elif isinstance(column.weights, ColumnWeights):
                    weights = ("column", column.weights.column)
                    columns.add(column.weights.column)
            map_path = None
            if alias.kind == "through":
                assert alias.via is not None
                via_table = plan.aliases[alias.via].table
                path = staging / f"context-{plan.spec.name}_{alias.name}.npy"
                np.save(path, _row_map(config, writer, via_table, alias.name))
                map_path = str(path)
            stored = Stored(tuple(str(p) for p in target.all_parts), tuple(sorted(columns)))
            offset = target.existing.rows if alias.kind == "parent" else 0
            aliases.append(
                RelatedRows(
                    alias.name,
                    alias.kind,
                    stored,
                    alias.column,
                    weights,
                    alias.via,
                    map_path,
                    offset,
                    nullable,
                )
            )
        siblings = tuple(
            _siblings(config, plan, writer, index) for index in range(len(plan.spec.siblings))
        )
        salt = related_rows_hash(config, plan.spec.name)
        return TableRelations(tuple(aliases), siblings, salt, fields)


@contextlib.contextmanager
def _named(table: str) -> Iterator[None]:
    """A table's failure says which table: a dataset has several."""
    try:
        yield
    except SynthaixError as exc:
        if exc.args and isinstance(exc.args[0], str) and not exc.args[0].startswith("table "):
            exc.args = (f"table {table}: {exc.args[0]}", *exc.args[1:])
        raise


def related_reads(plan: TablePlan) -> set[tuple[str, str]]:
    """(alias, field) pairs the table's columns and constraints read."""
    config = plan.config
    available = set(config._related) | set(config._names) | {c.name for c in config.columns}
    refs: set[str] = set()
    for column in config.columns:
        refs |= column.references()
    for constraint in config.constraints:
        refs |= set(checked(constraint.check)[1])
    found = set()
    for ref in refs:
        name = resolve(ref, available)
        if name is not None and name in config._related:
            alias, _, field = name.partition(".")
            found.add((alias, field))
    return found


def _read(parts: list[Path], columns: list[str]) -> pa.Table:
    if not parts:
        return pa.table({c: pa.array([]) for c in columns})
    return pa.concat_tables([pq.read_table(p, columns=columns) for p in parts])


def _row_map(
    config: RelationalConfig, writer: RelationalWriter, table: str, alias: str
) -> np.ndarray:
    """For each stored row of `table`, the row of its related `alias` (-1: a null key)."""
    inner: Alias = config.plan(table).aliases[alias]
    if inner.kind == "through":
        assert inner.via is not None
        via = _row_map(config, writer, table, inner.via)
        further = _row_map(config, writer, config.plan(table).aliases[inner.via].table, alias)
        return np.where(via >= 0, further[np.maximum(via, 0)], -1)
    keys = _read(writer.tables[table].all_parts, [inner.column])[inner.column]
    target = _read(writer.tables[inner.table].all_parts, [inner.key])[inner.key]
    found = pc.index_in(keys, value_set=target.combine_chunks())
    return pc.fill_null(found, -1).to_numpy(zero_copy_only=False).astype(np.int64)


def _siblings(
    config: RelationalConfig, plan: TablePlan, writer: RelationalWriter, index: int
) -> SiblingRows:
    """The list of sibling rows of every parent row, aligned with the parent's stored rows."""
    import duckdb

    spec = plan.spec.siblings[index]
    other = config.plan(spec.table)
    link = other.spec.parent_link()
    assert link is not None and plan.spec.parent is not None
    parent = writer.tables[plan.spec.parent]
    keys = _read(parent.all_parts, [link.key]).rename_columns(["k"])
    keys = keys.append_column("i", pa.array(np.arange(keys.num_rows), pa.int64()))
    fields = ", ".join(f"{_q(c)} := {_q(c)}" for c in spec.columns)
    order = ""
    if spec.order is not None:
        order = f" ORDER BY {checked(spec.order[0])[0]} {spec.order[1]}"
    parts = [str(p) for p in writer.tables[spec.table].all_parts]
    con = duckdb.connect()
    try:
        con.register("parent_keys", keys)
        table = con.sql(
            f"WITH s AS (SELECT {_q(link.name)} AS k, list(struct_pack({fields}){order}) AS v "
            f"FROM read_parquet($parts) GROUP BY 1) "
            f"SELECT coalesce(s.v[1:{spec.limit}], []) AS value FROM parent_keys p "
            "LEFT JOIN s ON p.k = s.k ORDER BY p.i",
            params={"parts": parts},
        ).to_arrow_table()
    finally:
        con.close()
    path = writer.staging / f"context-{plan.spec.name}_{spec.name}.parquet"
    pq.write_table(table, path)
    return SiblingRows(spec.name, str(path), parent.existing.rows)  # chunks number new parents


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _table_output(config: RelationalConfig, plan: TablePlan) -> TableOutput:
    foreign = [
        (c.name, c.table, c.key) for c in plan.config.columns if isinstance(c, ReferenceColumn)
    ]
    referenced = {
        c.key for other in config.tables for _, c in other.references() if c.table == plan.spec.name
    }
    primary = plan.spec.primary_key
    unique = sorted(referenced - ({primary[0]} if len(primary) == 1 else set()))
    return TableOutput(plan.spec.name, [], primary, foreign, unique)


# -- late columns ----------------------------------------------------------------------------
def fill_late_columns(config: RelationalConfig, writer: RelationalWriter) -> None:
    """Aggregates over each table's children and self references, written into its new parts."""
    for name in config.order:
        plan = config.plan(name)
        late = [c for c in plan.config.columns if c.is_late]
        table_writer = writer.tables[name]
        if not late or not table_writer.parts:
            continue
        values: dict[str, pa.Array] = {}
        for column in late:
            if isinstance(column, AggregateColumn):
                values[column.name] = _aggregate(config, writer, name, column)
            elif isinstance(column, ReferenceColumn):
                values[column.name] = _self_reference(config, writer, name, column)
        start = 0
        for part in table_writer.parts:
            table = pq.read_table(part)
            rows = table.num_rows
            for column_name, array in values.items():
                i = table.schema.get_field_index(column_name)
                table = table.set_column(i, table.schema.field(i), array.slice(start, rows))
            start += rows
            _rewrite(part, table)


def _rewrite(part: Path, table: pa.Table) -> None:
    temporary = part.with_name(part.name + ".tmp")
    pq.write_table(table, temporary, compression="zstd")
    temporary.replace(part)


def _aggregate(
    config: RelationalConfig, writer: RelationalWriter, name: str, column: AggregateColumn
) -> pa.Array:
    from synthaix.sqlexpr import aggregate_by, checked_aggregate

    child = config.plan(column.of)
    link = child.spec.parent_link()
    assert link is not None
    reads = sorted(set(checked_aggregate(column.expr)[1]) | {link.name})
    rows = _read(writer.tables[column.of].all_parts, reads)
    grouped = aggregate_by(rows, link.name, column.term)
    keys = _read(writer.tables[name].parts, [link.key])[link.key]
    found = pc.index_in(keys, value_set=grouped.column(0).combine_chunks())
    value = grouped.column(1).combine_chunks().take(found)
    if column.default is not None:
        default = column.default
        if pa.types.is_decimal(value.type) and not isinstance(default, str | bool):
            default = Decimal(str(default))  # an int64 cannot always cast to decimal(p, s)
        value = pc.fill_null(value, pa.scalar(default, value.type))
    return value.cast(column.arrow_type())


def _self_reference(
    config: RelationalConfig, writer: RelationalWriter, name: str, column: ReferenceColumn
) -> pa.Array:
    """Each new row's reference: a row before it (so the references never loop), uniformly;
    a row the column left null is a root (as is the very first row)."""
    table_writer = writer.tables[name]
    keys = _read(table_writer.all_parts, [column.key])[column.key].combine_chunks()
    placeholders = _read(table_writer.parts, [column.name])[column.name]
    before = table_writer.existing.rows
    rows = len(placeholders)
    seed = np.random.SeedSequence([config.seed, crc(name), crc(column.name), before])
    position = before + np.arange(rows)
    earlier = np.floor(np.random.default_rng(seed).random(rows) * position).astype(np.int64)
    roots = placeholders.is_null().to_numpy(zero_copy_only=False) | (position == 0)
    value = keys.take(pa.array(np.where(roots, 0, earlier), pa.int64()))
    return pc.if_else(pa.array(roots), pa.nulls(rows, value.type), value)


def related_rows_hash(config: RelationalConfig, name: str) -> str:
    """What the rows a table reads depend on, for its chunk ledger's key: each table it reads,
    and theirs in turn, as its own ledger sees it (generation_hash: not the runner, limits or
    prices), and how many rows each makes. Not the whole dataset: an edited prompt of one
    table, more workers or a corrected price re-paid every other child table's chunks."""
    specs = {t.name: t for t in config.tables}
    read, todo = set(), [name]
    while todo:
        if (table := todo.pop()) not in read:
            read.add(table)
            todo += config.plan(table).depends
    parts = [
        [
            table,
            generation_hash(config.plan(table).config),
            specs[table].model_dump(mode="json", include={"rows", "count", "parent"}),
        ]
        for table in sorted(read)
    ]
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()
