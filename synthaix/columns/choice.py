"""Choices: weighted categories and booleans."""

from __future__ import annotations

from typing import Literal, Self

import numpy as np
import pyarrow as pa
from pydantic import Field, model_validator

from synthaix.columns.base import ChunkContext, Column

Scalar = str | int | float


class CategoryColumn(Column):
    """One of a fixed set of values, optionally weighted: `{Berlin: 0.3, Paris: 0.7}`."""

    type: Literal["category"] = "category"
    values: dict[Scalar, float] | list[Scalar] = Field(
        description="The values, as a list (equal weights) or a mapping value -> weight. "
        "Weights must be positive; they are normalised to sum to 1."
    )

    @model_validator(mode="after")
    def _check_values(self) -> Self:
        items = self.values if isinstance(self.values, list) else list(self.values)
        if not items:
            raise ValueError("values must not be empty")
        if any(isinstance(v, bool) for v in items):
            raise ValueError("YAML read a value as true/false: quote it, e.g. 'yes'")
        kinds = {_kind(v) for v in items}
        if len(kinds) > 1:
            raise ValueError("values mix text and numbers; quote the numbers to make all text")
        if len(set(items)) != len(items):
            raise ValueError("values contain duplicates")
        if isinstance(self.values, dict):
            bad = {k: w for k, w in self.values.items() if not w > 0}
            if bad:
                raise ValueError(f"weights must be positive; got {bad}")
        return self

    def labels(self) -> list[Scalar]:
        return list(self.values)

    def weights(self) -> np.ndarray:
        if isinstance(self.values, list):
            return np.full(len(self.values), 1 / len(self.values))
        raw = np.array(list(self.values.values()), dtype=np.float64)
        return raw / raw.sum()

    def arrow_type(self) -> pa.DataType:
        return {"text": pa.string(), "int": pa.int64(), "float": pa.float64()}[
            _kind(self.labels()[0])
        ]

    def capacity(self, earlier: dict[str, int | None], locale: str) -> int | None:
        return len(self.values)

    def generate(self, ctx: ChunkContext) -> pa.Array:
        picks = ctx.rng.choice(len(self.values), size=ctx.rows, p=self.weights())
        dictionary = pa.array(self.labels(), type=self.arrow_type())
        return dictionary.take(pa.array(picks))


class BooleanColumn(Column):
    """True with probability `p`."""

    type: Literal["boolean"] = "boolean"
    p: float = Field(default=0.5, ge=0.0, le=1.0, description="Probability of true.")

    def arrow_type(self) -> pa.DataType:
        return pa.bool_()

    def capacity(self, earlier: dict[str, int | None], locale: str) -> int | None:
        return 2

    def generate(self, ctx: ChunkContext) -> pa.Array:
        return pa.array(ctx.rng.random(ctx.rows) < self.p)


def _kind(value: Scalar) -> str:
    if isinstance(value, str):
        return "text"
    return "int" if isinstance(value, int) else "float"
