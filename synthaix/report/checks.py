"""Constraint checks: does the built data match its config? Each check passes or fails.
Declared relations (derived values, constraints) are checked by `relations.verify`."""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import Any

from synthaix.columns import Column
from synthaix.columns.choice import BooleanColumn, CategoryColumn
from synthaix.columns.llm import LlmColumn
from synthaix.columns.numeric import FloatColumn, IntegerColumn, SequenceColumn
from synthaix.columns.reference import AggregateColumn
from synthaix.columns.temporal import DateColumn, DatetimeColumn
from synthaix.config import DatasetConfig
from synthaix.report.profile import ColumnProfile, DatasetProfile
from synthaix.sqlexpr import checked


@dataclass
class Check:
    column: str
    name: str
    expected: str
    observed: str
    passed: bool


def run_checks(config: DatasetConfig, profile: DatasetProfile) -> list[Check]:
    rows, seen = f"{config.rows:,} (this build)", f"{profile.rows:,}"
    checks = [Check("(dataset)", "row count", rows, seen, profile.rows >= config.rows)]
    present = {c.name for c in profile.columns}
    # Constraints keep some rows and drop others, which shifts the distributions of the
    # columns they read: those are checked through the relations, not against parameters.
    filtered = {name for c in config.constraints for name in checked(c.check)[1]}
    for column in config.columns:
        if column.name not in present:
            checks.append(Check(column.name, "present", "column exists", "missing", False))
        else:
            checks += _column_checks(column, profile.column(column.name), filtered)
    return checks


def _column_checks(column: Column, seen: ColumnProfile, filtered: set[str]) -> list[Check]:
    name, n, non_null = column.name, seen.rows, seen.rows - seen.nulls
    # A correlated column keeps its declared distribution; other references make the value.
    inputs = column.references() - {getattr(column, "correlated_with", None)}
    # An aggregate is made from its children (null without them): checked with the tables.
    derived = (bool(inputs) or isinstance(column, AggregateColumn)) and not isinstance(
        column, LlmColumn
    )
    out = [_rate(name, "null rate", column.nullable, seen.null_rate, n)]
    if name in filtered:  # a constraint keeps null rows (NULL passes) or drops them
        out = []
    elif derived:  # nulls of its inputs carry through: `nullable` is a floor
        out[0].passed = out[0].passed or seen.null_rate > column.nullable
    if column.unique or isinstance(column, SequenceColumn):
        ok = seen.distinct == non_null
        out.append(Check(name, "unique", f"{non_null:,} distinct", f"{seen.distinct:,}", ok))
    if derived or name in filtered:  # own parameters do not describe it: see its relations
        return out
    if isinstance(column, IntegerColumn | FloatColumn):
        out += _range(name, column.min, column.max, seen.minimum, seen.maximum)
        expected = _expected_mean(column)
        if expected is not None and seen.mean is not None and seen.std is not None:
            slack = 4 * seen.std / math.sqrt(max(non_null, 1)) + 0.03 * abs(expected)
            ok, mean = abs(seen.mean - expected) <= slack, f"{seen.mean:,.3g}"
            out.append(Check(name, "mean", f"{expected:,.3g} ± {slack:,.2g}", mean, ok))
    elif isinstance(column, DateColumn | DatetimeColumn):
        out += _range(name, *column.bounds(), seen.minimum, seen.maximum)
    elif isinstance(column, CategoryColumn):
        out += _weights(column, seen)
    elif isinstance(column, BooleanColumn):
        share = dict(seen.top).get(True, 0) / max(non_null, 1)
        out.append(_rate(name, "share true", column.p, share, non_null))
    elif isinstance(column, LlmColumn):
        longest, limit = seen.max_length, column.max_length
        if limit and longest is not None:
            out.append(Check(name, "max length", f"≤ {limit}", str(longest), longest <= limit))
        if column.enum:
            values = {v for v, _ in seen.top}
            observed = ", ".join(sorted(map(str, values)))
            ok = values <= set(column.enum)
            out.append(Check(name, "allowed values", ", ".join(column.enum), observed, ok))
    return out


def _rate(column: str, name: str, expected: float, observed: float, n: int) -> Check:
    slack = 4 * math.sqrt(max(expected * (1 - expected), 1e-9) / max(n, 1)) + 0.005
    ok = abs(observed - expected) <= slack
    return Check(column, name, f"{expected:.1%} ± {slack:.1%}", f"{observed:.1%}", ok)


def _range(column: str, low: Any, high: Any, seen_low: Any, seen_high: Any) -> list[Check]:
    if seen_low is None:
        return []
    low, high = _comparable(low, seen_low), _comparable(high, seen_high)
    ok = (low is None or seen_low >= low) and (high is None or seen_high <= high)
    expected, observed = f"[{_fmt(low)}, {_fmt(high)}]", f"[{_fmt(seen_low)}, {_fmt(seen_high)}]"
    return [Check(column, "range", expected, observed, ok)]


def _weights(column: CategoryColumn, seen: ColumnProfile) -> list[Check]:
    counts, labels = dict(seen.top), column.labels()
    total = max(seen.rows - seen.nulls, 1)
    unexpected = set(counts) - set(labels)
    observed = f"{seen.distinct} values"
    if unexpected:
        observed += f", unexpected: {sorted(map(str, unexpected))}"
    checks = [
        Check(column.name, "allowed values", f"{len(labels)} values", observed, not unexpected)
    ]
    for label, weight in zip(labels, column.weights(), strict=True):
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
    return f"{value:,.4g}" if isinstance(value, float) else str(value)
