"""A typed value derived from earlier columns of the row by a DuckDB scalar expression:
`{name: total, type: sql, expr: "round(quantity * unit_price, 2)", as: "decimal(10,2)"}`.

Evaluated per chunk, vectorised, on the Arrow columns (zero copy), with SQL semantics: a null
input gives what DuckDB gives (`1 + NULL` is NULL; `coalesce` chooses). The type is the
expression's own as DuckDB binds it over the earlier columns, or `as`. Safety: `sqlexpr.py`.
"""

from __future__ import annotations

from functools import cached_property
from typing import Annotated, Literal

import pyarrow as pa
from pydantic import AfterValidator, ConfigDict, Field, PrivateAttr, field_validator

from synthaix.columns.base import ChunkContext, Column, RelationCheck
from synthaix.errors import SynthaixError
from synthaix.sqlexpr import (
    ExpressionError,
    bind,
    check_result_type,
    checked,
    evaluate,
    failing_row,
    quote,
    sql_type,
)


class DerivedValueError(SynthaixError):
    """A derived value that cannot be computed for some row (never retried)."""

    def __init__(self, message: str, *, column: str, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.column = column


class SqlColumn(Column):
    """A value computed from earlier columns of the row by a DuckDB expression."""

    model_config = ConfigDict(populate_by_name=True)

    type: Literal["sql"] = "sql"
    expr: str = Field(
        description="DuckDB scalar expression over earlier columns: arithmetic, CASE, date "
        "and string functions, e.g. round(quantity * unit_price, 2)."
    )
    as_: Annotated[str | None, AfterValidator(checked_type)] = Field(
        default=None,
        alias="as",
        description="Type of the value: integer, bigint, double, decimal(p,s), boolean, date, "
        "timestamp or text (default: the expression's own).",
    )
    _arrow: pa.DataType | None = PrivateAttr(default=None)

    @field_validator("expr")
    @classmethod
    def _check_expr(cls, expr: str) -> str:
        checked(expr)
        return expr

    @cached_property
    def term(self) -> str:
        """The SQL that computes the value, as DuckDB rendered the checked expression."""
        rendered = checked(self.expr)[0]
        return f"CAST(({rendered}) AS {sql_type(self.as_)})" if self.as_ else f"({rendered})"

    def references(self) -> set[str]:
        return set(checked(self.expr)[1])

    def problems(self, earlier: dict[str, Column]) -> list[tuple[tuple[str | int, ...], str]]:
        schema = pa.schema([(c.name, c.arrow_type()) for c in earlier.values()])
        try:
            self._arrow = bind(self.term, schema)
            check_result_type(self._arrow)
        except ExpressionError as exc:
            return [(("expr",), f"DuckDB cannot compute it over the earlier columns: {exc}")]
        return []

    def arrow_type(self) -> pa.DataType:
        return self._arrow if self._arrow is not None else pa.null()

    def relation_checks(self, locale: str = "en_US") -> list[RelationCheck]:
        name = quote(self.name)
        differs = f"{name} IS DISTINCT FROM {self.term}"
        if self.nullable:  # rows nulled on purpose are not derived values
            differs = f"{name} IS NOT NULL AND {differs}"
        sql = (
            f"SELECT count(*) FILTER (WHERE {differs}) AS failed, "
            f"format('{{:,}} of {{:,}} rows differ', failed, count(*)) AS observed FROM data"
        )
        return [RelationCheck(self.name, f"{self.name} = {self.expr}", sql)]

    def generate(self, ctx: ChunkContext) -> pa.Array:
        import duckdb

        names = sorted(self.references())
        inputs = pa.table({n: ctx.values[n] for n in names} if names else {"_": pa.nulls(ctx.rows)})
        try:
            return evaluate([self.term], inputs).column(0).combine_chunks()
        except duckdb.Error:
            row, message = failing_row(self.term, inputs)
            values = ", ".join(f"{n}={inputs[n][row].as_py()!r}" for n in names)
            raise DerivedValueError(
                f"column '{self.name}': cannot compute row {ctx.first_row + row} ({values}): "
                f"{message}",
                column=self.name,
                hint="guard the expression (CASE WHEN ..., nullif, TRY(...)) or fix the inputs",
            ) from None


def checked_type(name: str | None) -> str | None:
    """An `as:` type SynthAIx accepts (sql and aggregate columns), else a ValueError."""
    if name is not None:
        try:
            sql_type(name)
        except ExpressionError as exc:
            raise ValueError(str(exc)) from None
    return name
