"""Table constraints: `constraints: ["discount <= total", {name: ..., check: ...}]`.

Each is a DuckDB boolean expression over the row's columns, checked like a `sql` column
(`sqlexpr.py`). A generated row that breaks one is dropped in its chunk and replaced in the
build's fill-up rounds; the drops are counted per constraint. As in a SQL CHECK constraint, a
row passes when the expression is true or NULL. Filtering wastes the rows it drops, so
construction (offsets, parameters `by` a column) is better where it can express the rule;
a constraint that passes almost no sampled row is refused before anything is written.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field, field_validator

from synthaix.columns.base import RelationCheck, StrictModel
from synthaix.columns.refs import did_you_mean
from synthaix.errors import SynthaixError
from synthaix.sqlexpr import ExpressionError, bind, checked, evaluate, failing_row

if TYPE_CHECKING:
    from synthaix.config import DatasetConfig

SAMPLE_ROWS = 2_000
#: A constraint that passes fewer sampled rows is refused: the build would generate over 100
#: rows for each one it keeps.
MIN_PASS_RATE = 0.01


class Constraint(StrictModel):
    """A rule every delivered row satisfies."""

    check: str = Field(
        description="DuckDB boolean expression over the row's columns, e.g. discount <= total."
    )
    name: str | None = Field(
        default=None, description="Name in the summary and report (default: the check)."
    )

    @field_validator("check")
    @classmethod
    def _check(cls, check: str) -> str:
        checked(check)
        return check

    @property
    def label(self) -> str:
        return self.name or self.check

    @cached_property
    def term(self) -> str:
        return f"({checked(self.check)[0]})"

    def relation_check(self) -> RelationCheck:
        sql = (
            f"SELECT count(*) FILTER (WHERE NOT {self.term}) AS failed, "
            "format('{:,} of {:,} rows break it', failed, count(*)) AS observed FROM data"
        )
        return RelationCheck("", f"constraint {self.label}", sql)


def as_constraint(item: Any) -> Any:
    """A plain string in the YAML is the check itself."""
    return {"check": item} if isinstance(item, str) else item


def unknown_columns(config: DatasetConfig) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """Constraints that read a name that is no column."""
    names = [*config._related, *(c.name for c in config.columns)]
    for index, constraint in enumerate(config.constraints):
        unknown = sorted(set(checked(constraint.check)[1]) - set(names))
        if unknown:
            guess = did_you_mean(unknown[0], names)
            message = f"'{unknown[0]}' is not a column{guess} (columns: {', '.join(names)})"
            yield ("constraints", index), message


def problems(config: DatasetConfig) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """Unknown columns and non-boolean checks; then, if all bind, the pass rate on a sample."""
    columns = [*config._related.values(), *config.columns]
    schema = pa.schema([(c.name, c.arrow_type()) for c in columns])
    unknown = list(unknown_columns(config))
    yield from unknown
    bound = not unknown
    for index, constraint in enumerate(config.constraints):
        where = ("constraints", index)
        if set(checked(constraint.check)[1]) - set(schema.names):
            continue  # said above
        try:
            kind = bind(constraint.term, schema)
        except ExpressionError as exc:
            bound = False
            yield where, f"DuckDB cannot check it: {exc}"
            continue
        if not pa.types.is_boolean(kind):
            bound = False
            yield where, f"it gives {kind}, not true/false; write a comparison such as a <= b"
    derived = any(c.type == "sql" for c in config.columns)  # type: ignore[attr-defined]
    # A table of a multi-table dataset reads rows that exist only at build time: no sample.
    if bound and (config.constraints or derived) and not config._related:
        yield from _sample_problems(config)


def _sample_problems(config: DatasetConfig) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """Derived values and constraints tried on sampled rows, so what fails at run time (a
    division by zero, a decimal too narrow, a constraint almost never true) is found here."""
    from synthaix.columns.sql import DerivedValueError
    from synthaix.generate import Chunk, generate_chunk

    try:
        sample = generate_chunk(config, Chunk(0, 0, SAMPLE_ROWS), constrained=False).table
    except DerivedValueError as exc:
        index = next(i for i, c in enumerate(config.columns) if c.name == exc.column)
        yield ("columns", index, "expr"), f"on sampled rows: {exc}"
        return
    if not config.constraints:
        return
    passed = _passes(config, sample)
    rare = False
    for index, constraint in enumerate(config.constraints):
        rate = float(np.mean(passed[index]))
        if rate < MIN_PASS_RATE:
            rare = True
            yield (
                ("constraints", index),
                f"constraint '{constraint.label}' holds for only {rate:.1%} of {SAMPLE_ROWS:,} "
                f"sampled rows (at least {MIN_PASS_RATE:.0%} must): build the relation into the "
                "columns instead (after/before offsets, parameters by a column, a sql column)",
            )
    if not rare and len(passed) > 1:
        yield from _together(config, passed)


def _together(
    config: DatasetConfig, passed: list[np.ndarray]
) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """Constraints that each hold often enough but seldom together (`a > b` and `b > a`):
    the pair that holds together least, else all of them."""
    rate = float(np.mean(np.logical_and.reduce(passed)))
    if rate >= MIN_PASS_RATE:
        return
    pairs = [(i, j) for j in range(len(passed)) for i in range(j)]
    i, j = min(pairs, key=lambda p: float(np.mean(passed[p[0]] & passed[p[1]])))
    pair_rate = float(np.mean(passed[i] & passed[j]))
    labels = [c.label for c in config.constraints]
    if pair_rate < MIN_PASS_RATE:
        which, rate, at = f"constraints '{labels[i]}' and '{labels[j]}'", pair_rate, j
    else:
        which, at = "the constraints (" + ", ".join(f"'{label}'" for label in labels) + ")", 0
    yield (
        ("constraints", at),
        f"{which} hold together for only {rate:.1%} of {SAMPLE_ROWS:,} sampled rows, though "
        f"each holds alone (at least {MIN_PASS_RATE:.0%} must): they contradict each other, "
        "or nearly; relax or drop one",
    )


def apply(config: DatasetConfig, table: pa.Table) -> tuple[np.ndarray, dict[str, int]]:
    """Which rows pass every constraint, and how many rows each constraint dropped."""
    if not config.constraints or not table.num_rows:
        return np.ones(table.num_rows, dtype=bool), {}
    passed = _passes(config, table)
    dropped = {c.label: int((~ok).sum()) for c, ok in zip(config.constraints, passed, strict=True)}
    return np.logical_and.reduce(passed), {k: v for k, v in dropped.items() if v}


def passing_so_far(config: DatasetConfig, values: dict[str, pa.Array], rows: int) -> np.ndarray:
    """Rows that pass every constraint over the columns generated so far (before an LLM stage:
    rows dropped later anyway cost no request). Counting is left to `apply`."""
    ready = [c for c in config.constraints if set(checked(c.check)[1]) <= values.keys()]
    if not ready:
        return np.ones(rows, dtype=bool)
    table = pa.table({name: values[name] for name in values})
    early = config.model_copy(update={"constraints": ready})
    return np.logical_and.reduce(_passes(early, table))


def _passes(config: DatasetConfig, table: pa.Table) -> list[np.ndarray]:
    import duckdb

    terms = [c.term for c in config.constraints]
    try:
        result = evaluate(terms, table)
    except duckdb.Error:
        for constraint in config.constraints:  # find which one, and on which row
            row, message = failing_row(constraint.term, table)
            if message:
                raise ConstraintError(
                    f"constraint '{constraint.label}' cannot be checked on a generated row "
                    f"({_row(table, row)}): {message}",
                    hint="guard the expression (CASE WHEN ..., nullif, TRY(...))",
                ) from None
        raise
    # SQL CHECK semantics: NULL (unknown) passes.
    return [pc.fill_null(column, True).to_numpy(zero_copy_only=False) for column in result]


def _row(table: pa.Table, row: int) -> str:
    return ", ".join(f"{name}={table[name][row].as_py()!r}" for name in table.column_names)


class ConstraintError(SynthaixError):
    """A constraint that fails to evaluate (not one that is false) on a generated row."""
