"""Numbers: integer and float with a distribution, and gap-free sequences.

Also what numbers share with dates and times (which are numbers of days or seconds here):
`Sampler`, a distribution with clipping bounds, sampled directly or through normal scores for
a correlation; and `Anchored`, a value at a sampled offset from an earlier column.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, ClassVar, Literal, Self

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field, WithJsonSchema, model_validator

from synthaix.columns.base import ChunkContext, Column, RelationCheck, StrictModel
from synthaix.columns.conditional import (
    Conditional,
    Problems,
    Stat,
    chunk_row,
    fail_at,
    quote,
    sql_literal,
)
from synthaix.columns.refs import not_a_column
from synthaix.errors import SynthaixError

Distribution = Literal["uniform", "normal", "lognormal", "poisson"]
# A number that stays an exact int when written as one (as a float, 2**53 + 1 would round).
# JSON Schema's "number" takes both.
Number = Annotated[int | float, WithJsonSchema({"type": "number"})]
Amount = Number | str  # a plain number, or for dates and times a duration such as 5d
INT64 = (-(2**63), 2**63 - 1)


class OutOfRangeError(SynthaixError):
    """A value the column's type cannot hold: an offset that runs past the largest integer or
    the last date, or a distribution without bounds that draws past them (never retried)."""


# Acklam's rational approximation of the normal quantile function (relative error < 1.2e-9).
_A = (-39.69683028665376, 220.9460984245205, -275.9285104469687, 138.3577518672690)
_A += (-30.66479806614716, 2.506628277459239)
_B = (-54.47609879822406, 161.5858368580409, -155.6989798598866, 66.80131188771972)
_B += (-13.28068155288572, 1.0)
_C = (-0.007784894002430293, -0.3223964580411365, -2.400758277161838, -2.549732539343734)
_C += (4.374664141464968, 2.938163982698783)
_D = (0.007784695709041462, 0.3224671290700398, 2.445134137142996, 3.754408661907416, 1.0)
# Numerical Recipes' (2nd ed., 6.2) erfc: fractional error below 1.2e-7 everywhere.
_ERFC = (0.17087277, -0.82215223, 1.48851587, -1.13520398, 0.27886807, -0.18628806)
_ERFC += (0.09678418, 0.37409196, 1.00002368, -1.26551223)
_GRID = 100_000  # quantiles averaged for a distribution's declared mean and spread


def ndtri(p: np.ndarray) -> np.ndarray:
    """Standard normal quantiles of probabilities in (0, 1), vectorised. The error (below
    1.2e-9) is far below the sampling noise of any column they feed; scipy is not needed."""
    q = p - 0.5
    r = q * q
    central = q * np.polyval(_A, r) / np.polyval(_B, r)
    t = np.sqrt(-2 * np.log(np.minimum(p, 1 - p)))
    tail = np.where(p < 0.5, 1, -1) * np.polyval(_C, t) / np.polyval(_D, t)
    return np.where(np.abs(q) <= 0.5 - 0.02425, central, tail)


def ndtr(z: np.ndarray) -> np.ndarray:
    """Standard normal probabilities, vectorised (error below 1.2e-7 of the tail probability)."""
    x = np.abs(z) / math.sqrt(2)
    t = 1 / (1 + 0.5 * x)
    upper = 0.5 * t * np.exp(-x * x + np.polyval(_ERFC, t))
    return np.where(z >= 0, 1 - upper, upper)


def _poisson_quantile(mean: float, u: np.ndarray) -> np.ndarray:
    """The smallest k with P(K <= k) >= u, from the pmf over mean ± 12 sd (all but ~1e-30
    of the mass), built by the recurrence p(k) = p(k-1) mean / k, vectorised."""
    if mean == 0:
        return np.zeros(len(u))
    if mean > 1e7:  # the normal approximation is exact to ~1e-4 here, and the table is large
        return np.rint(mean + math.sqrt(mean) * ndtri(u))
    spread = 12 * math.sqrt(mean) + 12
    k = np.arange(max(0, math.floor(mean - spread)), math.ceil(mean + spread) + 1)
    first = k[0] * math.log(mean) - mean - math.lgamma(k[0] + 1)
    log_pmf = first + np.concatenate([[0.0], np.cumsum(math.log(mean) - np.log(k[1:]))])
    cdf = np.cumsum(np.exp(log_pmf))
    return k[np.minimum(np.searchsorted(cdf, u), len(k) - 1)].astype(np.float64)


@dataclass(frozen=True)
class Sampler:
    """A distribution in one unit (a value, or an offset in seconds, days or months) whose
    samples are clipped to [lo, hi] and, if `integer`, rounded to whole units."""

    distribution: Distribution = "uniform"
    lo: float | None = None
    hi: float | None = None
    mean: float | None = None
    std: float | None = None
    integer: bool = False

    def problem(self) -> str | None:
        lo, hi, dist, mean, std = self.lo, self.hi, self.distribution, self.mean, self.std
        if lo is not None and hi is not None and lo > hi:
            return f"min ({_num(lo)}) is greater than max ({_num(hi)}); lower min or raise max"
        if dist == "uniform" and (lo is None or hi is None):
            missing = [f for f, v in (("min", lo), ("max", hi)) if v is None]
            given = "" if len(missing) == 2 else f"; {missing[0]} is missing"
            return f"a uniform distribution needs both min and max{given}"
        if dist == "normal" and (lo is None or hi is None) and (mean is None or std is None):
            return "a normal distribution needs mean and std (or both min and max)"
        if dist == "lognormal" and (mean is None or std is None or mean <= 0):
            return "a lognormal distribution needs mean > 0 and std > 0"
        if dist == "poisson" and (mean is None or mean < 0):
            return "a poisson distribution needs mean >= 0"
        if std is not None and std <= 0:
            return "std must be greater than 0"
        if self.integer and lo is not None and hi is not None and math.ceil(lo) > math.floor(hi):
            return f"no whole number lies between min ({lo}) and max ({hi})"
        return None

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """n values: int64 for a whole-number uniform, else float64 (whole numbers rounded
        and clipped as floats: `whole_numbers` makes them exact integers)."""
        lo, hi = self.lo, self.hi
        match self.distribution:
            case "uniform":
                assert lo is not None and hi is not None
                if self.integer:
                    return rng.integers(math.ceil(lo), math.floor(hi), size=n, endpoint=True)
                values = rng.uniform(lo, hi, size=n)
            case "normal":
                values = rng.normal(*self._normal(), size=n)
            case "lognormal":
                values = rng.lognormal(*self._lognormal(), size=n)
            case "poisson":
                values = rng.poisson(self.mean, size=n).astype(np.float64)
        return self._finish(values)

    def transform(self, z: np.ndarray) -> np.ndarray:
        """Values of this distribution from standard normal scores, monotonically: the
        marginal of a Gaussian copula."""
        match self.distribution:
            case "uniform":
                assert self.lo is not None and self.hi is not None
                u = ndtr(z)
                if not self.integer:
                    return self._finish(self.lo + (self.hi - self.lo) * u)
                return _uniform_whole(math.ceil(self.lo), math.floor(self.hi), u)
            case "normal":
                mean, std = self._normal()
                values = mean + std * z
            case "lognormal":
                mu, sigma = self._lognormal()
                values = np.exp(mu + sigma * z)
            case "poisson":
                values = _poisson_quantile(self.mean or 0.0, ndtr(z))
        return self._finish(values)

    def moments(self) -> tuple[float, float]:
        """Mean and standard deviation, clipping and rounding included, from a fine grid of
        quantiles: computed from the declaration, independently of the random draws."""
        values = self.transform(ndtri((np.arange(_GRID) + 0.5) / _GRID))
        return float(values.mean()), float(values.std())

    def _normal(self) -> tuple[float, float]:
        mean = self.mean if self.mean is not None else (self.lo + self.hi) / 2  # type: ignore[operator]
        std = self.std if self.std is not None else (self.hi - self.lo) / 6  # type: ignore[operator]
        return mean, std

    def _lognormal(self) -> tuple[float, float]:
        # mean and std are of the values themselves; numpy wants those of their logarithm.
        assert self.mean is not None and self.std is not None
        sigma2 = math.log1p((self.std / self.mean) ** 2)
        return math.log(self.mean) - sigma2 / 2, math.sqrt(sigma2)

    def _finish(self, values: np.ndarray) -> np.ndarray:
        lo, hi = self.lo, self.hi
        if self.integer:
            values = np.rint(values)
            lo = None if lo is None else math.ceil(lo)  # min 0.5 allows 1, not 0.5
            hi = None if hi is None else math.floor(hi)
        if lo is not None or hi is not None:
            values = np.clip(values, lo, hi)
        return values

    def whole_numbers(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Samples of a whole-number sampler as exact int64, and which do not fit in int64
        (drawn without bounds). A sample clipped to a bound becomes that bound exactly: above
        2**53 the float nearest to it may lie beyond it."""
        if values.dtype.kind in "iu":
            return values.astype(np.int64), np.zeros(len(values), dtype=bool)
        first = None if self.lo is None else math.ceil(self.lo)
        last = None if self.hi is None else math.floor(self.hi)
        low = values <= first if first is not None else np.zeros(len(values), dtype=bool)
        high = values >= last if last is not None else np.zeros(len(values), dtype=bool)
        fits = (values >= -(2.0**63)) & (values < 2.0**63)  # False for NaN
        outside = ~fits & ~low & ~high
        whole = np.where(fits & ~low & ~high, values, 0).astype(np.int64)
        if first is not None:
            whole[low] = first
        if last is not None:
            whole[high] = last
        return whole, outside


class Offset(StrictModel):
    """How far a value lies from its base column, sampled like a number column's values."""

    min: Amount | None = Field(
        default=None, description="Smallest offset (default 0); samples below are clipped."
    )
    max: Amount | None = Field(
        default=None, description="Largest offset; samples above are clipped."
    )
    distribution: Distribution = Field(
        default="uniform",
        description="uniform (needs max), normal (mean, std), lognormal (mean, std) or poisson "
        "(mean), as for a number column.",
    )
    mean: Amount | None = Field(default=None, description="Mean of normal/lognormal/poisson.")
    std: Amount | None = Field(default=None, description="Standard deviation (normal, lognormal).")

    def describe(self) -> str:
        lo, hi = _num(self.min or 0), "∞" if self.max is None else _num(self.max)
        if self.distribution == "uniform":
            return f"[{lo}, {hi}]"
        given = [f for f in ("mean", "std") if getattr(self, f) is not None]
        shape = ", ".join(f"{f} {_num(getattr(self, f))}" for f in given)
        return f"{self.distribution}({shape}) in [{lo}, {hi}]"


class Anchored(Conditional):
    """A number, date or datetime that may be an earlier column's value plus (`after`) or
    minus (`before`) a sampled offset: the order of the two holds by construction."""

    after: str | None = Field(
        default=None,
        description="An earlier column; this value is that one plus `offset` (null where it is).",
    )
    before: str | None = Field(
        default=None,
        description="An earlier column; this value is that one minus `offset` (null where it is).",
    )
    offset: Offset | None = Field(
        default=None,
        description="Distance from `after`/`before`, never negative: min (default 0), max, and "
        "optionally distribution, mean and std. Durations (30s, 15min, 1h, 5d, 2w, 3mo, 1y) for "
        "dates and times, plain numbers for numbers.",
    )

    _OWN: ClassVar[tuple[str, ...]]  # own range fields, which an offset replaces
    _BASES: ClassVar[str]  # the columns an offset may start from, in words
    _WHOLE: ClassVar[bool] = True  # offsets in whole units
    _EXAMPLE: ClassVar[str] = "10"  # an offset.max for messages

    @property
    def base(self) -> str | None:
        return self.after or self.before

    @model_validator(mode="after")
    def _check_anchor(self) -> Self:
        if self.after and self.before:
            raise ValueError("set after or before, not both")
        if self.base is None and self.offset is not None:
            fail_at(("offset",), "offset needs after or before: the column it is counted from")
        for field in self._OWN if self.base else ():
            if getattr(self, field) != type(self).model_fields[field].default:
                fail_at(
                    (field,),
                    f"{field} does not apply with {self._direction}: the value is {self.base} "
                    f"{'plus' if self.after else 'minus'} the offset; bound the offset instead "
                    "(offset.min, offset.max)",
                )
        return self

    @property
    def _direction(self) -> str:
        return "after" if self.after else "before"

    def references(self) -> set[str]:
        return super().references() | ({self.base} if self.base else set())

    def _check(self) -> None:
        if self.base is None:
            self._check_range()
        elif self.offset is None:
            fail_at(
                ("offset",),
                f"{self._direction} needs an offset, e.g. offset: {{max: {self._EXAMPLE}}}",
            )
        else:
            self.offset_sampler()

    def offset_sampler(self) -> Sampler:
        """The offset's distribution in the column's unit; fails at the field that is wrong."""
        assert self.offset is not None
        amounts = self._offset_amounts()
        lo, hi = amounts.get("min", 0.0), amounts.get("max")
        if lo < 0:
            fail_at(("offset", "min"), f"offset.min must be >= 0; use {self._other} to go back")
        if hi is not None and lo > hi:
            low, high = _num(self.offset.min or 0), _num(self.offset.max or 0)
            fail_at(
                ("offset", "min"),
                f"min ({low}) is greater than max ({high}); lower min or raise max",
            )
        sampler = Sampler(
            self.offset.distribution,
            lo,
            hi,
            amounts.get("mean"),
            amounts.get("std"),
            integer=self._WHOLE,
        )
        if self.offset.distribution == "uniform" and hi is None:
            fail_at(
                ("offset", "max"),
                "a uniform offset needs offset.max (the largest offset), e.g. max: "
                f"{self._EXAMPLE}; or give a distribution with a mean",
            )
        problem = sampler.problem()
        if problem:
            fail_at(("offset",), problem)
        return sampler

    @property
    def _other(self) -> str:
        return "before" if self.after else "after"

    def problems(self, earlier: dict[str, Column]) -> Problems:
        found = super().problems(earlier)
        if self.base is None:
            return found
        base = earlier.get(self.base)
        if base is None:
            found.append(((self._direction,), not_a_column(self.base)))
        elif not self._accepts(kind := base.arrow_type()):
            found.append(
                (
                    (self._direction,),
                    f"{self.base} holds {kind}; {self.type} columns can only be offset "  # type: ignore[attr-defined]
                    f"from {self._BASES}",
                )
            )
        return found

    def _generate(self, ctx: ChunkContext) -> pa.Array:
        if self.base is None:
            return self._draw(ctx)
        offsets = self.offset_sampler().sample(ctx.rng, ctx.rows)
        return self._shift(ctx.values[self.base], offsets, ctx)

    def _out_of_range(self, ctx: ChunkContext, row: int, what: str, limit: str) -> OutOfRangeError:
        """The error for the first row whose value the column's type cannot hold."""
        return OutOfRangeError(
            f"column '{self.name}': row {chunk_row(ctx, row)}: {what}, {limit}",
            hint=f"bound the offset (offset.max) or the values of {self.base}"
            if self.base
            else "bound the distribution with min and max",
        )

    def _capacity(self, earlier: Mapping[str, int | None], locale: str) -> int | None:
        return None if self.base else self._range_capacity()

    def _stats(self, column: str) -> list[Stat]:
        if self.base is None:
            return [("mean", self._value_sql(column), *self._own_sampler().moments())]
        return [("mean offset", self._distance(column), *self.offset_sampler().moments())]

    def _segment_range(self, where: str) -> list[RelationCheck]:
        """Every value of a `by` segment within the segment's own min and max, row by row: a
        filter reshapes a segment's distribution but cannot bring in a value outside it."""
        sampler, value = self._own_sampler(), self._value_sql(quote(self.name))
        bounds = [
            (op, b)
            for op, b in (("<", sampler.lo), (">", sampler.hi))
            if b is not None and math.isfinite(b)
        ]
        if not bounds:
            return []
        slack = self._slack(value, "0")  # `decimals` rounds half a step past a bound
        sign = {"<": "-", ">": "+"}
        bad = " OR ".join(f"{value} {op} {float(b)!r} {sign[op]} {slack}" for op, b in bounds)
        text = sql_literal("%,d of %,d rows outside its min and max")
        sql = (
            f"SELECT failed, printf({text}, failed, n) AS observed FROM (SELECT count(*) FILTER "
            f"(WHERE {bad}) AS failed, count({quote(self.name)}) AS n FROM data WHERE {where})"
        )
        return [RelationCheck(self.name, f"{self.name} within its min and max", sql)]

    def _distance(self, column: str) -> str:
        """The offset of each row in the sampler's unit, as SQL (NULL if not a valid one)."""
        distance = self._offset_sql(column, quote(self.base or ""))
        return distance if self.after else f"(-{distance})"

    def _row_checks(self, where: str) -> list[RelationCheck]:
        if self.base is None:  # the whole column's range is a column check
            return [] if where == "TRUE" else self._segment_range(where)
        if self.offset is None:
            return []
        sampler, value, base = self.offset_sampler(), quote(self.name), quote(self.base)
        distance, slack = self._distance(value), self._slack(value, base)
        bad = f"{distance} IS NULL OR {distance} < {sampler.lo} - {slack}"
        if sampler.hi is not None:
            bad += f" OR {distance} > {sampler.hi} + {slack}"
        sign = "+" if self.after else "-"
        relation = f"{self.name} = {self.base} {sign} {self.offset.describe()}"
        outside = f"{self.base} {sign} {self.offset.describe()}".replace("%", "%%")
        text = sql_literal(f"%,d of %,d rows outside {outside}")
        sql = (
            f"SELECT failed, printf({text}, failed, n) AS observed FROM (SELECT count(*) FILTER "
            f"(WHERE ({base} IS NULL AND {value} IS NOT NULL) OR ({base} IS NOT NULL AND {value} "
            f"IS NOT NULL AND ({bad}))) AS failed, count(*) AS n FROM data WHERE {where})"
        )
        return [RelationCheck(self.name, relation, sql)]

    # What each kind of column supplies.
    def _check_range(self) -> None:
        raise NotImplementedError

    def _draw(self, ctx: ChunkContext) -> pa.Array:
        raise NotImplementedError

    def _own_sampler(self) -> Sampler:
        raise NotImplementedError

    def _range_capacity(self) -> int | None:
        return None

    def _accepts(self, kind: pa.DataType) -> bool:
        raise NotImplementedError

    def _offset_amounts(self) -> dict[str, float]:
        raise NotImplementedError

    def _shift(self, base: pa.Array, offsets: np.ndarray, ctx: ChunkContext) -> pa.Array:
        """The base plus (after) or minus (before) the offsets (never negative), null where
        the base is; OutOfRangeError names the first row the type cannot hold."""
        raise NotImplementedError

    def _offset_sql(self, value: str, base: str) -> str:
        raise NotImplementedError

    def _value_sql(self, column: str) -> str:
        raise NotImplementedError

    def _slack(self, value: str, base: str) -> str:
        return "0"


class _Numeric(Anchored):
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
    correlated_with: str | None = Field(
        default=None,
        description="An earlier number column this one rises (rho > 0) or falls (rho < 0) with, "
        "through a Gaussian copula on its ranks; this column keeps its own distribution.",
    )
    rho: float | None = Field(
        default=None, ge=-1, le=1, description="Correlation with `correlated_with`, -1 to 1."
    )

    _OWN: ClassVar[tuple[str, ...]] = ("min", "max", "distribution", "mean", "std")
    _BASES: ClassVar[str] = "number columns (integer, float or decimal)"

    @model_validator(mode="after")
    def _check_correlation(self) -> Self:
        if (self.correlated_with is None) != (self.rho is None):
            raise ValueError("correlated_with needs rho (a correlation, -1 to 1), and rho needs it")
        if self.correlated_with and self.base:
            raise ValueError("correlated_with does not combine with after/before")
        return self

    def sampler(self) -> Sampler:
        return Sampler(
            self.distribution, self.min, self.max, self.mean, self.std, integer=self._WHOLE
        )

    def references(self) -> set[str]:
        return super().references() | ({self.correlated_with} if self.correlated_with else set())

    def problems(self, earlier: dict[str, Column]) -> Problems:
        found = super().problems(earlier)
        if self.correlated_with is None:
            return found
        other = earlier.get(self.correlated_with)
        if other is None:
            found.append((("correlated_with",), not_a_column(self.correlated_with)))
        elif not _is_number(kind := other.arrow_type()):
            message = f"{self.correlated_with} holds {kind}; a correlation needs a number column"
            found.append((("correlated_with",), message))
        elif isinstance(other, SequenceColumn):
            # Its values rise along the rows while ranks are taken chunk by chunk: each chunk
            # correlated 0.89, the whole table 0.22.
            message = (
                f"{self.correlated_with} is a sequence, which rises with the row number, and a "
                "correlation is drawn chunk by chunk, so it would hold within chunks only; "
                "correlate with a column drawn per row (an integer, float or date)"
            )
            found.append((("correlated_with",), message))
        return found

    def _check_range(self) -> None:
        problem = self.sampler().problem()
        if problem:
            raise ValueError(problem)

    def _own_sampler(self) -> Sampler:
        return self.sampler()

    def _draw(self, ctx: ChunkContext) -> pa.Array:
        if self.correlated_with is None or self.rho is None:
            return self._typed(self.sampler().sample(ctx.rng, ctx.rows), ctx)
        scores = correlated_scores(ctx.values[self.correlated_with], self.rho, ctx.rng)
        return self._typed(self.sampler().transform(scores), ctx)

    def _accepts(self, kind: pa.DataType) -> bool:
        return _is_number(kind)

    def _offset_amounts(self) -> dict[str, float]:
        amounts: dict[str, float] = {}
        for field in ("min", "max", "mean", "std"):
            value = getattr(self.offset, field)
            if value is None:
                continue
            if isinstance(value, int) and not isinstance(value, bool):
                amounts[field] = value  # exact, however large
                continue
            try:
                amounts[field] = float(value)  # YAML reads 1e3 as text
            except ValueError:
                message = f"'{value}' is not a number; a {self.type} column's offset is a number"  # type: ignore[attr-defined]
                fail_at(("offset", field), message)
        return amounts

    def _offset_sql(self, value: str, base: str) -> str:
        return f"({value} - {base})"

    def _value_sql(self, column: str) -> str:
        return f"CAST({column} AS DOUBLE)"

    def _row_checks(self, where: str) -> list[RelationCheck]:
        checks = super()._row_checks(where)
        if self.correlated_with and self.rho is not None:
            checks.append(self._correlation_check(where))
        return checks

    def _correlation_check(self, where: str) -> RelationCheck:
        """Spearman's rank correlation (ties at their mean rank) against 6/pi·asin(rho/2), that of
        a Gaussian copula with correlation rho. Ties pull it towards 0 by at most the tie factor
        sqrt((1 - Σ(t³-t)/(n³-n)) per column), so the band widens on that side only."""
        x, y = quote(self.correlated_with or ""), quote(self.name)
        declared = 6 / math.pi * math.asin((self.rho or 0) / 2)
        ties = "(1 - {0} / (n * n * n - n))"
        measured = "printf('Spearman %.3f, declared %.3f ± %.3f (n=%,d)', rs, d, tol, n::BIGINT)"
        sql = (
            f"WITH r AS (SELECT {_mid_rank(x)} AS rx, {_mid_rank(y)} AS ry, "
            f"count(*) OVER (PARTITION BY {x})::DOUBLE AS tx, "
            f"count(*) OVER (PARTITION BY {y})::DOUBLE AS ty "
            f"FROM data WHERE {x} IS NOT NULL AND {y} IS NOT NULL AND ({where})), "
            "s AS (SELECT corr(rx, ry) AS rs, count(*)::DOUBLE AS n, sum(tx * tx - 1) AS sx, "
            "sum(ty * ty - 1) AS sy, count(DISTINCT rx) AS vx, count(DISTINCT ry) AS vy FROM r), "
            f"b AS (SELECT *, {declared!r} AS d, {declared!r} * sqrt(greatest(0, "
            f"{ties.format('sx')} * {ties.format('sy')})) AS tied, 0.05 + 4 / sqrt(n) AS tol, "
            # This column constant where its base varies, over more rows than its own
            # distribution could plausibly stay constant for: the correlation is not there.
            f"vy = 1 AND vx > 1 AND n >= {self._varies_within()} AS flat "
            "FROM s WHERE n >= 10) "
            "SELECT coalesce(max(CASE WHEN flat THEN 1 WHEN rs IS NULL OR isnan(rs) THEN 0 ELSE "
            "(rs < least(d, tied) - tol OR rs > greatest(d, tied) + tol)::INT END), 0) AS failed, "
            "coalesce(max(CASE WHEN flat THEN printf('none: constant over %,d rows', n::BIGINT) "
            "WHEN rs IS NULL OR isnan(rs) THEN 'not measurable: a constant column' "
            f"ELSE {measured} END), 'not measurable: under 10 rows') AS observed FROM b"
        )
        relation = (
            f"{self.name} ~ {self.correlated_with}: Gaussian copula, rho {self.rho} "
            f"(Spearman {declared:.3f})"
        )
        return RelationCheck(self.name, relation, sql, shape=True)

    def _varies_within(self) -> int:
        """Rows past which this column's own distribution is all but sure to take two values
        (a Poisson of mean 0.05 is all zeros in 20 rows a third of the time); never, for one
        that cannot vary (min = max, std 0)."""
        never = 2**62
        low, high = getattr(self, "min", None), getattr(self, "max", None)
        if low is not None and high is not None and low == high:
            return never
        if self.distribution == "poisson":
            return max(1000, math.ceil(40 / self.mean)) if self.mean else never
        if self.distribution in ("normal", "lognormal") and self.std == 0:
            return never
        return 1000

    def _typed(self, values: np.ndarray, ctx: ChunkContext) -> pa.Array:
        raise NotImplementedError


class IntegerColumn(_Numeric):
    """Whole numbers, e.g. ages or quantities."""

    # Integer bounds and offsets are exact however large (int64); a value past int64 is an
    # error naming the row, never a wrapped number.
    type: Literal["integer"] = "integer"
    min: Number | None = Field(
        default=None, description="Smallest value; samples below are clipped."
    )
    max: Number | None = Field(
        default=None, description="Largest value; samples above are clipped."
    )

    _BASES: ClassVar[str] = "integer columns"

    def arrow_type(self) -> pa.DataType:
        return pa.int64()

    def _check_range(self) -> None:
        for field in ("min", "max"):
            value = getattr(self, field)
            if value is not None and not INT64[0] <= value <= INT64[1]:
                fail_at((field,), f"{field} ({_num(value)}) does not fit in a 64-bit integer")
        super()._check_range()

    def offset_sampler(self) -> Sampler:
        sampler = super().offset_sampler()
        for field, value in (("min", sampler.lo), ("max", sampler.hi)):
            if value is not None and value > INT64[1]:
                fail_at(("offset", field), f"{_num(value)} does not fit in a 64-bit integer")
        return sampler

    def _accepts(self, kind: pa.DataType) -> bool:
        return pa.types.is_integer(kind)  # a fraction added to a whole number is not whole

    def _range_capacity(self) -> int | None:
        if self.min is None or self.max is None:
            return None
        return math.floor(self.max) - math.ceil(self.min) + 1

    def _offset_sql(self, value: str, base: str) -> str:
        return f"(CAST({value} AS HUGEINT) - {base})"  # BIGINT - BIGINT may overflow

    def _typed(self, values: np.ndarray, ctx: ChunkContext) -> pa.Array:
        whole, outside = self.sampler().whole_numbers(values)
        if outside.any():
            row = int(np.argmax(outside))
            what = f"the {self.distribution} distribution drew {values[row]:.6g}"
            raise self._out_of_range(ctx, row, what, _INT64_LIMIT)
        return pa.array(whole, type=pa.int64())

    def _shift(self, base: pa.Array, offsets: np.ndarray, ctx: ChunkContext) -> pa.Array:
        """In int64 throughout: a float64 sum would round values above 2**53."""
        assert self.base is not None
        amounts, outside = self.offset_sampler().whole_numbers(offsets)
        valid = base.is_valid().to_numpy(zero_copy_only=False)
        try:
            start = pc.fill_null(base, 0).cast(pa.int64()).to_numpy(zero_copy_only=False)
        except pa.ArrowInvalid:  # a uint64 above the int64 range
            fits = pc.fill_null(pc.less_equal(base, INT64[1]), True)
            row = int(np.argmax(~fits.to_numpy(zero_copy_only=False)))
            what = f"{self.base} is {base[row]}"
            raise self._out_of_range(ctx, row, what, _INT64_LIMIT) from None
        signed = amounts if self.after else -amounts
        total = start + signed  # int64 wraps around silently; found below
        wrapped = ((start ^ total) & (signed ^ total)) < 0
        bad = valid & (outside | wrapped)
        if bad.any():
            row = int(np.argmax(bad))
            sign = "+" if self.after else "-"
            amount = f"{offsets[row]:.6g}" if outside[row] else str(amounts[row])
            exact = "" if outside[row] else f" = {int(start[row]) + int(signed[row])}"
            what = f"{self.base} {start[row]} {sign} offset {amount}{exact}"
            raise self._out_of_range(ctx, row, what, _INT64_LIMIT)
        return pa.array(total, type=pa.int64(), mask=~valid)


class FloatColumn(_Numeric):
    """Real numbers, e.g. prices or sensor readings; `decimals` rounds them."""

    type: Literal["float"] = "float"
    decimals: int | None = Field(
        default=None, ge=0, le=12, description="Round to this many decimals."
    )

    _WHOLE: ClassVar[bool] = False

    def arrow_type(self) -> pa.DataType:
        return pa.float64()

    def _range_capacity(self) -> int | None:
        if self.decimals is None or self.min is None or self.max is None:
            return None
        # Counted on the rounded bounds, as values are rounded: (0.3 - 0.1) * 10 is 1.999...
        # in floats, which made 2 values of the 3 (0.1, 0.2, 0.3).
        scale = 10**self.decimals
        return round(self.max * scale) - round(self.min * scale) + 1

    def _typed(self, values: np.ndarray, ctx: ChunkContext) -> pa.Array:
        return pa.array(self._rounded(values), type=pa.float64())

    def _rounded(self, values: np.ndarray) -> np.ndarray:
        return values if self.decimals is None else np.round(values, self.decimals)

    def _shift(self, base: pa.Array, offsets: np.ndarray, ctx: ChunkContext) -> pa.Array:
        """In float64; a decimal or integer base is converted to float64 first."""
        start = pc.fill_null(base, 0).cast(pa.float64()).to_numpy(zero_copy_only=False)
        valid = base.is_valid().to_numpy(zero_copy_only=False)
        total = self._rounded(start + offsets if self.after else start - offsets)
        bad = valid & ~np.isfinite(total) & np.isfinite(start)
        if bad.any():
            row = int(np.argmax(bad))
            sign = "+" if self.after else "-"
            what = f"{self.base} {start[row]:.6g} {sign} offset {offsets[row]:.6g}"
            raise self._out_of_range(ctx, row, what, "beyond the largest float (1.8e308)")
        return pa.array(total, type=pa.float64(), mask=~valid)

    def _slack(self, value: str, base: str) -> str:
        # Float sums are exact to ~1e-16 relative; rounding to `decimals` moves half a step.
        rounding = 0.5 * 10.0**-self.decimals if self.decimals is not None else 0.0
        return f"(1e-9 * (abs({value}) + abs({base}) + 1) + {rounding!r})"


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


def correlated_scores(base: pa.Array, rho: float, rng: np.random.Generator) -> np.ndarray:
    """Standard normal scores correlated rho with the base column's normal scores: its ranks
    in the chunk, (rank + 0.5) / n, through the normal quantile function. Ties share their mean
    rank; nulls get an independent draw."""
    scores = rng.standard_normal(len(base))
    valid = base.is_valid().to_numpy(zero_copy_only=False)
    if pa.types.is_decimal(base.type):  # ranked as float64 (decimals to_numpy are objects)
        base = base.cast(pa.float64())
    if valid.any():
        values = base.filter(pa.array(valid)).to_numpy(zero_copy_only=False)
        _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
        mid = np.cumsum(counts) - (counts + 1) / 2  # 0-based mean rank of each distinct value
        normal = ndtri((mid[inverse] + 0.5) / len(values))
        # Rank scores fall short of unit variance in small chunks and with ties; rescaled, the
        # mixture below stays standard normal, so the column keeps its declared distribution.
        spread = math.sqrt(float(np.mean(normal**2)))
        if spread > 0:  # else the base is constant here: nothing to correlate with
            scores[valid] = normal / spread
    return rho * scores + math.sqrt(1 - rho * rho) * rng.standard_normal(len(base))


def _mid_rank(column: str) -> str:
    return f"(rank() OVER (ORDER BY {column}) + (count(*) OVER (PARTITION BY {column}) - 1) / 2)"


def _is_number(kind: pa.DataType) -> bool:
    return pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind)


def _uniform_whole(first: int, last: int, u: np.ndarray) -> np.ndarray:
    """The whole numbers first..last at probabilities u (each equally likely), exactly in int64
    however wide the range: counted from `first` in uint64, whose sum wraps into place."""
    count = last - first + 1  # up to 2**64
    index = np.minimum(np.floor(u * count), 2.0**64 - 2048).astype(np.uint64)
    index = np.minimum(index, np.uint64(count - 1))
    return (index + np.uint64(first % 2**64)).view(np.int64)


_INT64_LIMIT = (
    "which does not fit in a 64-bit integer (-9223372036854775808 to 9223372036854775807)"
)


def _num(value: float | str) -> str:
    if isinstance(value, str):
        return value
    return str(int(value)) if float(value).is_integer() else str(value)
