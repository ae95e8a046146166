"""Multi-table dataset configs (`tables:`): typed models, the table graph, and one validated
single-table config per table, whose columns may read related rows as `<alias>.<field>`.

    tables:
      - {name: customers, rows: 2000, columns: [...]}
      - name: orders
        parent: customers                       # children made per parent row
        count: {distribution: poisson, mean: 3, max: 15}
        columns:
          - {name: customer_id, type: reference, to: customers.customer_id}
          - {name: ordered_at, type: date, after: customers.signup_date, offset: {...}}

What a table reads (its parent, the rows its references look up, and through those their own
parents and lookups) decides the build order; a cycle is an error naming it.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Self

import pyarrow as pa
from pydantic import (
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_serializer,
    field_validator,
    model_validator,
)

from synthaix.asof import settle
from synthaix.columns import ColumnSpec, StrictModel
from synthaix.columns.base import IDENTIFIER, Column
from synthaix.columns.choice import CategoryColumn
from synthaix.columns.conditional import Conditional, fail_at
from synthaix.columns.llm import LlmColumn
from synthaix.columns.reference import AggregateColumn, ReferenceColumn
from synthaix.columns.refs import did_you_mean, loop_fields
from synthaix.config import (
    AS_OF,
    SEED,
    CrossFieldError,
    DatasetConfig,
    OutputConfig,
    OutputPaths,
    RunnerConfig,
    Seed,
    _message,
)
from synthaix.constraints import Constraint, as_constraint
from synthaix.dedupe.settings import DedupeConfig
from synthaix.llm.provider import ProviderConfig
from synthaix.relational.counts import mean_children, total_bounds
from synthaix.sqlexpr import ExpressionError, checked

Problems = list[tuple[tuple[str | int, ...], str]]


class CountParams(StrictModel):
    mean: float | None = Field(
        default=None, ge=0, allow_inf_nan=False, description="Mean children per parent."
    )
    min: int | None = Field(default=None, ge=0, description="Fewest children of a parent.")
    max: int | None = Field(default=None, ge=0, description="Most children of a parent.")


class CountConfig(CountParams):
    """Children per parent row: `{distribution: poisson, mean: 3, min: 0, max: 15}`, a plain
    number (exactly that many), or per parent value: `by: tier, params: {gold: {mean: 5}}`."""

    distribution: Literal["poisson", "uniform", "fixed"] = Field(
        default="poisson",
        description="poisson (mean, clipped to [min, max]), uniform (whole numbers from min "
        "to max) or fixed (mean children each).",
    )
    by: str | None = Field(
        default=None, description="A column of the parent whose value picks `params`."
    )
    params: dict[Any, CountParams] | None = Field(
        default=None, description="mean/min/max by the value of `by` (others: the defaults)."
    )

    @model_validator(mode="before")
    @classmethod
    def _plain_number(cls, data: Any) -> Any:
        if isinstance(data, int | float) and not isinstance(data, bool):
            return {"distribution": "fixed", "mean": data}
        return data

    @model_validator(mode="after")
    def _check(self) -> Self:
        if (self.by is None) != (self.params is None):
            raise ValueError("by and params go together: by: tier, params: {gold: {mean: 5}}")
        for params in [self, *(self.params or {}).values()]:
            low, high = self.resolved(params)[1:]
            if high is not None and low > high:
                raise ValueError(f"min {low} is above max {high}")
        if self.distribution == "uniform" and self.max is None:
            raise ValueError("a uniform count needs max (and min, default 0)")
        if self.distribution in ("poisson", "fixed") and self.mean is None:
            raise ValueError(f"a {self.distribution} count needs mean")
        means = [p.mean for p in [self, *(self.params or {}).values()] if p.mean is not None]
        if self.distribution == "fixed" and any(m != int(m) for m in means):
            odd = next(m for m in means if m != int(m))
            raise ValueError(
                f"a fixed count is a whole number of children, not {odd:g}; for {odd:g} on "
                f"average write {{distribution: poisson, mean: {odd:g}}}"
            )
        return self

    def resolved(self, params: CountParams) -> tuple[float, int, int | None]:
        """(mean, min, max) for parents whose `by` value chose `params`."""
        mean = params.mean if params.mean is not None else self.mean
        low = params.min if params.min is not None else self.min or 0
        high = params.max if params.max is not None else self.max
        if self.distribution == "fixed":
            fixed = round(mean or 0)
            return float(fixed), fixed, fixed
        if mean is None:  # uniform
            mean = (low + (high or low)) / 2
        return float(mean), low, high


class SiblingsConfig(StrictModel):
    """Rows of another table with the same parent, readable in templates and LLM prompts as
    a list, e.g. a ticket written from the customer's last three orders."""

    name: str = Field(pattern=IDENTIFIER, description="Name the list is read under.")
    table: str = Field(pattern=IDENTIFIER, description="The table whose rows are listed.")
    columns: list[str] = Field(min_length=1, description="Its columns each listed row holds.")
    order_by: str | None = Field(
        default=None, description="DuckDB expression over its columns, then asc or desc."
    )
    limit: int = Field(default=3, ge=1, le=100, description="Rows listed per parent, at most.")

    @property
    def order(self) -> tuple[str, str] | None:
        if self.order_by is None:
            return None
        expr, _, direction = self.order_by.strip().rpartition(" ")
        if direction.lower() in ("asc", "desc") and expr.strip():
            return expr.strip(), direction.upper()
        return self.order_by.strip(), "ASC"


class TableConfig(StrictModel):
    """One table of a multi-table dataset."""

    name: str = Field(pattern=IDENTIFIER, description="Table name (Parquet folder, DuckDB).")
    description: str | None = Field(default=None, description="What a row is, in plain words.")
    rows: int | None = Field(
        default=None,
        ge=0,
        le=10_000_000_000,
        description="Rows to deliver. With a parent: the exact total, shared out between the "
        "parents by `count` (default: the sum of the counts drawn). 0, on an append: the "
        "table keeps its rows (a fixed catalogue), and new rows elsewhere look them up.",
    )
    parent: str | None = Field(
        default=None, pattern=IDENTIFIER, description="Make rows per row of this table."
    )
    count: CountConfig | None = Field(default=None, description="Children per parent row.")
    chunk_size: int | None = Field(default=None, gt=0, le=10_000_000)
    columns: list[ColumnSpec] = Field(min_length=1, description="The columns, in order.")
    constraints: list[Constraint] = Field(default_factory=list)
    dedupe: DedupeConfig = Field(
        default_factory=lambda: DedupeConfig(exact=False),
        description="As in a single table, but exact dedupe is off unless `exact` or `key` is "
        "set: rows are told apart by their keys (two customers may share a tier and a day).",
    )
    siblings: list[SiblingsConfig] = Field(
        default_factory=list, description="Lists of rows sharing the parent, for prompts."
    )

    @field_validator("constraints", mode="before")
    @classmethod
    def _plain_constraints(cls, items: Any) -> Any:
        return [as_constraint(item) for item in items] if isinstance(items, list) else items

    @field_validator("dedupe", mode="before")
    @classmethod
    def _exact_when_asked(cls, settings: Any) -> Any:
        if isinstance(settings, dict) and not {"exact", "key"} & settings.keys():
            return {**settings, "exact": False}
        return settings

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.parent is None and self.rows is None:
            raise ValueError("a table without a parent needs rows")
        if self.parent is not None and self.rows == 0:
            fail_at(("rows",), "a child table of 0 rows: leave rows out and set count")
        if self.parent is None and self.count is not None:  # at its line, stood in for below
            fail_at(("count",), "count is children per parent row: set parent too")
        if self.parent is not None and self.count is None and self.rows is None:
            raise ValueError("a child table needs count (children per parent), rows, or both")
        return self

    def references(self) -> list[tuple[int, ReferenceColumn]]:
        return [(i, c) for i, c in enumerate(self.columns) if isinstance(c, ReferenceColumn)]

    def parent_link(self) -> ReferenceColumn | None:
        """The reference to the parent: to the parent table, without another alias."""
        for _, column in self.references():
            if column.table == self.parent and column.reads_as == self.parent:
                return column
        return None

    @property
    def primary_key(self) -> list[str]:
        return [c.name for c in self.columns if c.primary_key]


@dataclass(frozen=True)
class Alias:
    """A related row a table reads: `kind` parent (the row's own parent), lookup (drawn by
    the reference `column`), or through (the row `via` alias's `column` points at)."""

    name: str
    table: str
    kind: Literal["parent", "lookup", "through"]
    column: str  # the reference column: of this table (parent, lookup) or of `via`'s table
    key: str  # the referenced key column
    via: str | None = None


@dataclass
class TablePlan:
    """A validated table: its config as a single-table build, what it reads, what reads it."""

    spec: TableConfig
    config: DatasetConfig
    aliases: dict[str, Alias] = field(default_factory=dict)
    depends: list[str] = field(default_factory=list)
    estimated_rows: float = 0.0


class RelationalConfig(OutputPaths, StrictModel):
    """A dataset of related tables: one flow run, one DuckDB database, a Parquet dataset each."""

    name: str = Field(pattern=IDENTIFIER, description="Dataset name.")
    description: str | None = Field(default=None, description="What the dataset is.")
    seed: Seed = Field(default=0, description=SEED)
    as_of: dt.datetime | None = Field(default=None, description=AS_OF)
    chunk_size: int = Field(default=10_000, gt=0, le=10_000_000)
    locale: str = Field(default="en_US")
    mode: Literal["overwrite", "append"] = Field(
        default="overwrite",
        description="overwrite replaces every table atomically; append adds rows to the root "
        "tables and children of the new rows.",
    )
    tables: list[TableConfig] = Field(min_length=1, description="The tables, in any order.")
    output: OutputConfig = Field(default_factory=OutputConfig)
    runner: RunnerConfig = Field(default_factory=RunnerConfig)
    provider: ProviderConfig = Field(default_factory=ProviderConfig)
    _plans: dict[str, TablePlan] = PrivateAttr(default_factory=dict)
    _order: list[str] = PrivateAttr(default_factory=list)
    _seed_as_of: bool = PrivateAttr(default=False)
    _slot: dt.datetime | None = PrivateAttr(default=None)  # see DatasetConfig's

    @field_serializer("seed")
    def _seed_as_written(self, seed: int) -> int | str:
        return "as_of" if self._seed_as_of else seed

    @model_validator(mode="after")
    def _plan(self, info: ValidationInfo) -> Self:
        names_only = bool((info.context or {}).get("names_only"))  # see config.py's stand-in
        columns = [
            (("tables", t, "columns", c), column)
            for t, table in enumerate(self.tables)
            for c, column in enumerate(table.columns)
        ]
        problems = settle(self, columns) or _plan_tables(self, names_only)
        problems += [
            (("tables", i, "rows"), _KEPT_ON_APPEND)
            for i, table in enumerate(self.tables)
            if table.rows == 0 and table.parent is None and self.mode != "append"
        ]
        if problems:
            raise CrossFieldError(problems)
        return self

    @property
    def order(self) -> list[str]:
        """Table names, each after every table it reads."""
        return list(self._order)

    def plan(self, table: str) -> TablePlan:
        return self._plans[table]

    def table(self, name: str) -> TableConfig:
        return next(t for t in self.tables if t.name == name)

    def children(self, table: str) -> list[str]:
        return [t.name for t in self.tables if t.parent == table]


_KEPT_ON_APPEND = (
    "rows: 0 keeps a table's stored rows on an append (mode: append, or --mode append); "
    "a build that replaces the dataset needs at least 1"
)


# -- planning ------------------------------------------------------------------------------
def _plan_tables(config: RelationalConfig, names_only: bool = False) -> Problems:
    """Each table's plan in build order, and the problems across tables. `names_only`: of a
    stand-in config (broken columns as text), only whether the names it reads exist."""
    specs = {t.name: t for t in config.tables}
    problems: Problems = []
    seen: set[str] = set()
    for i, table in enumerate(config.tables):
        if table.name in seen:
            problems.append((("tables", i, "name"), f"duplicate table name '{table.name}'"))
        seen.add(table.name)
    if config.output.table is not None:
        problems.append(
            (("output", "table"), "a multi-table dataset names its tables under tables:")
        )
    problems += _link_problems(config, specs)
    if problems:
        return problems
    order, cycle = _topological(config, specs)
    if cycle:
        index = [t.name for t in config.tables].index(cycle[0])
        path = " -> ".join(cycle)
        return [
            (
                ("tables", index),
                f"tables read each other in a cycle: {path}; a table can read only tables "
                "built before it (drop one of these references or lookups)",
            )
        ]
    config._order = order
    failed: set[str] = set()  # tables with problems, and those reading them (checked later)
    for name in order:
        if _needs(specs[name]) & failed:
            failed.add(name)
            continue
        index = [t.name for t in config.tables].index(name)
        plan, found = _table_plan(config, specs[name], index, names_only)
        problems += found
        if plan is None:
            failed.add(name)
            continue
        config._plans[name] = plan
    if failed:
        return problems
    problems += _siblings_problems(config)
    if not names_only:  # DuckDB binds names and types at once: a stand-in's text would fail
        problems += _aggregate_problems(config)
        problems += _total_problems(config)
        problems += _key_per_parent_problems(config)
    return problems


def _key_per_parent_problems(
    config: RelationalConfig, kept: Mapping[str, int] | None = None
) -> Problems:
    """A child whose dedupe key (a composite primary key) includes its parent link holds only
    so many rows per parent: the product of the other key columns' values. A count above it
    failed after every fill-up round (a month's 31 days for 40 shifts an employee). `kept`:
    the stored rows of the tables an append keeps (`rows: 0`), known once the output is read
    (`kept_key_problems`); without them a key through a kept table is not checked."""
    from synthaix.config import _Capacities

    problems: Problems = []
    for i, table in enumerate(config.tables):
        plan, link = config._plans.get(table.name), table.parent_link()
        key = plan.config.dedupe.key if plan is not None and plan.config.dedupe.exact else None
        if plan is None or link is None or table.count is None or not key or link.name not in key:
            continue
        capacities, per_parent, widen = _Capacities(plan.config.locale), 1, []
        for column in plan.config.columns:
            capacities.add(column)
        for name in (k for k in key if k != link.name):
            column = next(c for c in plan.config.columns if c.name == name)
            target = config.table(column.table) if isinstance(column, ReferenceColumn) else None
            if target is None:
                size = capacities[name]
                widen.append(f"widen the range of {name}")
            elif target.parent is not None:
                size = None
            else:
                size = target.rows or (kept or {}).get(target.name)
                widen.append(f"give {target.name} more rows")
            if size is None:
                break
            per_parent *= size
        else:
            parents = config.plan(table.parent).estimated_rows  # type: ignore[arg-type]
            over = _above(table.count, per_parent, parents, _by_shares(config, table))
            if over is not None:
                problems.append(
                    (
                        ("tables", i, "count"),
                        f"{over}, but the key ({', '.join(key)}) holds only {per_parent:,} rows "
                        f"per {table.parent} row; lower the count (e.g. max: {per_parent}) or "
                        f"{' or '.join(widen)}",
                    )
                )
    return problems


def kept_key_problems(config: RelationalConfig, stored: Mapping[str, int]) -> list[str]:
    """`_key_per_parent_problems` once an append's kept tables' stored rows are known."""
    if not any(t.rows == 0 for t in config.tables):
        return []
    return [message for _, message in _key_per_parent_problems(config, stored)]


def _above(
    count: CountConfig, most: int, parents: float, shares: dict[Any, float] | None
) -> str | None:
    """How a count asks for more than `most` children of one parent (about every other build
    or more), in words; None when it does not. `shares`: the share of the parents each `by`
    value has, when known (a value's params apply to those parents only)."""
    sets: list[tuple[Any, CountParams]] = [(None, count), *(count.params or {}).items()]
    for value, params in sets:
        if value is None and shares is not None and set(shares) <= set(count.params or {}):
            continue  # every parent's value has params of its own
        mean, low, high = count.resolved(params)
        if low > most or (count.distribution != "poisson" and (high or 0) > most):
            return f"a parent may get {high if high is not None else low} children"
        if shares is None:
            share = 1.0
        elif value is None:  # the parents whose value has no params of its own
            share = 1.0 - sum(shares.get(v, 0.0) for v in count.params or {})
        else:
            share = shares.get(value, 0.0)
        poisson = count.distribution == "poisson" and (high is None or high > most)
        if poisson and parents * share * _poisson_tail(mean, most) >= 0.5:
            return f"a poisson count of mean {mean:g} gives some parents more than {most} children"
    return None


def _poisson_tail(mean: float, most: int) -> float:
    """P(X > most) for X ~ Poisson(mean), summed from most + 1 until the terms vanish."""
    if mean <= 0:
        return 0.0
    if most < mean:
        return 0.5  # at least about half: past the median
    total, k = 0.0, most + 1
    while True:
        term = math.exp(k * math.log(mean) - mean - math.lgamma(k + 1))
        total += term
        if term < 1e-18 * max(total, 1e-300) or term < 1e-300:
            return total
        k += 1


def _by_shares(config: RelationalConfig, table: TableConfig) -> dict[Any, float] | None:
    """The share of the parents with each value of count.by, when its column says it (a
    category without segments of its own)."""
    if table.parent is None:
        return None
    column = _count_by(table, config.table(table.parent))
    if not isinstance(column, CategoryColumn) or column.by is not None:
        return None
    weights = column.weights()
    return dict(zip(column.labels(), (weights / weights.sum()).tolist(), strict=True))


def _count_by(table: TableConfig, parent: TableConfig) -> Any:
    """The parent's column whose value picks the table's count (count.by), if any."""
    if table.count is None or table.count.by is None:
        return None
    name = table.count.by.removeprefix(f"{parent.name}.")
    return next((c for c in parent.columns if c.name == name), None)


def _total_problems(config: RelationalConfig) -> Problems:
    """A child `rows` total its parents' count bounds cannot reach, when the parents' number
    is known before the build (the parent table sets `rows`)."""
    problems: Problems = []
    for i, table in enumerate(config.tables):
        parent = config.table(table.parent) if table.parent else None
        if table.rows is None or table.count is None or parent is None or parent.rows is None:
            continue
        low, high = total_bounds(table.count, parent.rows)
        if table.rows < low or (high is not None and table.rows > high):
            reach = f"{low:,} to {high:,}" if high is not None else f"at least {low:,}"
            problems.append(
                (
                    ("tables", i, "rows"),
                    f"{table.name} cannot total {table.rows:,} rows: {parent.rows:,} "
                    f"{parent.name} rows with count min/max give {reach}; change rows, or "
                    "count.min / count.max",
                )
            )
    return problems


def _link_problems(config: RelationalConfig, specs: dict[str, TableConfig]) -> Problems:
    problems: Problems = []
    for i, table in enumerate(config.tables):
        for j, siblings in enumerate(table.siblings):
            if siblings.table not in specs:
                where = ("tables", i, "siblings", j, "table")
                problems.append((where, _unknown("table", siblings.table, list(specs))))
        if table.parent == table.name:
            problems.append(
                (
                    ("tables", i, "parent"),
                    f"{table.name} cannot be its own parent; for a hierarchy of its rows use a "
                    f"self reference ({{type: reference, to: {table.name}.<key>}})",
                )
            )
            continue
        if table.parent is not None:
            if table.parent not in specs:
                problems.append(
                    (("tables", i, "parent"), _unknown("table", table.parent, list(specs)))
                )
            elif (link := table.parent_link()) is not None and link.nullable:
                j = table.columns.index(link)
                problems.append(
                    (
                        ("tables", i, "columns", j, "nullable"),
                        f"every {table.name} row has its {table.parent} row: the link to the "
                        "parent is never null (drop nullable; a lookup may be null)",
                    )
                )
            elif (
                table.count is not None
                and table.count.by is not None
                and (
                    table.count.by.removeprefix(f"{table.parent}.")
                    not in [c.name for c in specs[table.parent].columns if not c.is_late]
                )
            ):
                names = [c.name for c in specs[table.parent].columns if not c.is_late]
                problems.append(
                    (
                        ("tables", i, "count", "by"),
                        f"'{table.count.by}' is not a column of {table.parent}: count.by picks "
                        f"counts by a column of the parent ({', '.join(names)})",
                    )
                )
            else:
                problems += _count_params_problems(i, table, specs[table.parent])
            misspelt = any(c.table not in specs for _, c in table.references())
            if table.parent in specs and table.parent_link() is None and not misspelt:
                key = specs[table.parent].primary_key
                column = key[0] if len(key) == 1 else "<its key>"
                problems.append(
                    (
                        ("tables", i, "columns"),
                        f"a child of {table.parent} needs a reference column to it, e.g. "
                        f"{{name: {column}, type: reference, to: {table.parent}.{column}}}",
                    )
                )
        aliases: dict[str, int] = {}
        for j, column in table.references():
            where = ("tables", i, "columns", j)
            target = specs.get(column.table)
            if target is None:
                problems.append(((*where, "to"), _unknown("table", column.table, list(specs))))
                continue
            names = [c.name for c in target.columns]
            if column.key not in names:
                problems.append(((*where, "to"), _unknown("column", column.key, names)))
                continue
            key_column = target.columns[names.index(column.key)]
            whole_key = key_column.primary_key and target.primary_key == [column.key]
            if key_column.is_late:
                problems.append(((*where, "to"), f"{column.to} is computed late; not a key"))
            elif not (whole_key or key_column.unique):
                problems.append(
                    (
                        (*where, "to"),
                        f"{column.to} is not a key of {column.table}: reference its one-column "
                        "primary key, or a unique: true column, so each reference names one row",
                    )
                )
            elif key_column.nullable:
                problems.append(
                    (
                        (*where, "to"),
                        f"{column.to} is null in {key_column.nullable * 100:g}% of "
                        f"{column.table} rows, which no reference could name (a reference is null "
                        "only where its own nullable says): reference a key every row has, or "
                        "drop that nullable",
                    )
                )
            weights = column.weights
            if not isinstance(weights, str) and hasattr(weights, "column"):
                found = next((c for c in target.columns if c.name == weights.column), None)
                numeric = found is not None and (
                    pa.types.is_integer(found.arrow_type())
                    or pa.types.is_floating(found.arrow_type())
                )
                if not numeric:
                    problems.append(
                        (
                            (*where, "weights", "column"),
                            f"'{weights.column}' is not a number column of {column.table}: "
                            "weights are drawn in proportion to it",
                        )
                    )
            if column.table == table.name:
                column._self = True
                continue
            if column.reads_as in aliases:
                problems.append(
                    (
                        (*where, "alias"),
                        f"two references read as '{column.reads_as}': give one an alias",
                    )
                )
            aliases[column.reads_as] = j
    return problems


def _unknown(kind: str, name: str, known: list[str]) -> str:
    guess = did_you_mean(name, known)
    return f"'{name}' is not a {kind}{guess} (known: {', '.join(known) or 'none'})"


def _direct(spec: TableConfig) -> list[Alias]:
    """What a row of `spec` reads directly: its parent, and the rows its references look up."""
    found = []
    for _, column in spec.references():
        if column.is_late:
            continue
        kind = "parent" if column is spec.parent_link() else "lookup"
        found.append(Alias(column.reads_as, column.table, kind, column.name, column.key))
    return found


def _topological(
    config: RelationalConfig, specs: dict[str, TableConfig]
) -> tuple[list[str], list[str]]:
    """Tables in build order (config order among equals), or a cycle of tables."""
    needs = {t.name: _needs(t) for t in config.tables}
    order: list[str] = []
    left = [t.name for t in config.tables]
    while left:
        ready = [name for name in left if needs[name] <= set(order)]
        if not ready:
            return [], _cycle(needs, left)
        order.append(ready[0])
        left.remove(ready[0])
    return order, []


def _needs(spec: TableConfig) -> set[str]:
    needs = {a.table for a in _direct(spec)} | {s.table for s in spec.siblings}
    if spec.parent:
        needs.add(spec.parent)
    needs.discard(spec.name)
    return needs


def needed_for(config: RelationalConfig, name: str) -> list[str]:
    """The tables a build of table `name` needs, in build order: the tables its rows read
    (parent, lookups, siblings), those its late columns read (children aggregated, itself),
    and theirs in turn."""
    specs = {t.name: t for t in config.tables}
    wanted: set[str] = set()
    todo = [name]
    while todo:
        current = todo.pop()
        if current in wanted:
            continue
        wanted.add(current)
        spec = specs[current]
        todo += _needs(spec)
        todo += [c.of for c in spec.columns if isinstance(c, AggregateColumn)]
        todo += [column.table for _, column in spec.references() if column.is_late]
    return [table for table in config.order if table in wanted]


def _cycle(needs: dict[str, set[str]], left: list[str]) -> list[str]:
    path: list[str] = []
    node = left[0]
    while node not in path:
        path.append(node)
        node = sorted(n for n in needs[node] if n in left)[0]
    return [*path[path.index(node) :], node]


def _table_seed(seed: int, table: str) -> int:
    """Each table its own streams: tables sharing a column name are not correlated."""
    import zlib

    return (seed * 1_000_003 + zlib.crc32(table.encode())) % (2**63)


def _table_plan(
    config: RelationalConfig, spec: TableConfig, index: int, names_only: bool = False
) -> tuple[TablePlan | None, Problems]:
    for _, reference in spec.references():  # a key keeps its type in the referencing table
        columns = spec.columns if reference.is_late else config.plan(reference.table).spec.columns
        key = next(c for c in columns if c.name == reference.key)
        reference._arrow = key.arrow_type()
    aliases = {a.name: a for a in _direct(spec)}
    queue = list(aliases.values())
    while queue:  # what the related rows read, readable through them
        alias = queue.pop(0)
        for inner in config.plan(alias.table).aliases.values():
            if inner.name not in aliases and inner.table != spec.name:
                # `via`: the alias whose table holds the column that points at the row.
                via = inner.via if inner.kind == "through" else alias.name
                through = Alias(inner.name, inner.table, "through", inner.column, inner.key, via)
                aliases[inner.name] = through
                queue.append(through)
    related: dict[str, Column] = {}
    late: set[str] = set()  # aggregates and self references: filled after their table
    for alias in aliases.values():
        for column in config.plan(alias.table).config.columns:
            dotted = f"{alias.name}.{column.name}"
            if column.is_late:
                late.add(dotted)
            else:
                related[dotted] = column.model_copy(update={"name": dotted})
    siblings = {s.name: None for s in spec.siblings}
    estimated = _estimate(config, spec)
    data = {
        "name": spec.name,
        "description": spec.description or config.description,
        "rows": max(1, min(10_000_000_000, math.ceil(estimated))),
        "seed": _table_seed(config.seed, spec.name),
        "as_of": config.as_of,
        "chunk_size": spec.chunk_size or config.chunk_size,
        "locale": config.locale,
        "mode": config.mode,
        "columns": list(spec.columns),
        "output": {"dir": config.output_dir, "formats": ["parquet"]},
        "runner": config.runner,
        "provider": config.provider,
        "dedupe": _dedupe(spec),
        "constraints": list(spec.constraints),
    }
    try:
        table_config = DatasetConfig.model_validate(
            data,
            context={
                "related": related,
                "names": siblings,
                "late": late,
                "children": config.children(spec.name),
                "names_only": names_only,
            },
        )
    except ValidationError as exc:
        return None, [(("tables", index, *e["loc"]), _message(e)) for e in _flatten(exc)]
    plan = TablePlan(spec, table_config, aliases, sorted(_needs(spec)), estimated)
    return plan, []


def _flatten(exc: ValidationError) -> list[dict[str, Any]]:
    errors = []
    for error in exc.errors():
        nested = error.get("ctx", {}).get("error")
        if isinstance(nested, CrossFieldError):
            for loc, message in nested.problems:
                errors.append({"loc": tuple(error["loc"]) + loc, "msg": message, "type": "x"})
        else:
            errors.append(error)
    return errors


def _estimate(config: RelationalConfig, spec: TableConfig) -> float:
    if spec.rows is not None:
        return float(spec.rows)
    assert spec.parent is not None and spec.count is not None
    parent = config.plan(spec.parent)
    return parent.estimated_rows * mean_children(spec.count, parent.spec)


def _dedupe(spec: TableConfig) -> DedupeConfig:
    """A composite primary key is unique as a whole: it is the exact-dedupe key (rows that
    repeat it are made again for the same parent)."""
    key = spec.primary_key
    if len(key) > 1 and spec.dedupe.key is None:
        return spec.dedupe.model_copy(update={"key": key, "exact": True})
    return spec.dedupe


def _names(column: AggregateColumn) -> set[str]:
    from synthaix.sqlexpr import checked_aggregate

    return set(checked_aggregate(column.expr)[1])  # checked when the column was read


def _aggregate_problems(config: RelationalConfig) -> Problems:
    problems: Problems = []
    for i, table in enumerate(config.tables):
        for j, column in enumerate(table.columns):
            if not isinstance(column, AggregateColumn):
                continue
            where = ("tables", i, "columns", j)
            child = config._plans.get(column.of)
            if child is None or child.spec.parent != table.name:
                children = ", ".join(config.children(table.name)) or "none"
                problems.append(
                    (
                        (*where, "of"),
                        f"'{column.of}' is not a child of {table.name} (children: {children})",
                    )
                )
                continue
            from synthaix.sqlexpr import aggregate_by, check_result_type

            fields = [(c.name, c.arrow_type()) for c in child.config.columns if not c.is_late]
            late = sorted({c.name for c in child.config.columns if c.is_late} & _names(column))
            if late:  # both are filled after the tables are built, in no set order
                problems.append(
                    (
                        (*where, "expr"),
                        f"reads {', '.join(late)} of {column.of}, filled late itself (an "
                        f"aggregate or a self reference): aggregate the columns it is made "
                        "from instead",
                    )
                )
                continue
            rows = pa.schema([*fields, ("__synthaix_key", pa.int64())]).empty_table()
            try:
                grouped = aggregate_by(rows, "__synthaix_key", column.term)
                column._arrow = grouped.schema.field("value").type
                check_result_type(column._arrow)
            except (ExpressionError, ValueError) as exc:
                problems.append(
                    ((*where, "expr"), f"DuckDB cannot compute it over {column.of}: {exc}")
                )
    return problems


def _siblings_problems(config: RelationalConfig) -> Problems:
    problems: Problems = []
    for i, table in enumerate(config.tables):
        for j, siblings in enumerate(table.siblings):
            where = ("tables", i, "siblings", j)
            other = config._plans.get(siblings.table)
            link = other.spec.parent_link() if other else None
            if (
                other is None
                or table.parent is None
                or link is None
                or (link.table != table.parent)
            ):
                problems.append(
                    (
                        (*where, "table"),
                        f"'{siblings.table}' is not another child of {table.parent or 'a parent'}"
                        f"; siblings lists rows that share this table's parent",
                    )
                )
                continue
            names = [c.name for c in other.config.columns if not c.is_late]
            for name in siblings.columns:
                if name not in names:
                    problems.append(((*where, "columns"), _unknown("column", name, names)))
            problems += _sibling_field_problems(i, table, siblings)
            if siblings.order is not None:
                try:
                    for name in checked(siblings.order[0])[1]:
                        if name not in names:
                            problems.append(((*where, "order_by"), _unknown("column", name, names)))
                except (ExpressionError, ValueError) as exc:
                    problems.append(((*where, "order_by"), str(exc)))
    return problems


def _count_params_problems(index: int, table: TableConfig, parent: TableConfig) -> Problems:
    """count.params keys that the parent's `by` column never takes (`Gold` for `gold`): those
    parents got the default count, silently."""
    count, by = table.count, _count_by(table, parent)
    if count is None or not count.params:
        return []
    domain = by.domain() if isinstance(by, Conditional) else None
    if domain is None:
        return []
    values = [str(v) for v in domain]
    return [
        (
            ("tables", index, "count", "params", key),
            f"{parent.name}.{by.name} never takes the value {key!r}"
            f"{did_you_mean(str(key), values)} (its values: {', '.join(values)})",
        )
        for key in count.params
        if key not in domain and str(key) not in values
    ]


def _sibling_field_problems(index: int, table: TableConfig, siblings: SiblingsConfig) -> Problems:
    """Fields read of a siblings list's rows, in a loop, that its rows do not hold (found
    only when the build rendered the template, after the earlier tables were paid for)."""
    problems: Problems = []
    for k, column in enumerate(table.columns):
        parsed = getattr(column, "parsed_template", None)
        for name, field_ in sorted(loop_fields(parsed) if parsed is not None else ()):
            if name == siblings.name and field_ not in siblings.columns:
                held = ", ".join(siblings.columns)
                problems.append(
                    (
                        ("tables", index, "columns", k),
                        f"reads '{field_}' of the rows of the siblings list '{name}', which "
                        f"hold only {held}{did_you_mean(field_, siblings.columns)} (add it to "
                        "the list's columns to read it)",
                    )
                )
    return problems


def llm_tables(config: RelationalConfig) -> list[str]:
    return [t.name for t in config.tables if any(isinstance(c, LlmColumn) for c in t.columns)]
