"""A preview of a multi-table dataset: the first rows of every table, as a build makes them.

The tables are built into a temporary folder, read back, and the folder removed: nothing is
written where the config points. Each root table makes its whole first chunk (at least the
rows asked for), so values drawn per chunk match the build's; children come from their
counts. A child that sets `rows` (an exact total shared out between its parents) gets that
total scaled as its parents are, so each parent's children average what the build gives them;
should the scaled total not fit the parents drawn (a parent that is itself a child without
`rows`, or bounds per `by` value), the preview falls back to the children's counts alone. A
preview of one table builds only the tables it reads.

LLM columns are paid for only where they are seen: the tables are first made without them
(samplers only, no request), which tells the rows shown and the related rows those read
(a review's product, through its item); the second make fills the llm columns of those rows
and leaves the others' empty. Both makes leave llm text out of the duplicate checks (empty
in most rows, it would make them alike), and a row whose answers were unusable stays, empty,
so their rows are the same; only a constraint over llm values may drop a row of the second
(its parent's children then differ, and a row shown after it may stay empty). Without a
provider the first make is the preview, llm columns empty.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from synthaix.build.executor import ThreadExecutor
from synthaix.build.preview import dedupe_without_llm_columns
from synthaix.columns.llm import LlmColumn
from synthaix.columns.reference import AggregateColumn
from synthaix.columns.refs import resolve
from synthaix.config import DatasetConfig
from synthaix.dedupe.keys import key_hashes
from synthaix.errors import ConfigError, OutputError, SynthaixError
from synthaix.generate import LlmFill
from synthaix.llm.stats import LlmStats
from synthaix.relational.build import DatasetBuild, related_reads
from synthaix.relational.config import RelationalConfig, TableConfig, TablePlan, needed_for
from synthaix.relational.counts import total_bounds
from synthaix.relational.manifest import read_dataset_manifest
from synthaix.sqlexpr import checked, checked_aggregate

if TYPE_CHECKING:
    from synthaix.constraints import Constraint


def preview_tables(
    config: RelationalConfig,
    rows: int,
    llm: bool = True,
    only: str | None = None,
    on_spent: Callable[[LlmStats], None] | None = None,
) -> dict[str, pa.Table]:
    """The first `rows` rows of each table, in build order; with `only`, of that table, built
    with just the tables it needs (the others' LLM columns would be paid for nothing).
    `on_spent` is told what the llm columns cost."""
    keep = needed_for(config, only) if only is not None else config.order
    shown = keep if only is None else [only]
    with tempfile.TemporaryDirectory(prefix="synthaix-preview-") as folder:
        made, totals, _ = _make(config, rows, Path(folder) / "samplers", keep)
        fills = _fills(config, keep, shown, made, rows) if llm else {}
        if fills:  # some llm values are seen: the second make pays for those
            made, _, spent = _make(config, rows, Path(folder) / "out", keep, fills, totals)
            if on_spent is not None:
                on_spent(spent)
        return {name: made[name].slice(0, rows).combine_chunks() for name in shown}


def _make(
    config: RelationalConfig,
    rows: int,
    out: Path,
    keep: list[str],
    fills: dict[str, LlmFill] | None = None,
    totals: bool = True,
) -> tuple[dict[str, pa.Table], bool, LlmStats]:
    """Every kept table, made into `out`, llm columns filled as `fills` say (else empty);
    whether the scaled totals held (then `totals` for the second make); what it spent."""

    def executor(table: DatasetConfig) -> ThreadExecutor:
        fill = None if fills is None else fills.get(table.name)
        return ThreadExecutor(table, llm=fill is not None, fill=fill)

    scratch, scaled = _scratch(config, rows, out, keep, totals)
    try:
        manifest = DatasetBuild(scratch, executor).run()
    except ConfigError:
        if not scaled:  # the build itself would stop there too
            raise
        # A scaled total that the parents drawn cannot take: the counts alone instead.
        scratch, _ = _scratch(config, rows, out, keep, totals=False)
        manifest = DatasetBuild(scratch, executor).run()
        totals = False
    tables = {name: pq.read_table(out / "data" / name) for name in keep}
    return tables, totals, manifest.llm


def _fills(
    config: RelationalConfig,
    keep: list[str],
    shown: list[str],
    made: dict[str, pa.Table],
    rows: int,
) -> dict[str, LlmFill]:
    """Which rows of each table the second make fills: the first `rows` of a table shown, and
    the rows that the rows shown (or read) of later tables read where they read llm values
    (a review's product, through its item), found by their keys in the first make. A table
    whose llm values an aggregate reads (rows no key points at) is filled whole. No entry: a
    table none of whose llm values is seen."""
    fed = _llm_fed(config)
    whole = {  # an aggregate reads all of a parent's children, the rows none is shown of too
        column.of
        for name in keep
        for column in config.plan(name).spec.columns
        if isinstance(column, AggregateColumn)
        and column.of in made
        and set(checked_aggregate(column.expr)[1]) & fed[column.of]
    }
    wanted: dict[tuple[str, str], list[pa.Array]] = {}  # (table, key column): key values
    seen: dict[str, pa.Table] = {}
    for name in reversed(keep):  # readers first: the rows they read are known before
        plan, table = config.plan(name), made[name]
        first = table.num_rows if name in whole else rows if name in shown else 0
        picked = pc.less(pa.array(range(table.num_rows)), first)
        for (owner, key), values in wanted.items():
            if owner == name:
                picked = pc.or_(picked, pc.is_in(table[key], value_set=_distinct(values)))
        seen[name] = table.filter(picked)
        for alias, field in related_reads(plan):
            target = plan.aliases[alias]
            if field in fed[target.table]:
                pointed = _pointed(plan, alias, seen[name], made)
                wanted.setdefault((target.table, target.key), []).append(pointed)
        for listed in plan.spec.siblings:  # the rows of the same parent its rows list
            if listed.table not in made or not set(listed.columns) & fed[listed.table]:
                continue
            mine, theirs = plan.spec.parent_link(), config.plan(listed.table).spec.parent_link()
            if mine is None or theirs is None:  # no column says a row's parent: all rows
                whole.add(listed.table)
                continue
            parents = seen[name][mine.name].combine_chunks()
            wanted.setdefault((listed.table, theirs.name), []).append(parents)
    fills = {}
    for name in keep:
        if not _has_llm(config, name) or not (name in whole or seen[name].num_rows):
            continue
        # Values made before the llm columns and from no llm value: the same in both makes.
        columns = []
        for column in config.plan(name).config.columns:
            if isinstance(column, LlmColumn):
                break
            if not column.is_late and column.name not in fed[name]:
                columns.append(column.name)
        if name in whole or not columns:
            fills[name] = LlmFill(every=True)
        else:
            hashes = np.unique(key_hashes(seen[name], columns))
            fills[name] = LlmFill(tuple(columns), hashes)
    return fills


def _pointed(plan: TablePlan, alias: str, rows: pa.Table, made: dict[str, pa.Table]) -> pa.Array:
    """The keys (of the alias's table) that `rows` of the plan's table read through `alias`."""
    target = plan.aliases[alias]
    if target.kind != "through":
        return rows[target.column].combine_chunks()
    assert target.via is not None
    via = plan.aliases[target.via]
    via_keys = _distinct([_pointed(plan, target.via, rows, made)])
    via_rows = made[via.table].filter(pc.is_in(made[via.table][via.key], value_set=via_keys))
    return via_rows[target.column].combine_chunks()


def unapplied_constraints(config: RelationalConfig, names: list[str]) -> list[str]:
    """The constraints of these tables over llm values, which a preview leaves out: held to
    them, a row filled in the second make could drop (and its children change), and the
    rows after it, not filled, show empty."""
    fed = _llm_fed(config)
    return [
        rule.label for n in names for rule in config.table(n).constraints if _over(rule, fed[n])
    ]


def _over(rule: Constraint, columns: set[str]) -> bool:
    """Whether the constraint reads one of these columns."""
    return bool(set(checked(rule.check)[1]) & columns)


def _llm_fed(config: RelationalConfig) -> dict[str, set[str]]:
    """Each table's llm columns and the columns made from llm values: its own, a related
    row's (`items.label` from `products.name`), a siblings list's."""
    fed: dict[str, set[str]] = {}
    for name in config.order:  # a table reads only tables built before it
        plan = config.plan(name)
        read = {
            f"{alias.name}.{field}"
            for alias in plan.aliases.values()
            for field in fed.get(alias.table, ())
        }
        read |= {s.name for s in plan.spec.siblings if set(s.columns) & fed.get(s.table, set())}
        own: set[str] = set()
        for column in plan.config.columns:
            reads = column.references()
            if isinstance(column, LlmColumn) or any(resolve(r, own | read) for r in reads):
                own.add(column.name)
        fed[name] = own
    return fed


def _has_llm(config: RelationalConfig, name: str) -> bool:
    return any(isinstance(c, LlmColumn) for c in config.plan(name).config.columns)


def _distinct(arrays: list[pa.Array]) -> pa.Array:
    return pc.unique(pa.chunked_array(arrays).combine_chunks().drop_null())


def _scratch(
    config: RelationalConfig,
    rows: int,
    out: Path,
    keep: list[str] | None = None,
    totals: bool = True,
) -> tuple[RelationalConfig, bool]:
    """The config the preview builds into `out` (of the tables `keep`, which hold every table
    they read), and whether a child's `rows` was scaled.

    Root tables make at most their first chunk. Each table's scale is its preview rows over
    its build rows (a child's, its parent's). A child's `rows` total is scaled with its
    parent, within what its parents' count bounds can reach (the rule the config checks);
    `totals=False` drops the scaled totals, leaving the counts (a child without `count`
    gets a Poisson count of the mean a build would share out)."""
    keep = config.order if keep is None else keep
    data = config.model_dump(mode="python", by_alias=True)
    data["tables"] = [table for table in data["tables"] if table["name"] in keep]
    tables = {table["name"]: table for table in data["tables"]}
    scale: dict[str, float] = {}
    known: dict[str, int | None] = {}  # preview rows, when fixed before the build
    scaled = False
    for name in keep:
        table, spec = tables[name], config.table(name)
        if spec.parent is None:
            chunk = spec.chunk_size or config.chunk_size
            assert spec.rows is not None  # a root table sets rows
            # A table an append keeps: as its stored rows were made (by this config's seed).
            total = spec.rows or _stored_rows(config, name)
            table["rows"] = min(total, max(rows, chunk))
            scale[name], known[name] = table["rows"] / total, table["rows"]
            continue
        scale[name] = scale[spec.parent]
        if spec.rows is None or scale[name] == 1.0:  # counts alone, or the build's total
            known[name] = spec.rows
            continue
        scaled = True
        if totals:
            table["rows"] = known[name] = _scaled_total(spec, scale[name], known[spec.parent])
            continue
        table["rows"] = known[name] = None
        if spec.count is None:
            mean = spec.rows / max(config.plan(spec.parent).estimated_rows, 1.0)
            table["count"] = {"distribution": "poisson", "mean": mean}
    fed = _llm_fed(config)
    for table in data["tables"]:
        name = table["name"]
        table["dedupe"] = {**table["dedupe"], "uri": None}  # its table in `out`, not the user's
        if _has_llm(config, name):  # llm text, empty in most rows, is checked by none
            plain = dedupe_without_llm_columns(config.plan(name).config).dedupe
            table["dedupe"].update(exact=plain.exact, near=plain.near)
            rules = zip(table["constraints"], config.table(name).constraints, strict=True)
            table["constraints"] = [c for c, rule in rules if not _over(rule, fed[name])]
    data["mode"] = "overwrite"
    data["output"] = {**data["output"], "dir": out, "duckdb": None, "formats": ["parquet"]}
    return RelationalConfig.model_validate(data), scaled


def _stored_rows(config: RelationalConfig, table: str) -> int:
    """The rows `table` holds in the config's output (a table an append keeps, `rows: 0`)."""
    try:
        return read_dataset_manifest(config.output_dir).tables[table].rows.total
    except (OSError, SynthaixError, KeyError):
        raise OutputError(
            f"cannot preview {table} (rows: 0 keeps its stored rows): {config.output_dir} "
            f"holds no build of {config.name} with it",
            hint="build the dataset first, or preview with rows of at least 1",
        ) from None


def _scaled_total(spec: TableConfig, scale: float, parents: int | None) -> int:
    """`spec.rows` times `scale`, within [parents x min, parents x max] when the preview's
    parents are known (as the config's check requires of the build's total)."""
    total = max(1, round(spec.rows * scale))
    if parents is None or spec.count is None:
        return total
    low, high = total_bounds(spec.count, parents)
    total = max(total, low)
    return total if high is None else min(total, high)
