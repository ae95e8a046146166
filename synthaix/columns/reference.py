"""Columns of multi-table datasets (`tables:`): a foreign key, and a parent aggregate.

- `reference` holds a key of another table's row: the parent's (one per child row, aligned to
  the parent's chunk), a looked-up row of any earlier table (uniform, Zipf or weighted by a
  column), or an earlier row of the same table (a self reference, acyclic by construction).
  The referenced row's fields are readable by later columns as `<alias>.<field>`.
- `aggregate` is computed after the child table exists, in DuckDB:
  `{name: total, type: aggregate, of: items, expr: "sum(qty * unit_price)", default: 0}`.

Both are placed by `synthaix.relational`: the chunk generator fills references from the
related rows it was given, and the two late kinds (self references, aggregates) are written
once the table, or its children, are complete. Nothing can read a late column.
"""

from __future__ import annotations

from typing import Annotated, Literal

import pyarrow as pa
from pydantic import AfterValidator, ConfigDict, Field, PrivateAttr, field_validator

from synthaix.columns.base import IDENTIFIER, ChunkContext, Column, StrictModel
from synthaix.columns.sql import checked_type
from synthaix.sqlexpr import sql_type

TARGET = IDENTIFIER.removesuffix("$") + r"\." + IDENTIFIER.removeprefix("^")


class ZipfWeights(StrictModel):
    """Popularity by rank: row k of the target (in its order) is drawn with weight 1/k^s."""

    zipf: float = Field(gt=0, le=10, description="Exponent s of the rank law (1.1 is typical).")


class ColumnWeights(StrictModel):
    """Rows drawn in proportion to a numeric column of the target (nulls weigh 0)."""

    column: str = Field(pattern=IDENTIFIER, description="A numeric column of the target table.")


class ReferenceColumn(Column):
    """A key of a related row: `{name: customer_id, type: reference, to: customers.customer_id}`."""

    type: Literal["reference"] = "reference"
    to: str = Field(
        pattern=TARGET, description="The referenced key, as table.column (the table's key)."
    )
    alias: str | None = Field(
        default=None,
        pattern=IDENTIFIER,
        description="Name the referenced row's fields are read under (default: the table's "
        "name), e.g. alias: manager gives {{ manager.name }}; needed when two references "
        "point at one table.",
    )
    weights: Literal["uniform"] | ZipfWeights | ColumnWeights = Field(
        default="uniform",
        description="How a looked-up row is chosen: uniform, {zipf: 1.1}, or {column: "
        "popularity}. The parent reference always takes the row's own parent.",
    )
    _arrow: pa.DataType | None = PrivateAttr(default=None)
    _self: bool = PrivateAttr(default=False)

    @property
    def table(self) -> str:
        return self.to.split(".")[0]

    @property
    def key(self) -> str:
        return self.to.split(".")[1]

    @property
    def reads_as(self) -> str:
        return self.alias or self.table

    @property
    def is_late(self) -> bool:
        return self._self

    def references(self) -> set[str]:
        return set() if self._self else {f"{self.reads_as}.{self.key}"}

    def arrow_type(self) -> pa.DataType:
        return self._arrow if self._arrow is not None else pa.null()

    def generate(self, ctx: ChunkContext) -> pa.Array:
        if self._self:
            # A placeholder: the table's own earlier rows are only known once it is built.
            # Non-null marks the rows that get a reference (`nullable` makes the roots).
            return pa.array([0] * ctx.rows, pa.int64()).cast(self.arrow_type(), safe=False)
        return ctx.values[f"{self.reads_as}.{self.key}"]


class AggregateColumn(Column):
    """A parent's value computed over its children once they exist."""

    model_config = ConfigDict(populate_by_name=True)

    type: Literal["aggregate"] = "aggregate"
    of: str = Field(pattern=IDENTIFIER, description="The child table aggregated over.")
    expr: str = Field(
        description="DuckDB aggregate over the child's columns, e.g. sum(qty * unit_price), "
        "count(*), max(shipped_at)."
    )
    as_: Annotated[str | None, AfterValidator(checked_type)] = Field(
        default=None, alias="as", description="Type of the value (default: the aggregate's own)."
    )
    default: float | int | str | bool | None = Field(
        default=None,
        description="Value for parents without children (default: null; 0 suits sums and counts).",
    )
    _arrow: pa.DataType | None = PrivateAttr(default=None)

    @field_validator("expr")
    @classmethod
    def _check_expr(cls, expr: str) -> str:
        from synthaix.sqlexpr import checked_aggregate

        checked_aggregate(expr)
        return expr

    @property
    def is_late(self) -> bool:
        return True

    @property
    def term(self) -> str:
        from synthaix.sqlexpr import checked_aggregate

        rendered = checked_aggregate(self.expr)[0]
        return f"CAST(({rendered}) AS {sql_type(self.as_)})" if self.as_ else f"({rendered})"

    def arrow_type(self) -> pa.DataType:
        return self._arrow if self._arrow is not None else pa.null()

    def generate(self, ctx: ChunkContext) -> pa.Array:
        return pa.nulls(ctx.rows, self.arrow_type())  # filled once the children exist
