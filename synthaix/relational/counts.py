"""How many children a parent gets, as drawn: the figures `validate` estimates a child table's
size from and the report checks its counts against."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from synthaix.columns.choice import CategoryColumn

if TYPE_CHECKING:
    from synthaix.relational.config import CountConfig, CountParams, TableConfig


def count_moments(
    distribution: str, mean: float, low: int, high: int | None
) -> tuple[float, float]:
    """Mean and standard deviation of the count per parent, as drawn: clipped to [low, high]."""
    if distribution == "fixed" or (distribution == "poisson" and mean == 0):
        value = min(max(round(mean), low), high if high is not None else math.inf)
        return float(value), 0.0
    if distribution == "uniform":
        assert high is not None
        width = high - low + 1
        return (low + high) / 2, math.sqrt((width * width - 1) / 12)
    # Beyond 12 standard deviations (+30) either side the Poisson mass is negligible: the
    # sums cover that window, not 0..mean (0.7 s a call at a mean of a million).
    spread = 12 * math.sqrt(mean) + 30
    ks = range(max(0, int(mean - spread)), int(mean + spread) + 1)
    pmf = [math.exp(k * math.log(mean) - mean - math.lgamma(k + 1)) for k in ks]
    values = [max(k, low) if high is None else min(max(k, low), high) for k in ks]
    expected = sum(p * v for p, v in zip(pmf, values, strict=True))
    variance = sum(p * (v - expected) ** 2 for p, v in zip(pmf, values, strict=True))
    return expected, math.sqrt(variance)


def params_of(count: CountConfig, value: Any) -> tuple[str, CountParams | CountConfig]:
    """The `params` a parent's `by` value picks, matched as the build matches them."""
    for key, params in (count.params or {}).items():
        if value == key or str(value) == str(key):
            return f"{count.by} = {key}", params
    return f"other {count.by} values", count


def mean_children(count: CountConfig, parent: TableConfig) -> float:
    """Children per parent on average: each `params` segment's clipped mean, weighted by how
    often the parent's `by` value picks it. The shares are known for a category column with
    fixed values; for any other `by` column the defaults' mean stands for all."""

    def mean(params: CountParams | CountConfig) -> float:
        return count_moments(count.distribution, *count.resolved(params))[0]

    if count.by is None:
        return mean(count)
    name = count.by.removeprefix(f"{parent.name}.")
    column = next((c for c in parent.columns if c.name == name), None)
    if not isinstance(column, CategoryColumn) or column.by is not None or not column.values:
        return mean(count)
    shares = zip(column.labels(), column.weights(), strict=True)
    drawn = sum(float(share) * mean(params_of(count, value)[1]) for value, share in shares)
    return column.nullable * mean(count) + (1 - column.nullable) * drawn


def total_bounds(count: CountConfig, parents: int) -> tuple[int, int | None]:
    """The fewest and most children `parents` parents can have between them, by the count's
    min and max for any `by` value (None: no most)."""
    bounds = [count.resolved(p)[1:] for p in [count, *(count.params or {}).values()]]
    highs = [high for _, high in bounds]
    most = None if None in highs else parents * max(h for h in highs if h is not None)
    return parents * min(low for low, _ in bounds), most
