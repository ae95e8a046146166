"""Choices: weighted categories and booleans."""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
import pyarrow as pa
from pydantic import Field, field_validator

from synthaix.columns.base import ChunkContext, Column, RelationCheck
from synthaix.columns.conditional import Conditional, Key, Problems, Stat, require, sql_literal
from synthaix.sqlexpr import quote

Scalar = str | int | float


class CategoryColumn(Conditional):
    """One of a fixed set of values, optionally weighted: `{Berlin: 0.3, Paris: 0.7}`."""

    type: Literal["category"] = "category"
    values: dict[Scalar, float] | list[Scalar] | None = Field(
        default=None,
        description="The values, as a list (equal weights) or a mapping value -> weight. "
        "Weights must be positive; they are normalised to sum to 1. Optional with `by` when "
        "params gives values for every value of that column.",
    )

    @field_validator("values", mode="before")
    @classmethod
    def _no_booleans(cls, values: Any) -> Any:
        """YAML reads unquoted yes/no/on/off as booleans, which pydantic took for 1 and 0."""
        items = list(values) if isinstance(values, dict | list) else []  # a mapping's keys
        if any(v is None for v in items):
            raise ValueError("values hold a null (an empty item): a share of nulls is `nullable:`")
        if others := [v for v in items if not isinstance(v, str | int | float)]:
            raise ValueError(
                f"values hold {others[0]}, which YAML reads as a {type(others[0]).__name__}: "
                f"values are text or numbers; quote it ('{others[0]}'), or use a date column"
            )
        read = [str(v).lower() for v in items if isinstance(v, bool)]
        if read:
            raise ValueError(
                f"YAML read values as booleans ({', '.join(read)}): unquoted yes, no, on, off, "
                "true and false (any case: NO, a country code, too) are booleans in YAML; "
                "quote them, e.g. 'no', or use a boolean column"
            )
        return values

    def _check(self) -> None:
        require(self, "values")
        items = self.labels()
        if not items:
            raise ValueError("values must not be empty")
        if len({_kind(v) == "text" for v in items}) > 1:
            raise ValueError("values mix text and numbers; quote the numbers to make all text")
        if len(set(items)) != len(items):
            raise ValueError("values contain duplicates")
        if isinstance(self.values, dict):
            bad = {k: w for k, w in self.values.items() if not w > 0}
            if bad:
                raise ValueError(f"weights must be positive; got {bad}")

    def problems(self, earlier: dict[str, Column]) -> Problems:
        found = super().problems(earlier)
        if len({_kind(v) == "text" for v in self.domain() or []}) > 1:  # type: ignore[arg-type]
            found.append((("params",), "values mix text and numbers across segments; quote them"))
        return found

    def labels(self) -> list[Scalar]:
        """The column's own values (with `by`: those of rows that no params entry covers)."""
        return list(self.values or [])

    def weights(self) -> np.ndarray:
        if not isinstance(self.values, dict):
            return np.full(len(self.labels()), 1 / len(self.labels()))
        raw = np.array(list(self.values.values()), dtype=np.float64)
        return raw / raw.sum()

    def arrow_type(self) -> pa.DataType:
        kinds = {_kind(v) for v in self.domain() or ["text"]}  # type: ignore[arg-type]
        if "text" in kinds:
            return pa.string()
        return pa.float64() if "float" in kinds else pa.int64()  # [1, 2.5]: all floats

    def _domain(self) -> list[Key] | None:
        return list(self.labels())

    def _generate(self, ctx: ChunkContext) -> pa.Array:
        picks = ctx.rng.choice(len(self.labels()), size=ctx.rows, p=self.weights())
        dictionary = pa.array(self.labels(), type=self.arrow_type())
        return dictionary.take(pa.array(picks))

    def _row_checks(self, where: str) -> list[RelationCheck]:
        """Every value of a `by` segment among the segment's own values, row by row: the
        shares check tolerates a few strays, and a filter that reshapes the column skips it."""
        if where == "TRUE":  # the whole column's values are a column check
            return []
        value, allowed = quote(self.name), ", ".join(map(sql_literal, self.labels()))
        text = sql_literal("%,d of %,d rows hold another value")
        sql = (
            f"SELECT failed, printf({text}, failed, n) AS observed FROM (SELECT count(*) FILTER "
            f"(WHERE {value} NOT IN ({allowed})) AS failed, count({value}) AS n "
            f"FROM data WHERE {where})"
        )
        shown = ", ".join(map(str, self.labels()[:8])) + (", ..." if len(self.labels()) > 8 else "")
        return [RelationCheck(self.name, f"{self.name} one of {shown}", sql)]

    def _stats(self, column: str) -> list[Stat]:
        return [
            (f"share of {label}", f"CAST({column} = {sql_literal(label)} AS DOUBLE)", w, _sd(w))
            for label, w in zip(self.labels(), self.weights().tolist(), strict=True)
        ]


class BooleanColumn(Conditional):
    """True with probability `p`."""

    type: Literal["boolean"] = "boolean"
    p: float = Field(default=0.5, ge=0.0, le=1.0, description="Probability of true.")

    def arrow_type(self) -> pa.DataType:
        return pa.bool_()

    def _domain(self) -> list[Key] | None:
        return [False, True]

    def _generate(self, ctx: ChunkContext) -> pa.Array:
        return pa.array(ctx.rng.random(ctx.rows) < self.p)

    def _stats(self, column: str) -> list[Stat]:
        return [("share true", f"CAST({column} AS DOUBLE)", self.p, _sd(self.p))]


def _sd(share: float) -> float:
    return math.sqrt(share * (1 - share))


def _kind(value: Scalar) -> str:
    if isinstance(value, str):
        return "text"
    return "int" if isinstance(value, int) else "float"
