"""The report of a multi-table dataset (`tables:`), from the published Parquet parts (or the
DuckDB tables, when the output has no Parquet): each table profiled and checked as a
single-table dataset, then what holds between the tables, verified by querying the data,
never by trusting the generator:

- keys: primary keys (single or composite) have no duplicates and no nulls;
- references: every non-null foreign key (self references too) names an existing row, self
  references never loop, a lookup weighted by a column names no row it weighs 0;
- children per parent: within the declared count's [min, max] (parents without children
  included), mean near the declared one (per `by` value), total equal to `rows` if set;
- aggregates: equal to the aggregate recomputed over the children (or the default);
- relations and constraints of columns reading related rows (`customers.signup_date`), over
  the table joined with the rows it reads.

All SQL runs on a DuckDB that may read the dataset's rows and nothing else: it holds config
expressions. Each table is a view `t."<table>"`; relations see theirs as `data`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow.compute as pc

from synthaix.build.manifest import Manifest, chunks_and_rows, cost_lines, resume_lines
from synthaix.columns.reference import AggregateColumn, ColumnWeights, ReferenceColumn
from synthaix.files import REPORT_MARK, write_text_atomic
from synthaix.relational.config import CountParams, RelationalConfig, TableConfig
from synthaix.relational.counts import count_moments, params_of
from synthaix.relational.manifest import DatasetManifest, read_dataset_manifest
from synthaix.report.checks import (
    Check,
    OwnNulls,
    duckdb_copy,
    key_violations,
    manifest_row_count,
    own_nulls,
    reshaped,
    run_checks,
    significant,
    spanned,
)
from synthaix.report.html import (
    CSS,
    _checks_table,
    _column_card,
    _counts,
    _rows,
    _sample_table,
    cost_kpis,
    duplicates,
    kpi,
)
from synthaix.report.profile import (
    DatasetProfile,
    Source,
    database_source,
    duplicate_key,
    profile_source,
    sandboxed,
)
from synthaix.report.relations import column_relations
from synthaix.sqlexpr import quote

ROW = '"this row"'  # the table's own rows in a join: no alias (an identifier) can be this


@dataclass
class TableCheck:
    """One check of one table: `failed` counts the rows (keys, parents, groups) breaking
    `relation`; a profile check that fails counts 1. Zero means it holds."""

    table: str
    column: str  # "" for the table as a whole
    name: str
    relation: str
    failed: int
    observed: str

    @property
    def passed(self) -> bool:
        return self.failed == 0


@dataclass
class TableSection:
    name: str
    manifest: Manifest
    profile: DatasetProfile
    column_checks: list[Check]  # the single-table report's checks
    checks: list[TableCheck]  # keys, references, counts, aggregates, relations


@dataclass
class TablesReport:
    manifest: DatasetManifest
    sections: list[TableSection]

    @property
    def checks(self) -> list[TableCheck]:
        """Every check of every table, as data."""
        out = []
        for s in self.sections:
            out += [
                TableCheck(s.name, c.column, c.name, c.expected, int(not c.passed), c.observed)
                for c in s.column_checks
            ]
            out += s.checks
        return out


def check_tables(output_dir: Path) -> list[TableCheck]:
    """Every check of the multi-table dataset built in `output_dir`."""
    return tables_report(output_dir).checks


def tables_report(output_dir: Path) -> TablesReport:
    manifest = read_dataset_manifest(output_dir)
    config = manifest.dataset_config()
    sources = {name: table_source(config, output_dir, name) for name in config.order}
    relational, nulls = relational_checks(config, sources, manifest)
    sections = []
    for name in config.order:
        plan = config.plan(name)
        profile = profile_source(sources[name], duplicate_key(plan.config))
        table = manifest.tables.get(name)
        column_checks = run_checks(plan.config, profile, table, nulls.get(name, {}))
        column_checks = [c for c in column_checks if c.name != "primary key"]  # see _key
        if plan.spec.parent is not None or plan.spec.rows == 0:  # its rows follow the
            # parents' counts (checked below), or an append kept them: the table holds what
            # its manifest says
            column_checks = [c for c in column_checks if c.name != "row count"]
            if table is not None:
                column_checks.insert(0, manifest_row_count(profile.rows, table))
        if (copy := duckdb_copy(config, output_dir, name, sources[name])) is not None:
            column_checks.append(copy)
        mine = [c for c in relational if c.table == name]
        sections.append(TableSection(name, manifest.tables[name], profile, column_checks, mine))
    return TablesReport(manifest, sections)


def table_source(config: RelationalConfig, output_dir: Path, table: str) -> Source:
    """The rows of `table`, as the dataset's user reads them (see `profile.dataset_source`)."""
    if "parquet" not in config.output.formats:
        return database_source(config, output_dir, table)
    folder = (output_dir / ".current" / table).resolve()
    parts = tuple(str(p) for p in sorted(folder.glob("part-*.parquet")))
    if not parts:
        raise FileNotFoundError(f"{output_dir} has no built table {table} (no Parquet parts)")
    return Source(parts)


def _tables(
    sources: dict[str, Source],
) -> tuple[duckdb.DuckDBPyConnection, dict[str, dict[str, str]]]:
    """A sandboxed DuckDB with each table a view `t."<table>"`, and each table's column types."""
    con = sandboxed(sources.values())
    con.execute("CREATE SCHEMA t")
    for name, source in sources.items():
        con.execute(f"CREATE VIEW t.{quote(name)} AS SELECT * FROM {source.sql}")
    types = {
        name: {c: kind for c, kind, *_ in con.execute(f"DESCRIBE t.{quote(name)}").fetchall()}
        for name in sources
    }
    return con, types


def relational_checks(
    config: RelationalConfig,
    sources: dict[str, Source],
    manifest: DatasetManifest | None = None,
) -> tuple[list[TableCheck], dict[str, OwnNulls]]:
    """The checks between tables, over these rows of each table; and each table's derived
    columns' own nulls (see `checks.own_nulls`), over the table joined with the related rows
    it reads (their nulls carry through, e.g. a lookup that is null). `manifest`: the build's
    (what it redrew reshapes columns, see `checks.reshaped`)."""
    con, types = _tables(sources)
    with con:
        checks: list[TableCheck] = []
        nulls: dict[str, OwnNulls] = {}
        for name in config.order:
            spec = config.table(name)
            checks += _key(con, spec)
            for _, column in spec.references():
                checks.append(_reference(con, name, column))
                if column.table == name:
                    checks.append(_loops(con, name, column))
                lookup = column.table != name and column is not spec.parent_link()
                if lookup and isinstance(column.weights, ColumnWeights):  # else not drawn by it
                    checks.append(_unweighted(con, name, column, column.weights.column))
            checks += _children(con, config, spec)
            checks += [
                _aggregate(con, config, name, c, types[name][c.name])
                for c in spec.columns
                if isinstance(c, AggregateColumn)
            ]
            _data_view(con, config, name, types)  # one view of each table for both below
            table = manifest.tables.get(name) if manifest is not None else None
            own = config.plan(name).config
            checks += _relations(con, config, name, reshaped(own, table), spanned(own, table))
            nulls[name] = own_nulls(con, config.plan(name).config)
    return checks, nulls


def _one(
    con: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | None = None
) -> tuple[Any, ...]:
    (row,) = con.execute(sql, params or []).fetchall()  # all: the result is finished
    return row


def _key(con: duckdb.DuckDBPyConnection, spec: TableConfig) -> list[TableCheck]:
    if not spec.primary_key:
        return []
    table = f"t.{quote(spec.name)}"
    duplicates, nulls = key_violations(con, table, spec.primary_key)
    (rows,) = _one(con, f"SELECT count(*) FROM {table}")
    observed = f"{duplicates:,} duplicate and {nulls:,} null keys in {rows:,} rows"
    relation = f"({', '.join(spec.primary_key)}) unique and not null"
    return [TableCheck(spec.name, "", "primary key", relation, duplicates + nulls, observed)]


def _reference(con: duckdb.DuckDBPyConnection, table: str, column: ReferenceColumn) -> TableCheck:
    col, key = quote(column.name), quote(column.key)
    orphans, keys = _one(
        con,
        f"SELECT (SELECT count(*) FROM (SELECT {col} FROM t.{quote(table)} WHERE {col} IS NOT "
        f"NULL) AS c ANTI JOIN t.{quote(column.table)} AS p ON p.{key} = c.{col}), "
        f"(SELECT count({col}) FROM t.{quote(table)})",
    )
    name = "self reference" if column.table == table else "foreign key"
    observed = f"{orphans:,} of {keys:,} keys name no row of {column.table}"
    return TableCheck(table, column.name, name, f"{column.name} → {column.to}", orphans, observed)


def _loops(con: duckdb.DuckDBPyConnection, table: str, column: ReferenceColumn) -> TableCheck:
    """Rows whose chain of self references never ends (a row pointing at itself, two at each
    other): each row points at an earlier one, so every chain ends at a row pointing nowhere.
    Pointer doubling follows every chain at once: after k steps each row knows the row 2^k
    up its chain, and a chain of n rows ends within log2(n) steps."""
    rows = con.sql(
        f"SELECT {quote(column.key)}, {quote(column.name)} FROM t.{quote(table)}"
    ).to_arrow_table()
    keys, refs = rows.column(0).combine_chunks(), rows.column(1).combine_chunks()
    found = pc.index_in(refs, value_set=keys, skip_nulls=True)  # a null points nowhere
    up = pc.fill_null(found, -1).to_numpy().astype(np.int64)
    for _ in range(max(1, len(up).bit_length()) + 1):
        up = np.where(up >= 0, up[np.maximum(up, 0)], -1)
    looping = int((up >= 0).sum())
    observed = f"{looping:,} of {len(up):,} rows in or leading into a loop"
    relation = f"{column.name} chains end: no row reaches itself"
    return TableCheck(table, column.name, "self reference", relation, looping, observed)


def _unweighted(
    con: duckdb.DuckDBPyConnection, table: str, column: ReferenceColumn, weight: str
) -> TableCheck:
    """References to rows a column weight makes undrawable (0, negative or null)."""
    col, key, w = quote(column.name), quote(column.key), quote(weight)
    drawn, refs = _one(
        con,
        f"SELECT count(*) FILTER (WHERE coalesce(p.{w}, 0) <= 0), count(*) FROM "
        f"t.{quote(table)} AS c JOIN t.{quote(column.table)} AS p ON p.{key} = c.{col}",
    )
    relation = f"{column.name} → rows of {column.table} with {weight} > 0"
    observed = f"{drawn:,} of {refs:,} keys name a row whose {weight} is 0, negative or null"
    return TableCheck(table, column.name, "weights", relation, drawn, observed)


def _children(
    con: duckdb.DuckDBPyConnection, config: RelationalConfig, spec: TableConfig
) -> list[TableCheck]:
    link = spec.parent_link()
    if spec.parent is None or link is None:
        return []
    parent, count = spec.parent, spec.count
    by = f"p.{quote(count.by)}" if count and count.by else "NULL"
    rows = con.execute(  # how many parents have n children, per `by` value
        f"SELECT v, n, count(*) FROM (SELECT {by} AS v, count(c.{quote(link.name)}) AS n "
        f"FROM t.{quote(parent)} AS p LEFT JOIN t.{quote(spec.name)} AS c "
        f"ON c.{quote(link.name)} = p.{quote(link.key)} GROUP BY p.{quote(link.key)}, {by}) "
        "GROUP BY ALL ORDER BY ALL"
    ).fetchall()
    total = sum(n * k for _, n, k in rows)
    checks = []
    if spec.rows is not None and config.mode == "overwrite":  # an append adds to old rows
        observed = f"{total:,} rows"
        checks.append(
            TableCheck(
                spec.name, "", "rows", f"{spec.rows:,} rows", abs(total - spec.rows), observed
            )
        )
    if count is None:
        return checks
    groups: dict[str, tuple[CountParams, list[tuple[int, int]]]] = {}
    for value, n, parents in rows:  # label -> (its params, [(children, parents)])
        label, params = params_of(count, value)
        groups.setdefault(label, (params, []))[1].append((n, parents))
    for label, (params, counts) in groups.items():
        mean, low, high = count.resolved(params)
        per = f"children per {parent} row" + (f" ({label})" if count.by else "")
        parents = sum(k for _, k in counts)
        outside = sum(k for n, k in counts if n < low or (high is not None and n > high))
        seen = f"{min(n for n, _ in counts)}..{max(n for n, _ in counts)}"
        checks.append(
            TableCheck(
                spec.name,
                link.name,
                "children per parent",
                f"{per} in [{low}, {'∞' if high is None else high}]",
                outside,
                f"{outside:,} of {parents:,} parents outside; observed {seen}",
            )
        )
        if spec.rows is not None:  # a set total moves the counts to it: the row count says
            continue
        observed_mean = sum(n * k for n, k in counts) / parents
        expected, std = count_moments(count.distribution, mean, low, high)
        slack = 4 * std / math.sqrt(parents) + 0.02 * expected + 1e-9
        off = abs(observed_mean - expected) > slack
        said = f"{significant(expected, 4)} ± {significant(slack, 2)}"
        relation = f"mean {per} {said} ({count.distribution} {mean:g})"
        observed = significant(observed_mean, 4)
        checks.append(
            TableCheck(spec.name, link.name, "mean children", relation, int(off), observed)
        )
    return checks


def _aggregate(
    con: duckdb.DuckDBPyConnection,
    config: RelationalConfig,
    table: str,
    column: AggregateColumn,
    kind: str,
) -> TableCheck:
    link = config.table(column.of).parent_link()
    assert link is not None
    differs = "got IS DISTINCT FROM want"
    if kind in ("DOUBLE", "FLOAT", "REAL"):  # sums of floats depend on the order they add up
        differs += " AND NOT abs(got - want) <= 1e-9 * greatest(1, abs(want))"
    failed, rows = _one(
        con,
        f"WITH a AS (SELECT {quote(link.name)} AS k, {column.term} AS v "
        f"FROM t.{quote(column.of)} GROUP BY 1) "
        f"SELECT count(*) FILTER (WHERE {differs}), count(*) FROM (SELECT "
        f"p.{quote(column.name)} AS got, coalesce(CAST(a.v AS {kind}), CAST(? AS {kind})) AS want "
        f"FROM t.{quote(table)} AS p LEFT JOIN a ON a.k = p.{quote(link.key)})",
        [column.default],
    )
    shown = repr(column.default)
    if isinstance(column.default, bool):  # as SQL writes it
        shown = shown.lower()
    default = "" if column.default is None else f", else {shown}"
    relation = f"{column.name} = {column.expr} over {column.of}{default}"
    observed = f"{failed:,} of {rows:,} rows differ from the recomputed value"
    return TableCheck(table, column.name, "aggregate", relation, failed, observed)


def _relations(
    con: duckdb.DuckDBPyConnection,
    config: RelationalConfig,
    table: str,
    reshaped: set[str],
    spanned: set[str],
) -> list[TableCheck]:
    """The table's declared relations and constraints, over the view `data` of its rows (but
    the distributions of `reshaped` columns, and the relations of `spanned` ones)."""
    plan = config.plan(table)
    relations = [("relation", r) for r in column_relations(plan.config, reshaped, spanned)]
    relations += [("constraint", c.relation_check()) for c in plan.config.constraints]
    checks = []
    for name, relation in relations:
        result = relation.run(con)
        if result is None:
            continue
        failed, observed = result
        checks.append(TableCheck(table, relation.column, name, relation.relation, failed, observed))
    return checks


def _data_view(
    con: duckdb.DuckDBPyConnection,
    config: RelationalConfig,
    table: str,
    types: dict[str, dict[str, str]],
) -> None:
    """The temp view `data`: the table's rows, each with the related rows' fields it reads
    (`alias.field`, null where there is no related row)."""
    plan = config.plan(table)
    select, joins = [f"{ROW}.*"], []
    for alias in plan.aliases.values():  # in the order they were found: `via` comes first
        name = quote(alias.name)
        source = quote(alias.via) if alias.via is not None else ROW
        joins.append(
            f"LEFT JOIN t.{quote(alias.table)} AS {name} "
            f"ON {name}.{quote(alias.key)} = {source}.{quote(alias.column)}"
        )
        select += [f"{name}.{quote(c)} AS {quote(f'{alias.name}.{c}')}" for c in types[alias.table]]
    con.execute(
        f"CREATE OR REPLACE TEMP VIEW data AS SELECT {', '.join(select)} "
        f"FROM t.{quote(table)} AS {ROW} {' '.join(joins)}"
    )


# -- HTML ----------------------------------------------------------------------------------
def write_tables_report(output_dir: Path, target: Path | None = None) -> tuple[Path, list[Check]]:
    """Check the multi-table dataset in `output_dir` and write its HTML report; returns
    the file and every check."""
    report = tables_report(output_dir)
    path = write_text_atomic(target or output_dir / "report.html", render_tables(report))
    return path, [_as_check(c) for c in report.checks]


def render_tables(report: TablesReport) -> str:
    manifest, checks = report.manifest, report.checks
    failed = [c for c in checks if not c.passed]
    kpis = [
        ("tables", str(len(report.sections))),
        ("rows", f"{sum(s.profile.rows for s in report.sections):,}"),
        ("checks", f"{len(checks) - len(failed)}/{len(checks)} pass"),
        *cost_kpis(manifest),
    ]
    config = manifest.dataset_config()
    overview = []
    for s in report.sections:
        parent = config.table(s.name).parent
        every = _all(s)
        table = manifest.tables.get(s.name)
        resumed = ""
        if table is not None and table.resumed_chunks:
            resumed = f"; resumed {chunks_and_rows(table.resumed_chunks, table.resumed_rows)}"
        rate, counted = duplicates(s.profile)
        overview.append(
            (
                s.name,
                f"{s.profile.rows:,} rows, {len(s.profile.columns)} columns"
                + (f", children of {parent}" if parent else "")
                + f"; checks {sum(c.passed for c in every)}/{len(every)} pass"
                + f"; duplicate rows {rate}: {counted}"
                + resumed,
            )
        )
    overview += resume_lines(manifest)
    if manifest.llm_total.requests:
        overview += cost_lines(manifest)
    for name, table in manifest.tables.items():  # as the one-table report says them
        if table.llm.requests:
            overview.append((f"{name}: retries", _counts(table.llm.retries)))
            overview.append((f"{name}: rejected rows", _counts(table.llm.rejected_rows)))
    parts = [
        f"<!doctype html><html lang=en><head><meta charset=utf-8>{REPORT_MARK}",
        f"<title>{escape(manifest.dataset)} - SynthAIx report</title>",
        f"<style>{CSS}</style></head><body>",
        f"<h1>{escape(manifest.dataset)}</h1>",
        f"<div class=muted>build {escape(manifest.build_id)} · {escape(manifest.created_at)}"
        f" · seed {manifest.seed} · mode {escape(manifest.mode)} · config "
        f"<code>{escape(manifest.config_hash[:19])}</code></div>",
        "<div class=kpis>" + "".join(kpi(*k) for k in kpis) + "</div>",
        f"<div class=card><table>{_rows(overview)}</table></div>",
    ]
    if failed:
        parts += ["<h2>Failed checks</h2>", _checks_table([_as_check(c) for c in failed])]
    for s in report.sections:
        cards = [
            _column_card(c, [k for k in s.column_checks if k.column == c.name])
            for c in s.profile.columns
        ]
        parts += [
            f"<h2>{escape(s.name)}</h2>",
            "<h3>Keys, references and relations</h3>" if s.checks else "",
            _checks_table([_as_check(c) for c in s.checks]) if s.checks else "",
            "<h3>Columns</h3><div class=grid>",
            *cards,
            "</div><h3>Column checks</h3>",
            _checks_table(s.column_checks),
            "<h3>Sample rows</h3>",
            _sample_table(s.profile),
        ]
    return "\n".join([*parts, "</body></html>"])


def _all(section: TableSection) -> list[Check]:
    return section.column_checks + [_as_check(c) for c in section.checks]


def _as_check(check: TableCheck) -> Check:
    where = f"{check.table}.{check.column}" if check.column else check.table
    return Check(where, check.name, check.relation, check.observed, check.passed)
