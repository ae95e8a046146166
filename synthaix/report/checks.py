"""Constraint checks: does the built data match its config? Each check passes or fails.
Declared relations (derived values, constraints) are checked by `relations.verify`."""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import duckdb

from synthaix.columns import Column
from synthaix.columns.choice import BooleanColumn, CategoryColumn
from synthaix.columns.conditional import Conditional
from synthaix.columns.expression import ExpressionColumn
from synthaix.columns.llm import LlmColumn
from synthaix.columns.numeric import Anchored, FloatColumn, IntegerColumn, SequenceColumn
from synthaix.columns.people import HandleColumn
from synthaix.columns.reference import AggregateColumn, ReferenceColumn
from synthaix.columns.sql import SqlColumn
from synthaix.columns.temporal import DateColumn, DatetimeColumn
from synthaix.config import DatasetConfig, OutputPaths
from synthaix.dedupe.keys import key_columns
from synthaix.errors import SynthaixError
from synthaix.report.profile import (
    ColumnProfile,
    DatasetProfile,
    Source,
    database_source,
    sandboxed,
    source_view,
)
from synthaix.sqlexpr import checked, quote

if TYPE_CHECKING:
    from synthaix.build.manifest import Manifest

#: Per derived column: (its nulls not explained by its inputs, rows whose inputs explain none).
OwnNulls = dict[str, tuple[int, int]]


@dataclass
class Check:
    column: str
    name: str
    expected: str
    observed: str
    passed: bool


def run_checks(
    config: DatasetConfig,
    profile: DatasetProfile,
    manifest: Manifest | None = None,
    nulls: OwnNulls | None = None,
) -> list[Check]:
    """The checks of one table. `manifest`: the build's (what an append's table must hold);
    `nulls`: see `own_nulls`, computed over the profiled rows when not given (a table of
    a multi-table dataset passes its own, over the table joined with the rows it reads)."""
    checks = [row_count(config, profile.rows, manifest)]
    present = {c.name for c in profile.columns}
    filtered = reshaped(config, manifest)
    spans = _spanned_bounds(config, manifest)
    with source_view(profile.source) as con:
        if nulls is None:
            nulls = own_nulls(con, config)
        for column in config.columns:
            if column.name not in present:
                checks.append(Check(column.name, "present", "column exists", "missing", False))
            else:
                seen = profile.column(column.name)
                own = nulls.get(column.name)
                checks += _column_checks(
                    con, column, seen, column.name in filtered, own, spans.get(column.name)
                )
        key = [c.name for c in config.columns if c.primary_key]
        if key and set(key) <= present:
            checks.append(_primary_key(con, key))
    if config.dedupe.exact and profile.duplicate_rows is not None:
        found, over = profile.duplicate_rows, ", ".join(profile.duplicate_key)
        expected = f"no row repeats another's ({over})"
        checks.append(Check("(dataset)", "exact dedupe", expected, f"{found:,}", found == 0))
    return checks


def duckdb_copy(config: OutputPaths, output_dir: Path, table: str, parquet: Source) -> Check | None:
    """Whether the output's DuckDB table holds the rows of its Parquet parts, and no others,
    when it has both: the report checks the Parquet, and an edit of the DuckDB table would
    pass unseen. None: one of the two is not written."""
    if parquet.database is not None or "duckdb" not in config.output.formats:
        return None
    from synthaix.duckdb_sink import fingerprint

    expected = "the same rows as the Parquet parts"
    try:
        database = database_source(config, output_dir, table)
        con = sandboxed([parquet, database])
    except (OSError, SynthaixError):  # held by another program: not checked, not failed
        return None
    with con:
        try:
            (rows, mine), (stored, theirs) = (
                fingerprint(con, database.sql),
                fingerprint(con, parquet.sql),
            )
        except duckdb.Error as exc:  # a column dropped or retyped
            return Check("(dataset)", "duckdb copy", expected, f"differs: {exc}"[:300], False)
    same = rows == stored and mine == theirs
    observed = f"{rows:,} rows, the Parquet {stored:,}" + ("" if same else "; they differ")
    return Check("(dataset)", "duckdb copy", expected, observed, same)


def key_violations(con: duckdb.DuckDBPyConnection, rows: str, key: list[str]) -> tuple[int, int]:
    """Rows of the SQL `rows` repeating another's `key` (single or composite), and rows with
    a null in it: a primary key's two ways to break."""
    terms = ", ".join(quote(name) for name in key)
    any_null = " OR ".join(f"{quote(name)} IS NULL" for name in key)
    [(duplicates, nulls)] = con.execute(
        f"SELECT (SELECT coalesce(sum(n - 1), 0) FROM (SELECT count(*) AS n FROM {rows} "
        f"WHERE NOT ({any_null}) GROUP BY {terms})), (SELECT count(*) FROM {rows} WHERE {any_null})"
    ).fetchall()
    return int(duplicates), int(nulls)


def _primary_key(con: duckdb.DuckDBPyConnection, key: list[str]) -> Check:
    duplicates, nulls = key_violations(con, "data", key)
    observed = f"{duplicates:,} duplicate and {nulls:,} null keys"
    relation = f"({', '.join(key)}) unique and not null"
    return Check("(dataset)", "primary key", relation, observed, duplicates + nulls == 0)


def spanned(config: DatasetConfig, manifest: Manifest | None) -> set[str]:
    """Date and datetime columns with relative times, when the output holds the rows of
    builds at several as_of (appends): their windows differ from build to build, so their
    per-segment ranges and distributions, declared at one as_of, are left out; their range
    over every build is checked instead (see `_spanned_bounds`)."""
    if manifest is None or manifest.as_of_span is None:
        return set()
    return {
        c.name
        for c in config.columns
        if isinstance(c, DateColumn | DatetimeColumn) and c.uses_as_of and c.base is None
    }


def _spanned_bounds(config: DatasetConfig, manifest: Manifest | None) -> dict[str, tuple[Any, Any]]:
    """The range of each `spanned` column over the rows of every build there: from its
    start at the earliest as_of to its end at the latest (over its `by` segments, the
    earliest start and the latest end). Checked at the last build's as_of alone, a daily
    append failed its ranges every day after the first."""
    names = spanned(config, manifest)
    if not names:
        return {}
    assert manifest is not None and manifest.as_of_span is not None
    first, last = (config.with_overrides(as_of=moment) for moment in manifest.as_of_span)

    def bounds(c: Column, side: int) -> list[Any]:
        return [v.bounds()[side] for _, v in c._valid()]  # type: ignore[attr-defined]

    starts = {c.name: min(bounds(c, 0)) for c in first.columns if c.name in names}
    ends = {c.name: max(bounds(c, 1)) for c in last.columns if c.name in names}
    return {name: (starts[name], ends[name]) for name in names}


RESHAPING = 0.01  # redraws above this share of the rows generated reshape their columns


def reshaped(config: DatasetConfig, manifest: Manifest | None = None) -> set[str]:
    """Columns the build's filters reshape, whose shape checks (shares, means, null rates,
    distributions per `by` value, correlations) do not apply; their values still must be
    in their set or range. A filter reshapes the columns it reads and, through them, what
    those were drawn from: a derived column's inputs, a `by` column, a correlated column (a
    constraint on `total = price * 2` reshapes price and, through `price by category`, the
    category shares). Filters: constraints; and, when they redrew over 1 % of the rows
    generated, exact dedupe (its key) and unique values (the unique columns)."""
    names = {name for c in config.constraints for name in checked(c.check)[1]}
    if manifest is not None:
        redrawn = RESHAPING * max(manifest.rows.generated, 1)
        if manifest.dropped.exact_duplicate > redrawn:
            names |= set(key_columns(config))
        if manifest.dropped.unique_value > redrawn:
            names |= {c.name for c in config.columns if c.unique}
    grown = True
    while grown:
        before = len(names)
        for column in config.columns:
            if column.name in names:
                names |= column.references()
            if getattr(column, "correlated_with", None) in names:
                names.add(column.name)
        grown = len(names) > before
    return names


def row_count(config: DatasetConfig, rows: int, manifest: Manifest | None) -> Check:
    """Exactly the rows asked for: an overwrite's table holds this build's `rows`; an
    append's holds the total its manifest records (the earlier rows and this build's)."""
    seen = f"{rows:,}"
    if config.mode != "append":
        return Check(
            "(dataset)", "row count", f"{config.rows:,} (this build)", seen, rows == config.rows
        )
    if manifest is None:  # no record of the earlier rows: only this build's are known
        expected = f"≥ {config.rows:,} (this build; no manifest for the total)"
        return Check("(dataset)", "row count", expected, seen, rows >= config.rows)
    check = manifest_row_count(rows, manifest)
    check.expected = f"{check.expected.removesuffix(')')}, {config.rows:,} asked)"
    check.passed = check.passed and manifest.rows.delivered == config.rows
    return check


def manifest_row_count(rows: int, manifest: Manifest) -> Check:
    """The rows the build's manifest says the table holds (a child table, whose count the
    parents' draws set): a part lost or copied after the build shows here."""
    total, delivered = manifest.rows.total, manifest.rows.delivered
    earlier = f"{total - delivered:,} earlier + " if total != delivered else ""
    expected = f"{total:,} (manifest: {earlier}{delivered:,} this build)"
    return Check("(dataset)", "row count", expected, f"{rows:,}", rows == total)


def null_source(column: Column, config: DatasetConfig) -> str | None:
    """SQL over `data`, true on the rows where a derived column's value is null by its
    inputs (with SQL semantics, as the build computed it); "false" when the inputs never make
    it null; None when that cannot be told from the table's rows (the column is then only
    checked from below). Its other nulls come from `nullable` alone."""
    if isinstance(column, SqlColumn):
        return f"({column.term}) IS NULL"
    if isinstance(column, ReferenceColumn):
        # The looked-up (or parent) row's key: never null for a primary key or a plain
        # unique column; a key that may be null gives null references no table row shows.
        key = config._related.get(f"{column.reads_as}.{column.key}")
        if key is not None and (key.primary_key or (not key.nullable and not key.references())):
            return "false"
        return None
    if isinstance(column, ExpressionColumn):
        return "false"  # nulls render as empty text
    if isinstance(column, HandleColumn):
        return column.null_by_inputs_sql()
    if isinstance(column, Anchored) and column.base is not None:
        return f"{quote(column.base)} IS NULL"  # the base plus an offset: null where it is
    if isinstance(column, Conditional):
        return "false"  # `by` picks parameters (its nulls, the defaults); rho a rank
    return None


def own_nulls(con: duckdb.DuckDBPyConnection, config: DatasetConfig) -> OwnNulls:
    """For each derived column of `config` whose null source is known: its nulls on the rows
    its inputs do not make null, and those rows, counted over the view `data` (the table, or
    the table joined with the related rows it reads)."""
    names = {row[0] for row in con.execute("DESCRIBE data").fetchall()}
    found: OwnNulls = {}
    for column in config.columns:
        if not _derived(column) or column.name not in names:
            continue
        source = null_source(column, config)
        if source is None:
            continue
        try:
            nulls, rows = con.execute(
                f"SELECT count(*) FILTER (WHERE {quote(column.name)} IS NULL AND NOT e), "
                f"count(*) FILTER (WHERE NOT e) FROM (SELECT *, coalesce(({source}), false) "
                "AS e FROM data)"
            ).fetchall()[0]
        except duckdb.Error:  # an input missing or not computable here: unknown
            continue
        found[column.name] = (nulls, rows)
    return found


def _derived(column: Column) -> bool:
    """Made from other columns: its nulls are its own (`nullable`) and its inputs'. A
    correlated column keeps its declared distribution; other references make the value;
    an aggregate is made from its children (null without them)."""
    inputs = column.references() - {getattr(column, "correlated_with", None)}
    return (bool(inputs) or isinstance(column, AggregateColumn)) and not isinstance(
        column, LlmColumn
    )


def _column_checks(
    con: duckdb.DuckDBPyConnection,
    column: Column,
    seen: ColumnProfile,
    filtered: bool,
    own: tuple[int, int] | None = None,
    bounds: tuple[Any, Any] | None = None,
) -> list[Check]:
    """`filtered`: a filter reshapes the column (see `reshaped`). A filter drops rows, which
    reshapes the column's distribution (shares, means, null rates), but it cannot bring in a
    value outside its set or range, nor a null: those checks stay. `bounds`: a date or
    datetime column's range over the as_of of every build there (see `_spanned_bounds`)."""
    name, n, non_null = column.name, seen.rows, seen.rows - seen.nulls
    derived = _derived(column)
    if isinstance(column, AggregateColumn):  # every null checked row by row with the tables
        out = []
    elif derived and own is not None:  # nulls beyond its inputs' are its own: `nullable`
        keep = not filtered or column.nullable == 0
        out = [_own_null_rate(name, column.nullable, *own, seen.nulls)] if keep else []
    elif derived and filtered:
        out = []
    elif derived:  # its inputs may make it null in ways its rows do not show: a floor
        slack = 4 * math.sqrt(max(column.nullable * (1 - column.nullable), 1e-9) / max(n, 1))
        ok = seen.null_rate >= column.nullable - slack - 0.005
        expected = f"≥ {column.nullable:.1%} (inputs' nulls carry through)"
        out = [Check(name, "null rate", expected, f"{seen.null_rate:.1%}", ok)]
    elif isinstance(column, ReferenceColumn) and column.is_late:  # filled after any filter
        out = [_self_null_rate(name, column.nullable, seen.nulls, n)]
    elif column.nullable == 0:
        observed = f"{seen.nulls:,} of {n:,} rows"
        out = [Check(name, "null rate", "none (not nullable)", observed, seen.nulls == 0)]
    else:
        out = [] if filtered else [_rate(name, "null rate", column.nullable, seen.null_rate, n)]
    if column.unique or isinstance(column, SequenceColumn):
        ok = seen.distinct == non_null
        out.append(Check(name, "unique", f"{non_null:,} distinct", f"{seen.distinct:,}", ok))
    if derived and bounds is not None:  # `by` segments' relative windows, over every build
        return out + _range(name, *bounds, seen.minimum, seen.maximum)
    if derived:  # own parameters do not describe it: see its relations
        return out
    if isinstance(column, IntegerColumn | FloatColumn):
        out += _range(name, column.min, column.max, seen.minimum, seen.maximum)
        expected = _expected_mean(column)
        if expected is not None and seen.mean is not None and seen.std is not None and not filtered:
            slack = 4 * seen.std / math.sqrt(max(non_null, 1)) + 0.03 * abs(expected)
            ok, mean = abs(seen.mean - expected) <= slack, significant(seen.mean, 6)
            said = f"{significant(expected, 6)} ± {significant(slack, 2)}"
            out.append(Check(name, "mean", said, mean, ok))
    elif isinstance(column, DateColumn | DatetimeColumn):
        out += _range(name, *(bounds or column.bounds()), seen.minimum, seen.maximum)
    elif isinstance(column, CategoryColumn):
        counts = _counts(con, name, len(column.labels()))
        out.append(_allowed(name, column.labels(), counts, seen.distinct))
        out += [] if filtered else _weights(column, counts, non_null)
    elif isinstance(column, BooleanColumn) and not filtered:
        share = dict(seen.top).get(True, 0) / max(non_null, 1)
        out.append(_rate(name, "share true", column.p, share, non_null))
    elif isinstance(column, LlmColumn):
        out += _llm_checks(con, column, seen)
    return out


def _llm_checks(
    con: duckdb.DuckDBPyConnection, column: LlmColumn, seen: ColumnProfile
) -> list[Check]:
    """The bounds of the column's JSON schema that every answer was validated against (as
    synthaix.llm.parse does): allowed values, else minimum and maximum, longest text, pattern."""
    name, schema = column.name, column.json_schema()
    kind = schema.get("type", "string")
    if schema.get("enum") and kind in ("string", "integer", "number", "boolean"):
        counts = _counts(con, name, len(schema["enum"]))
        return [_allowed(name, schema["enum"], counts, seen.distinct)]
    low, high = schema.get("minimum"), schema.get("maximum")
    if kind in ("integer", "number") and (low, high) != (None, None):
        return _range(name, low, high, seen.minimum, seen.maximum)
    out = []
    longest, limit = seen.max_length, schema.get("maxLength")
    if kind == "string" and limit and longest is not None:
        out.append(Check(name, "max length", f"≤ {limit}", str(longest), longest <= limit))
    if kind == "string" and schema.get("pattern"):
        out += _pattern(con, name, schema["pattern"])
    return out


def _pattern(con: duckdb.DuckDBPyConnection, column: str, pattern: str) -> list[Check]:
    """Texts not matching `pattern`, judged as the answers were (pydantic's regex, searched):
    DuckDB's RE2 reads `\\w` and `\\d` as ASCII, and failed `café` that the answers passed."""
    from pydantic import StringConstraints, TypeAdapter, ValidationError

    try:
        matches = TypeAdapter(Annotated[str, StringConstraints(pattern=pattern)])
        matches.validate_python("")  # compiles the pattern: one it cannot is not checked
    except ValidationError:
        pass
    except Exception:
        return []
    q = quote(column)
    failed = rows = 0
    distinct = f"SELECT {q}, count(*) FROM data WHERE {q} IS NOT NULL GROUP BY 1"
    for value, count in con.execute(distinct).fetchall():
        rows += count
        try:
            matches.validate_python(value)
        except ValidationError:
            failed += count
    observed = f"{failed:,} of {rows:,} do not match"
    return [Check(column, "pattern", pattern, observed, failed == 0)]


def _own_null_rate(column: str, nullable: float, nulls: int, rows: int, all_nulls: int) -> Check:
    """A derived column's nulls on the rows whose inputs do not make it null: `nullable`
    of them (none at all when it is 0: a foreign key not declared nullable is never null)."""
    carried = all_nulls - nulls
    note = f" (+{carried:,} null with their inputs)" if carried else ""
    if nullable == 0:
        observed = f"{nulls:,} of {rows:,} rows{note}"
        return Check(
            column, "null rate", "none where the inputs give a value", observed, nulls == 0
        )
    check = _rate(column, "null rate", nullable, nulls / rows if rows else 0.0, rows)
    check.expected += " where the inputs give a value"
    check.observed += note
    return check


def _self_null_rate(column: str, nullable: float, nulls: int, rows: int) -> Check:
    """A self reference: the dataset's first row has no earlier row to point at, a root
    whatever `nullable` says; the other rows are null at `nullable`."""
    roots = min(rows, 1)
    if nullable == 0:
        expected = "only the first row (a root)" if roots else "none"
        return Check(column, "null rate", expected, f"{nulls:,} of {rows:,} rows", nulls == roots)
    others = rows - roots
    check = _rate(
        column, "null rate", nullable, (nulls - roots) / others if others else 0.0, others
    )
    check.expected += " (the first row aside, a root)"
    return check


def _rate(column: str, name: str, expected: float, observed: float, n: int) -> Check:
    slack = 4 * math.sqrt(max(expected * (1 - expected), 1e-9) / max(n, 1)) + 0.005
    ok = abs(observed - expected) <= slack
    return Check(column, name, f"{expected:.1%} ± {slack:.1%}", f"{observed:.1%}", ok)


def _range(column: str, low: Any, high: Any, seen_low: Any, seen_high: Any) -> list[Check]:
    if seen_low is None or (low is None and high is None):  # no bound: nothing to check
        return []
    low, high = _comparable(low, seen_low), _comparable(high, seen_high)
    ok = (low is None or seen_low >= low) and (high is None or seen_high <= high)
    expected, observed = f"[{_fmt(low)}, {_fmt(high)}]", f"[{_fmt(seen_low)}, {_fmt(seen_high)}]"
    if not ok and expected == observed:  # 50.004 over a max of 50 read [0, 50] on both sides
        observed = f"[{seen_low!r}, {seen_high!r}]"
    return [Check(column, "range", expected, observed, ok)]


def _counts(con: duckdb.DuckDBPyConnection, column: str, allowed: int) -> dict[Any, int]:
    """Rows per value of `column`, for its most frequent values: `allowed` + 5 of them, so
    a value outside a set of `allowed` values is among them whenever there is one."""
    col = quote(column)
    return dict(
        con.execute(
            f"SELECT {col}, count(*) AS n FROM data WHERE {col} IS NOT NULL "
            f"GROUP BY 1 ORDER BY n DESC, 1 LIMIT {int(allowed) + 5}"
        ).fetchall()
    )


def _allowed(column: str, allowed: list[Any], counts: dict[Any, int], distinct: int) -> Check:
    unexpected = sorted(map(str, set(counts) - set(allowed)))
    observed = f"{distinct:,} values"
    if unexpected:
        observed += f", unexpected: {unexpected[:5]}"
    expected = ", ".join(map(str, allowed)) if len(allowed) <= 8 else f"{len(allowed)} values"
    return Check(column, "allowed values", expected, observed, not unexpected)


def _weights(column: CategoryColumn, counts: dict[Any, int], non_null: int) -> list[Check]:
    total, checks = max(non_null, 1), []
    for label, weight in zip(column.labels(), column.weights(), strict=True):
        share = counts.get(label, 0) / total
        checks.append(_rate(column.name, f"share of {label}", float(weight), share, total))
    return checks


def _expected_mean(column: IntegerColumn | FloatColumn) -> float | None:
    lo, hi = column.min, column.max
    if column.distribution == "uniform" and lo is not None and hi is not None:
        return (lo + hi) / 2
    if column.distribution == "normal":
        return column.mean if column.mean is not None else (lo + hi) / 2  # type: ignore[operator]
    if column.distribution in ("lognormal", "poisson") and lo is None and hi is None:
        return column.mean
    return None  # clipped skewed distributions: no simple expected mean


def _comparable(bound: Any, seen: Any) -> Any:
    """Date bounds against timestamps and the other way round (datetime is a date subclass)."""
    seen_is_datetime = isinstance(seen, dt.datetime)
    if isinstance(bound, dt.datetime):
        return bound if seen_is_datetime else bound.date()
    if isinstance(bound, dt.date) and seen_is_datetime:
        return dt.datetime.combine(bound, dt.time())
    return bound


def _fmt(value: Any) -> str:
    if value is None:
        return "open"
    return significant(value, 6) if isinstance(value, float) else str(value)


def significant(value: float, digits: int) -> str:
    """`value` to `digits` significant digits, without an exponent (`{:.3g}` showed a mean of
    9,987 as 1e+04, and one could not tell it from its expected 10,000): 12,345.7, 0.0123."""
    if value == 0 or not math.isfinite(value):
        return f"{value:g}"
    if not 1e-6 <= abs(value) < 1e15:  # beyond, an exponent is the readable form
        return f"{value:,.{digits}g}"
    decimals = digits - 1 - math.floor(math.log10(abs(value)))
    text = f"{round(value, decimals):,.{max(decimals, 0)}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text
