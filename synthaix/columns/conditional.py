"""Conditional parameters: a column sampled per segment of rows, chosen by an earlier column.

`{name: unit_price, type: float, by: category, min: 1, max: 100, params: {books: {min: 5}}}`
draws the rows whose category is books with min 5, and all other rows (values not listed, and
nulls) with the column's own parameters. Each segment is an ordinary column made by merging
its parameters over the own ones, so it is validated, generated and checked by the same code
as an unconditional column: the per-segment distribution holds by construction, and no rows
are drawn and thrown away as a rejection sampler would.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any, NoReturn, Self

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, Field, ValidationError, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from synthaix.columns.base import ChunkContext, Column, RelationCheck
from synthaix.columns.refs import not_a_column
from synthaix.sqlexpr import quote

Key = bool | int | float | str  # a value of the `by` column, as YAML reads it
Problems = list[tuple[tuple[str | int, ...], str]]
#: A declared distribution to compare the output with: (what, SQL expression per row, its
#: declared mean, its declared standard deviation per row).
Stat = tuple[str, str, float, float]

#: Fields that say what the column is rather than how it is sampled: one value for all segments.
FIXED = frozenset(
    {"type", "name", "description", "nullable", "unique", "by", "params"}
    | {"after", "before", "correlated_with", "rho"}
)


def fail_at(loc: tuple[str | int, ...], message: str) -> NoReturn:
    """Fail validation at a field inside the model, so the error names that field's line."""
    _fail([InitErrorDetails(type=PydanticCustomError("value_error", message), loc=loc, input=None)])


def require(model: BaseModel, *names: str) -> None:
    """Fail as for a missing required field, for fields required only in some configurations."""
    missing = [n for n in names if getattr(model, n) is None]
    if missing:
        _fail([InitErrorDetails(type="missing", loc=(n,), input=None) for n in missing])


def _fail(details: list[InitErrorDetails]) -> NoReturn:
    # Raised inside a validator, pydantic nests these under the model's own location.
    raise ValidationError.from_exception_data("column", details)


@dataclass
class SegmentContext(ChunkContext):
    """The context of one segment's rows, which are `chunk_rows` of the chunk."""

    chunk_rows: np.ndarray | None = None


def chunk_row(ctx: ChunkContext, row: int) -> int:
    """The generator's number of row `row` of `ctx` (as the build numbers rows), for errors."""
    rows = ctx.chunk_rows if isinstance(ctx, SegmentContext) else None
    return ctx.first_row + (int(rows[row]) if rows is not None else row)


def sql_literal(value: Key) -> str:
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    return repr(value)


class Conditional(Column):
    """A sampler whose parameters may depend on an earlier column (`by` + `params`).

    Subclasses implement the unconditional behaviour in `_check`, `_generate`, `_capacity`,
    `_domain`, `_stats` and `_row_checks`; this class applies them per segment.
    """

    by: str | None = Field(
        default=None,
        description="An earlier column whose value selects this column's parameters in `params`.",
    )
    params: dict[Key, dict[str, Any]] = Field(
        default_factory=dict,
        description="Value of the `by` column -> parameters for the rows with that value, merged "
        "over the column's own parameters, which apply to the values not listed and to nulls.",
    )

    @model_validator(mode="after")
    def _check_unconditional(self) -> Self:
        if (self.by is None) != (not self.params):
            raise ValueError("by and params go together: by names the column, params maps values")
        if self.by is None:  # with `by`, problems() checks each segment's merged parameters
            self._check()
        return self

    def _check(self) -> None:
        """Raise ValueError (or fail_at) when the column's own parameters cannot be sampled."""

    def references(self) -> set[str]:
        return {self.by} if self.by else set()

    @property
    def variants(self) -> dict[Key | None, Self | ValidationError]:
        """The column for each segment (key None: the default), or why it cannot be built."""
        return {None: self} if self.by is None else self._segments

    @cached_property
    def _segments(self) -> dict[Key | None, Self | ValidationError]:
        # Not cached for an unconditional column: a model holding itself breaks model ==.
        found: dict[Key | None, Self | ValidationError] = {}
        for key, override in [*self.params.items(), (None, {})]:
            merged = self.model_dump(exclude_unset=True, exclude={"by", "params"})
            for field, value in override.items():
                if field in FIXED:
                    continue  # reported by problems()
                current = getattr(self, field, None)
                if isinstance(current, BaseModel) and isinstance(value, dict):
                    # An offset merges key by key; `values` and the like are replaced whole.
                    value = {**current.model_dump(exclude_unset=True), **value}
                merged[field] = value
            try:
                found[key] = type(self).model_validate(merged)
            except ValidationError as exc:
                found[key] = exc
        return found

    def _valid(self) -> list[tuple[Key | None, Self]]:
        return [(k, v) for k, v in self.variants.items() if not isinstance(v, ValidationError)]

    def domain(self) -> list[Key] | None:
        """Every value the column can take, when that is a known finite set (categories)."""
        found: list[Key] = []
        for _, variant in self._valid():
            values = variant._domain()
            if values is None:
                return None
            found += values
        return list(dict.fromkeys(found))

    def _domain(self) -> list[Key] | None:
        return None

    def capacity(self, earlier: Mapping[str, int | None], locale: str) -> int | None:
        domain = self.domain()
        if domain is not None:
            return len(domain)
        # Segments may share values, so their sum bounds the distinct values from above.
        sizes = [variant._capacity(earlier, locale) for _, variant in self._valid()]
        return None if not sizes or None in sizes else sum(s for s in sizes if s is not None)

    def _capacity(self, earlier: Mapping[str, int | None], locale: str) -> int | None:
        return None

    def generate(self, ctx: ChunkContext) -> pa.Array:
        if self.by is None:
            return self._generate(ctx)
        keys = [*self.params, None]
        segment = self._segment_of(ctx.values[self.by], keys)
        order = np.argsort(segment, kind="stable")
        ends = np.cumsum(np.bincount(segment, minlength=len(keys)))
        parts = []
        for key, rows in zip(keys, np.split(order, ends[:-1]), strict=True):
            if len(rows):
                parts.append(self._fill_segment(key, ctx, pa.array(rows)))
        return pa.concat_arrays(parts).take(pa.array(np.argsort(order)))

    def _segment_of(self, by: pa.Array, keys: list[Key | None]) -> np.ndarray:
        """Each row's index in `keys`; the last (the default) for other values and nulls."""
        segment = np.full(len(by), len(keys) - 1)
        for i, key in enumerate(keys[:-1]):
            hit = pc.fill_null(pc.equal(by, pa.scalar(key).cast(by.type)), False)
            segment[hit.to_numpy(zero_copy_only=False)] = i
        return segment

    def _fill_segment(self, key: Key | None, ctx: ChunkContext, rows: pa.Array) -> pa.Array:
        variant = self.variants[key]
        if isinstance(variant, ValidationError):
            raise variant  # only for a column not validated within a dataset config
        # Segments draw one after the other from the column's stream: deterministic per chunk.
        values = {n: ctx.values[n].take(rows) for n in variant.references() if n in ctx.values}
        positions = rows.to_numpy()
        if isinstance(ctx, SegmentContext) and ctx.chunk_rows is not None:
            positions = ctx.chunk_rows[positions]
        sub = SegmentContext(len(rows), ctx.first_row, ctx.rng, ctx.locale, values, positions)
        return variant._generate(sub).cast(self.arrow_type())

    def _generate(self, ctx: ChunkContext) -> pa.Array:
        raise NotImplementedError

    def problems(self, earlier: dict[str, Column]) -> Problems:
        if self.by is None:
            return []
        by = earlier.get(self.by)
        if by is None:
            return [(("by",), not_a_column(self.by))]
        by_type = by.arrow_type()
        domain = by.domain() if isinstance(by, Conditional) else None
        found: Problems = []
        for key, override in self.params.items():
            where: tuple[str | int, ...] = ("params", key)  # type: ignore[assignment]
            if not _fits(key, by_type):
                found.append((where, f"{key!r} is not a value {self.by} can hold ({by_type})"))
            elif domain is not None and key not in domain:
                values = ", ".join(map(str, domain))
                message = f"{self.by} never takes the value {key!r}; its values: {values}"
                found.append((where, message))
            for field in sorted(override.keys() & FIXED):
                message = f"{field} is the same for all segments; set it on the column itself"
                found.append(((*where, field), message))
            found += [((*where, *loc), message) for loc, message in self._errors(key)]
        uses = self._default_uses(domain, by.nullable > 0)
        if uses:
            for loc, message in self._errors(None):
                found.append((loc, f"{message} (the column's own parameters apply to {uses})"))
        return found

    def _default_uses(self, domain: list[Key] | None, nullable: bool) -> str:
        """Which rows the column's own parameters fill, in words; empty if none can."""
        if domain is None:
            return f"the values of {self.by} not listed in params"
        missing = [str(v) for v in domain if v not in self.params]
        uses = [f"{self.by} = {', '.join(missing)}"] if missing else []
        return " and ".join([*uses, f"rows where {self.by} is null"] if nullable else uses)

    def _errors(self, key: Key | None) -> Problems:
        variant = self.variants[key]
        if not isinstance(variant, ValidationError):
            return []
        override = self.params[key] if key is not None else {}
        found: Problems = []
        for error in variant.errors():
            loc, message = tuple(error["loc"]), str(error["msg"]).removeprefix("Value error, ")
            if error["type"] == "extra_forbidden":
                close = difflib.get_close_matches(str(loc[-1]), type(self).model_fields, n=1)
                guess = f"; did you mean '{close[0]}'?" if close else ""
                message = f"unknown parameter '{loc[-1]}'{guess}"
            elif not loc:  # a check across fields: point at the first overridden field it names
                named = [f for f in override if re.search(rf"\b{re.escape(str(f))}\b", message)]
                loc = tuple(named[:1])
            found.append((loc, message))
        return found

    def relation_checks(self, locale: str = "en_US") -> list[RelationCheck]:
        if self.by is None:
            return self._row_checks("TRUE")
        checks = self._segments_check()
        for key, variant in self._valid():
            for check in variant._row_checks(self._where(key)):
                relation = f"{check.relation}, where {self._segment_name(key)}"
                checks.append(dataclasses.replace(check, relation=relation))
        return checks

    def _row_checks(self, where: str) -> list[RelationCheck]:
        """Checks of relations to other columns, over the rows that `where` selects."""
        return []

    def _stats(self, column: str) -> list[Stat]:
        """The declared distribution, as means of per-row SQL expressions over `column`."""
        return []

    def _where(self, key: Key | None) -> str:
        by = quote(self.by or "")
        if key is not None:
            return f"{by} = {sql_literal(key)}"
        listed = ", ".join(sql_literal(k) for k in self.params)
        return f"({by} IS NULL OR {by} NOT IN ({listed}))"

    def _segment_name(self, key: Key | None) -> str:
        return f"{self.by} = {key}" if key is not None else f"{self.by} is another value or null"

    def _segments_check(self) -> list[RelationCheck]:
        """Each segment's observed shares or means against its declared ones, within 4
        standard errors plus 2 % of a standard deviation; failed = segments outside."""
        selects = []
        for key, variant in self._valid():
            stats = variant._stats(quote(self.name))
            if not stats:
                continue
            name = sql_literal(self._segment_name(key))
            labels, exprs, means, sds = zip(*stats, strict=True)
            selects.append(
                f"SELECT {name} AS segment, unnest([{_list(map(sql_literal, labels))}]) AS stat, "
                f"unnest([{_list(f'avg({e})' for e in exprs)}]) AS observed, "
                f"unnest([{_list(f'count({e})' for e in exprs)}]) AS n, "
                f"unnest([{_list(map(_double, means))}]) AS expected, "
                f"unnest([{_list(map(_double, sds))}]) AS sd "
                f"FROM data WHERE {self._where(key)}"
            )
        if not selects:
            return []
        worst = (
            "arg_max(printf('%s: %s %.4g, declared %.4g ± %.2g (n=%,d)', "
            "segment, stat, observed, expected, tol, n), dev / tol)"
        )
        sql = (
            f"WITH s AS ({' UNION ALL '.join(selects)}), "
            "t AS (SELECT *, abs(observed - expected) AS dev, "
            "sd * (4 / sqrt(n) + 0.02) + 1e-9 AS tol FROM s WHERE n > 0), "
            "f AS (SELECT count(DISTINCT segment) FILTER (WHERE dev > tol) AS failed, "
            f"count(DISTINCT segment) AS segments, {worst} AS worst FROM t) "
            "SELECT failed, printf('%d of %d segments off; worst %s', failed, segments, "
            "coalesce(worst, 'none')) AS observed FROM f"
        )
        relation = f"{self.name}: distribution per value of {self.by}, as declared in params"
        return [RelationCheck(self.name, relation, sql, shape=True)]


def _list(items: Any) -> str:
    return ", ".join(items)


def _double(value: float) -> str:
    """A DOUBLE literal, `inf` and `nan` too (bare, DuckDB reads them as column names)."""
    return f"'{value!r}'::DOUBLE"


def _fits(key: Key, kind: pa.DataType) -> bool:
    """Whether a params key can be a value of a column of this arrow type."""
    if pa.types.is_boolean(kind) or isinstance(key, bool):
        return pa.types.is_boolean(kind) and isinstance(key, bool)
    if pa.types.is_integer(kind):
        return isinstance(key, int) or (isinstance(key, float) and key.is_integer())
    if pa.types.is_floating(kind):
        return isinstance(key, int | float)
    if not isinstance(key, str):
        return False
    try:  # text, or a date/time written as text
        pa.scalar(key).cast(kind)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return False
    return True
