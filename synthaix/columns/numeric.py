"""Numbers: integer and float with a distribution, and gap-free sequences."""

from __future__ import annotations

import math
from typing import Literal, Self

import numpy as np
import pyarrow as pa
from pydantic import Field, model_validator

from synthaix.columns.base import ChunkContext, Column

Distribution = Literal["uniform", "normal", "lognormal", "poisson"]


class _Numeric(Column):
    min: float | None = Field(
        default=None, description="Smallest value; samples below are clipped."
    )
    max: float | None = Field(default=None, description="Largest value; samples above are clipped.")
    distribution: Distribution = Field(
        default="uniform",
        description="uniform (needs min and max), normal (mean, std), lognormal (mean and std "
        "of the values themselves, mean > 0) or poisson (mean).",
    )
    mean: float | None = Field(default=None, description="Mean of normal/lognormal/poisson.")
    std: float | None = Field(
        default=None, gt=0, description="Standard deviation (normal, lognormal)."
    )

    @model_validator(mode="after")
    def _check_parameters(self) -> Self:
        lo, hi, dist = self.min, self.max, self.distribution
        if lo is not None and hi is not None and lo > hi:
            raise ValueError(f"min ({_num(lo)}) is greater than max ({_num(hi)}); swap them")
        if dist == "uniform" and (lo is None or hi is None):
            raise ValueError("a uniform distribution needs both min and max")
        if (
            dist == "normal"
            and (lo is None or hi is None)
            and (self.mean is None or self.std is None)
        ):
            raise ValueError("a normal distribution needs mean and std (or both min and max)")
        if dist == "lognormal" and (self.mean is None or self.std is None or self.mean <= 0):
            raise ValueError("a lognormal distribution needs mean > 0 and std > 0")
        if dist == "poisson" and (self.mean is None or self.mean < 0):
            raise ValueError("a poisson distribution needs mean >= 0")
        return self

    def _sample(self, rng: np.random.Generator, n: int, integer: bool) -> np.ndarray:
        lo, hi = self.min, self.max
        match self.distribution:
            case "uniform":
                assert lo is not None and hi is not None
                if integer:
                    return rng.integers(math.ceil(lo), math.floor(hi), size=n, endpoint=True)
                values = rng.uniform(lo, hi, size=n)
            case "normal":
                mean = self.mean if self.mean is not None else (lo + hi) / 2  # type: ignore[operator]
                std = self.std if self.std is not None else (hi - lo) / 6  # type: ignore[operator]
                values = rng.normal(mean, std, size=n)
            case "lognormal":
                assert self.mean is not None and self.std is not None
                sigma2 = math.log1p((self.std / self.mean) ** 2)
                mu = math.log(self.mean) - sigma2 / 2
                values = rng.lognormal(mu, math.sqrt(sigma2), size=n)
            case "poisson":
                values = rng.poisson(self.mean, size=n).astype(np.float64)
        if integer:
            values = np.rint(values)
        if lo is not None or hi is not None:
            values = np.clip(values, lo, hi)
        return values


class IntegerColumn(_Numeric):
    """Whole numbers, e.g. ages or quantities."""

    type: Literal["integer"] = "integer"

    @model_validator(mode="after")
    def _check_integer_range(self) -> Self:
        if (
            self.min is not None
            and self.max is not None
            and math.ceil(self.min) > math.floor(self.max)
        ):
            raise ValueError(f"no whole number lies between min ({self.min}) and max ({self.max})")
        return self

    def arrow_type(self) -> pa.DataType:
        return pa.int64()

    def capacity(self, earlier: dict[str, int | None], locale: str) -> int | None:
        if self.min is None or self.max is None:
            return None
        return math.floor(self.max) - math.ceil(self.min) + 1

    def generate(self, ctx: ChunkContext) -> pa.Array:
        return pa.array(self._sample(ctx.rng, ctx.rows, integer=True).astype(np.int64))


class FloatColumn(_Numeric):
    """Real numbers, e.g. prices or sensor readings; `decimals` rounds them."""

    type: Literal["float"] = "float"
    decimals: int | None = Field(
        default=None, ge=0, le=12, description="Round to this many decimals."
    )

    def arrow_type(self) -> pa.DataType:
        return pa.float64()

    def capacity(self, earlier: dict[str, int | None], locale: str) -> int | None:
        if self.decimals is None or self.min is None or self.max is None:
            return None
        return math.floor((self.max - self.min) * 10**self.decimals) + 1

    def generate(self, ctx: ChunkContext) -> pa.Array:
        values = self._sample(ctx.rng, ctx.rows, integer=False)
        if self.decimals is not None:
            values = np.round(values, self.decimals)
        return pa.array(values)


class SequenceColumn(Column):
    """start, start+step, ... by row position: ids that are unique by construction.

    Rows dropped as duplicates leave gaps; appended builds continue after the existing rows.
    """

    type: Literal["sequence"] = "sequence"
    start: int = Field(default=1, description="Value of the first row.")
    step: int = Field(default=1, description="Difference between consecutive rows (not 0).")

    @model_validator(mode="after")
    def _check_step(self) -> Self:
        if self.step == 0:
            raise ValueError("step must not be 0")
        return self

    def arrow_type(self) -> pa.DataType:
        return pa.int64()

    def generate(self, ctx: ChunkContext) -> pa.Array:
        index = np.arange(ctx.first_row, ctx.first_row + ctx.rows, dtype=np.int64)
        return pa.array(self.start + self.step * index)


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)
