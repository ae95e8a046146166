"""Coherent rows: offsets from an earlier column, per-segment parameters (`by`), correlations.

Each relation is checked twice: on the generated values directly, and through the column's
relation_checks() SQL, which must also fail on data that breaks the relation.
"""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path
from statistics import NormalDist
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from conftest import generate_all, make_config
from synthaix.columns.base import RelationCheck
from synthaix.columns.numeric import ndtr, ndtri
from synthaix.columns.temporal import add_months, parse_duration
from synthaix.config import DatasetConfig, load_config
from synthaix.errors import ConfigError, SynthaixError
from synthaix.generate import generate_chunk, plan_chunks

N = 20_000
ORDERED = {
    "name": "ordered_at",
    "type": "datetime",
    "start": "2024-01-01 00:00:00",
    "end": "2024-12-31 23:59:59",
    "nullable": 0.2,
}
CATEGORY = {
    "name": "category",
    "type": "category",
    "values": {"books": 2, "toys": 1, "games": 1},
    "nullable": 0.1,
}


def _config(columns: list[dict[str, Any]], rows: int = N) -> DatasetConfig:
    return make_config(columns, rows=rows, chunk_size=5000)


def _table(columns: list[dict[str, Any]], rows: int = N) -> pa.Table:
    return generate_all(_config(columns, rows))


def _checks(config: DatasetConfig, column: str) -> list[RelationCheck]:
    return next(c for c in config.columns if c.name == column).relation_checks()


def _run(check: RelationCheck, table: pa.Table) -> tuple[int, str]:
    con = duckdb.connect()
    con.register("data", table)
    result = check.run(con)
    assert result is not None
    return result


def _replace(table: pa.Table, name: str, values: Any) -> pa.Table:
    return table.set_column(table.schema.get_field_index(name), name, pa.array(values))


def _numbers(column: pa.ChunkedArray) -> np.ndarray:
    return column.to_numpy(zero_copy_only=False)


# --- offsets -----------------------------------------------------------------------------


def test_after_stays_within_the_offset_and_a_null_base_gives_null() -> None:
    shipped = {"name": "shipped_at", "type": "datetime", "after": "ordered_at"}
    shipped["offset"] = {"min": "1h", "max": "5d"}
    config = _config([ORDERED, shipped])
    table = generate_all(config)
    base, value = table["ordered_at"], table["shipped_at"]
    assert pc.is_null(base).equals(pc.is_null(value))
    assert 0.17 < base.null_count / N < 0.23
    seconds = _numbers(pc.drop_null(value).cast(pa.int64())) - _numbers(
        pc.drop_null(base).cast(pa.int64())
    )
    seconds //= 1_000_000
    assert seconds.min() >= 3600 and seconds.max() <= 5 * 86400
    assert seconds.min() < 3600 + 600 and seconds.max() > 5 * 86400 - 600  # the whole range
    assert np.all(seconds == np.round(seconds))
    (check,) = _checks(config, "shipped_at")
    assert check.relation == "shipped_at = ordered_at + [1h, 5d]"
    assert _run(check, table) == (0, f"0 of {N:,} rows outside ordered_at + [1h, 5d]")


def test_before_mirrors_after_for_dates() -> None:
    signup = {"name": "signup", "type": "date", "before": "first_order"}
    signup["offset"] = {"min": "1d", "max": "2w"}
    first = {"name": "first_order", "type": "date", "start": "2024-01-01", "end": "2024-03-31"}
    config = _config([first, signup])
    table = generate_all(config)
    days = _numbers(table["first_order"].cast(pa.int32())) - _numbers(
        table["signup"].cast(pa.int32())
    )
    assert days.min() == 1 and days.max() == 14
    assert len(np.unique(days)) == 14 and abs(days.mean() - 7.5) < 0.1
    (check,) = _checks(config, "signup")
    assert _run(check, table)[0] == 0


def test_calendar_months_clamp_the_day_to_the_month_end() -> None:
    times = np.array(["2024-01-31T10:30:00", "2023-01-31T00:00:00", "1969-03-31T23:59:59"])
    moved = add_months(times.astype("datetime64[s]"), np.array([1, 1, -1]))
    assert moved.astype(str).tolist() == [
        "2024-02-29T10:30:00",
        "2023-02-28T00:00:00",
        "1969-02-28T23:59:59",
    ]
    days = add_months(np.array(["2024-03-31"], dtype="datetime64[D]"), np.array([-13]))
    assert days.astype(str).tolist() == ["2023-02-28"]
    assert parse_duration("3mo") == (3.0, 1, True)
    assert parse_duration("1 year") == (1.0, 12, True)
    assert parse_duration("15min") == (15.0, 60, False)
    assert parse_duration("2 weeks") == (2.0, 604800, False)
    assert parse_duration("5m") is None  # minutes or months? Neither: say which


def test_month_offsets_through_columns_and_their_check() -> None:
    start = {"name": "start", "type": "date", "start": "2024-01-31", "end": "2024-01-31"}
    renew = {"name": "renew", "type": "date", "after": "start", "offset": {"min": "1mo"}}
    renew["offset"]["max"] = "1y"
    config = _config([start, renew], rows=2000)
    table = generate_all(config)
    got = set(table["renew"].to_pylist())
    assert dt.date(2024, 2, 29) in got and dt.date(2025, 1, 31) in got
    assert all(d.day == _month_end(d) for d in got)  # Jan 31 + n months: each month's end
    (check,) = _checks(config, "renew")
    assert _run(check, table)[0] == 0
    # A day later is within [1mo, 1y] by length, but not a whole number of months away.
    shifted = pc.add(table["renew"], pa.scalar(dt.timedelta(days=1)).cast(pa.duration("s")))
    broken = _replace(table, "renew", shifted.cast(pa.date32()))
    assert _run(check, broken)[0] == 2000


def _month_end(day: dt.date) -> int:
    following = dt.date(day.year + day.month // 12, day.month % 12 + 1, 1)
    return (following - dt.timedelta(days=1)).day


def test_distribution_offsets_have_the_declared_moments() -> None:
    promised = {"name": "promised", "type": "datetime", "after": "ordered_at"}
    promised["offset"] = {"distribution": "lognormal", "mean": "2d", "std": "1d", "max": "30d"}
    config = _config([ORDERED, promised])
    table = generate_all(config).drop_null()
    days = (
        _numbers(table["promised"].cast(pa.int64()))
        - _numbers(table["ordered_at"].cast(pa.int64()))
    ) / 86400e6
    assert days.min() > 0 and days.max() <= 30
    assert abs(days.mean() - 2) < 0.03 and abs(days.std() - 1) < 0.05
    assert _run(_checks(config, "promised")[0], table)[0] == 0


def test_number_offsets_for_integers_and_floats() -> None:
    subtotal = {"name": "subtotal", "type": "integer", "min": 10, "max": 500, "nullable": 0.1}
    total = {"name": "total", "type": "integer", "after": "subtotal", "offset": {"max": 20}}
    paid = {"name": "paid", "type": "float", "before": "total", "offset": {"min": 0.5, "max": 2}}
    paid["decimals"] = 2
    config = _config([subtotal, total, paid])
    table = generate_all(config)
    extra = _numbers(table["total"].drop_null()) - _numbers(table["subtotal"].drop_null())
    assert table["total"].type == pa.int64() and extra.min() == 0 and extra.max() == 20
    paid_values = _numbers(table["paid"].drop_null())
    back = _numbers(table["total"].drop_null()) - paid_values
    assert back.min() >= 0.5 - 0.005 and back.max() <= 2 + 0.005
    assert np.allclose(paid_values, np.round(paid_values, 2))
    for name in ("total", "paid"):
        assert _run(_checks(config, name)[0], table)[0] == 0


def test_a_date_after_a_datetime_counts_from_its_day() -> None:
    due = {"name": "due", "type": "date", "after": "ordered_at", "offset": {"min": "24h"}}
    due["offset"]["max"] = "1w"
    config = _config([ORDERED, due], rows=3000)
    table = generate_all(config).drop_null()
    start = [t.date() for t in table["ordered_at"].to_pylist()]
    gaps = {(d - s).days for s, d in zip(start, table["due"].to_pylist(), strict=True)}
    assert gaps == set(range(1, 8))
    assert _run(_checks(config, "due")[0], table)[0] == 0


def test_the_offset_check_fails_on_broken_rows() -> None:
    shipped = {"name": "shipped_at", "type": "datetime", "after": "ordered_at"}
    shipped["offset"] = {"min": "1h", "max": "5d"}
    config = _config([ORDERED, shipped], rows=1000)
    table = generate_all(config)
    (check,) = _checks(config, "shipped_at")
    assert _run(check, table)[0] == 0
    with_base = 1000 - table["ordered_at"].null_count
    early = _replace(table, "shipped_at", table["ordered_at"])  # 0 s: below 1h
    assert _run(check, early)[0] == with_base
    late = pc.add(table["shipped_at"], pa.scalar(dt.timedelta(days=6)))
    assert _run(check, _replace(table, "shipped_at", late))[0] == with_base
    orphan = pc.fill_null(table["shipped_at"], dt.datetime(2024, 1, 1))  # value without a base
    failed, observed = _run(check, _replace(table, "shipped_at", orphan))
    assert failed == table["ordered_at"].null_count > 0
    assert observed.startswith(f"{failed:,} of 1,000 rows outside")


# --- conditional parameters --------------------------------------------------------------

SUBCATEGORY = {
    "name": "subcategory",
    "type": "category",
    "by": "category",
    "values": ["misc"],
    "params": {"books": {"values": {"fiction": 3, "science": 1}}, "toys": {"values": ["lego"]}},
}


def test_subcategories_follow_their_category_with_the_declared_weights() -> None:
    config = _config([CATEGORY, SUBCATEGORY])
    table = generate_all(config)
    pairs = list(zip(table["category"].to_pylist(), table["subcategory"].to_pylist(), strict=True))
    allowed = {"books": {"fiction", "science"}, "toys": {"lego"}, "games": {"misc"}, None: {"misc"}}
    assert all(sub in allowed[cat] for cat, sub in pairs)
    books = [sub for cat, sub in pairs if cat == "books"]
    assert abs(books.count("fiction") / len(books) - 0.75) < 0.02
    assert {cat for cat, _ in pairs} == {"books", "toys", "games", None}  # nulls use the default
    assert config.columns[1].capacity({}, "en_US") == 4  # fiction, science, lego, misc
    check = _checks(config, "subcategory")[0]
    failed, observed = _run(check, table)
    assert failed == 0 and observed.startswith("0 of 3 segments off; worst ")


def test_numbers_and_booleans_by_segment() -> None:
    price = {"name": "price", "type": "float", "by": "category", "min": 1, "max": 100}
    price["params"] = {"books": {"min": 5, "max": 30}}
    tier = {"name": "tier", "type": "category", "values": ["gold", "basic"]}
    premium = {"name": "premium", "type": "boolean", "by": "tier"}
    premium["params"] = {"gold": {"p": 0.9}, "basic": {"p": 0.1}}
    config = _config([CATEGORY, price, tier, premium])
    table = generate_all(config)
    books = pc.equal(table["category"], "books")
    book_prices = _numbers(table["price"].filter(books))
    other_prices = _numbers(table["price"].filter(pc.invert(pc.fill_null(books, False))))
    assert book_prices.min() >= 5 and book_prices.max() <= 30
    assert abs(book_prices.mean() - 17.5) < 0.3
    assert other_prices.max() > 90 and abs(other_prices.mean() - 50.5) < 1
    gold = _numbers(table["premium"].filter(pc.equal(table["tier"], "gold")))
    assert abs(gold.mean() - 0.9) < 0.015
    assert config.columns[1].capacity({}, "en_US") is None  # no decimals: unbounded
    for name in ("price", "premium"):
        assert _run(_checks(config, name)[0], table)[0] == 0


def test_the_segment_check_fails_when_a_segment_is_off() -> None:
    tier = {"name": "tier", "type": "category", "values": ["gold", "silver", "basic"]}
    premium = {"name": "premium", "type": "boolean", "by": "tier", "p": 0.5}
    premium["params"] = {"gold": {"p": 0.9}, "basic": {"p": 0.1}}
    config = _config([tier, premium])
    table = generate_all(config)
    check = _checks(config, "premium")[0]
    assert _run(check, table)[0] == 0
    failed, observed = _run(check, _replace(table, "premium", pc.invert(table["premium"])))
    assert failed == 2  # gold and basic flip; silver (0.5) still holds
    assert "share true" in observed and "2 of 3 segments off" in observed
    mixed = _table([CATEGORY, SUBCATEGORY])
    sub_check = _checks(_config([CATEGORY, SUBCATEGORY]), "subcategory")[0]
    shuffled = np.random.default_rng(0).permutation(mixed["subcategory"].to_pylist())
    assert _run(sub_check, _replace(mixed, "subcategory", shuffled))[0] == 3


def test_a_stray_value_in_a_segment_fails_its_values_check_however_few() -> None:
    """The shares check tolerates a few strays, and a filter that reshapes the column skips
    it: each segment's values are checked row by row."""
    tier = {"name": "tier", "type": "category", "values": ["basic", "gold"]}
    role = {"name": "role", "type": "category", "by": "tier", "values": ["member", "admin"]}
    role["params"] = {"gold": {"values": ["owner"]}}
    config = _config([tier, role])
    table = generate_all(config)
    checks = _checks(config, "role")
    values = [c for c in checks if not c.shape]
    assert [c.relation for c in values] == [
        "role one of owner, where tier = gold",
        "role one of member, admin, where tier is another value or null",
    ]
    gold = pc.sum(pc.equal(table["tier"], "gold")).as_py()
    assert [_run(c, table) for c in values] == [
        (0, f"0 of {gold:,} rows hold another value"),
        (0, f"0 of {N - gold:,} rows hold another value"),
    ]
    roles = table["role"].to_pylist()
    basic = [i for i, t in enumerate(table["tier"].to_pylist()) if t == "basic"]
    for i in basic[:20]:  # 0.2 % of the rows: within the shares check's tolerance
        roles[i] = "owner"
    stray = _replace(table, "role", roles)
    assert _run(checks[0], stray)[0] == 0  # the shares check does not see them
    failed, observed = _run(values[1], stray)
    assert failed == 20 and observed.startswith("20 of ")
    assert _run(values[0], stray)[0] == 0


def test_offsets_and_ranges_by_segment() -> None:
    shipping = {"name": "shipping", "type": "category", "values": ["express", "standard"]}
    shipped = {"name": "shipped_at", "type": "datetime", "after": "ordered_at", "by": "shipping"}
    shipped["offset"] = {"min": "1h", "max": "5d"}
    shipped["params"] = {"express": {"offset": {"max": "1d"}}}  # min 1h is kept
    window = {"name": "window", "type": "date", "by": "shipping"}
    window["params"] = {
        "express": {"start": "2024-01-01", "end": "2024-01-31"},
        "standard": {"start": "2024-06-01", "end": "2024-06-30"},
    }
    config = _config([ORDERED, shipping, shipped, window])
    table = generate_all(config).drop_null()
    express = pc.equal(table["shipping"], "express")
    hours = pc.divide(
        pc.subtract(table["shipped_at"].cast(pa.int64()), table["ordered_at"].cast(pa.int64())),
        3_600_000_000,
    )
    fast, slow = hours.filter(express), hours.filter(pc.invert(express))
    assert pc.min(fast).as_py() >= 1 and pc.max(fast).as_py() <= 24
    assert pc.max(slow).as_py() > 100
    assert {d.month for d in table["window"].filter(express).to_pylist()} == {1}
    assert {d.month for d in table["window"].filter(pc.invert(express)).to_pylist()} == {6}
    checks = [c for name in ("shipped_at", "window") for c in _checks(config, name)]
    # shipped_at: segments, an offset check per segment; window: segments, a range per segment
    assert len(checks) == 1 + 2 + 1 + 2
    assert all(_run(c, table)[0] == 0 for c in checks)
    late = table.set_column(
        table.schema.get_field_index("window"),
        "window",
        pa.array([dt.date(2024, 6, 15)] * table.num_rows),  # June: standard's, not express's
    )
    ranges = [c for c in checks if "within its min and max" in c.relation]
    assert [_run(c, late)[0] > 0 for c in ranges] == [True, False], [c.relation for c in ranges]


def test_a_segments_range_allows_rounding_and_an_unbounded_side() -> None:
    """Rounded to 2 decimals, 0.996 reads 1.0: not outside. A max of .inf is no bound (its
    SQL named a column `inf`, and the report failed)."""
    c = {"name": "c", "type": "category", "values": ["a", "b"]}
    x = {"name": "x", "type": "float", "by": "c", "min": 0.004, "max": 0.996, "decimals": 2}
    x["params"] = {"a": {"distribution": "normal", "mean": 5, "std": 1, "min": 0, "max": math.inf}}
    config = _config([c, x])
    table = generate_all(config)
    checks = _checks(config, "x")
    assert [_run(check, table)[0] for check in checks] == [0, 0, 0]
    too_big = table.set_column(1, "x", pa.array([1.02] * table.num_rows))
    assert [_run(check, too_big)[0] > 0 for check in checks[1:]] == [False, True]


def test_a_by_column_with_unknown_values_uses_the_own_parameters_for_the_rest() -> None:
    tier = {"name": "tier", "type": "category", "values": ["gold", "basic"]}
    label = {"name": "label", "type": "expression", "template": "{{ tier }}"}  # values unknown
    price = {"name": "price", "type": "integer", "by": "label", "min": 1, "max": 9}
    price["params"] = {"gold": {"min": 100, "max": 200}}
    table = _table([tier, label, price], rows=500)
    for tier_value, value in zip(
        table["tier"].to_pylist(), table["price"].to_pylist(), strict=True
    ):
        assert 100 <= value <= 200 if tier_value == "gold" else 1 <= value <= 9


# --- correlation -------------------------------------------------------------------------

AGE = {
    "name": "age",
    "type": "integer",
    "min": 18,
    "max": 90,
    "distribution": "normal",
    "mean": 41,
    "std": 12,
    "nullable": 0.1,
}
INCOME = {
    "name": "income",
    "type": "float",
    "distribution": "lognormal",
    "mean": 50000,
    "std": 20000,
    "correlated_with": "age",
    "rho": 0.6,
}


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    return float(np.corrcoef(_mid_ranks(x), _mid_ranks(y))[0, 1])


def _mid_ranks(values: np.ndarray) -> np.ndarray:
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    return (np.cumsum(counts) - (counts + 1) / 2)[inverse]


@pytest.mark.parametrize("rho", [0.6, -0.4, 0.95])
def test_correlation_lands_near_rho_and_keeps_the_marginal(rho: float) -> None:
    config = _config([AGE, {**INCOME, "rho": rho}])
    table = generate_all(config)
    income = _numbers(table["income"])
    assert table["income"].null_count == 0  # a null age still gets an (independent) income
    assert abs(income.mean() - 50000) < 600 and abs(income.std() - 20000) < 800
    both = table.drop_null()
    observed = _spearman(_numbers(both["age"]), _numbers(both["income"]))
    assert abs(observed - 6 / math.pi * math.asin(rho / 2)) < 0.03
    failed, text = _run(_checks(config, "income")[0], table)
    assert failed == 0 and text.startswith("Spearman ")


def test_correlated_integers_through_the_poisson_quantiles() -> None:
    kids = {"name": "kids", "type": "integer", "distribution": "poisson", "mean": 3}
    kids |= {"correlated_with": "age", "rho": -0.5}
    config = _config([AGE, kids])
    table = generate_all(config)
    values = _numbers(table["kids"])
    assert abs(values.mean() - 3) < 0.06 and abs(values.var() - 3) < 0.15
    both = table.drop_null()
    assert _spearman(_numbers(both["age"]), _numbers(both["kids"])) < -0.4
    assert _run(_checks(config, "kids")[0], table)[0] == 0


def test_the_correlation_check_fails_on_independent_values() -> None:
    config = _config([AGE, INCOME])
    table = generate_all(config)
    check = _checks(config, "income")[0]
    shuffled = np.random.default_rng(1).permutation(_numbers(table["income"]))
    failed, text = _run(check, _replace(table, "income", shuffled))
    assert failed == 1 and "declared 0.582" in text
    assert _run(check, _replace(table, "income", -_numbers(table["income"])))[0] == 1
    # A constant column over 20,000 rows has no correlation; it passed as "not measurable".
    failed, text = _run(check, _replace(table, "income", np.full(table.num_rows, 50000.0)))
    assert failed == 1 and text.startswith("none: constant over")
    assert _run(check, table.slice(0, 5)) == (0, "not measurable: under 10 rows")
    # Few rows of a column that may well be constant there (a Poisson of mean 0.05 in 20
    # rows), or a constant base: not measurable, not failed.
    small = _replace(table, "income", np.full(table.num_rows, 50000.0)).slice(0, 200)
    assert _run(check, small) == (0, "not measurable: a constant column")
    flat_base = _replace(table, "age", np.full(table.num_rows, 40.0))
    assert _run(check, flat_base) == (0, "not measurable: a constant column")


def test_the_normal_functions_match_the_standard_library() -> None:
    p = np.linspace(1e-9, 1 - 1e-9, 2001)
    exact = np.array([NormalDist().inv_cdf(x) for x in p])
    assert np.allclose(ndtri(p), exact, rtol=1.2e-9, atol=1e-12)
    z = np.linspace(-30, 8, 2001)
    exact = np.array([0.5 * math.erfc(-x / math.sqrt(2)) for x in z])
    assert np.all(np.abs(ndtr(z) - exact) <= 1.2e-7 * np.minimum(exact, 1 - exact) + 1e-15)


# --- determinism -------------------------------------------------------------------------


def test_same_seed_same_values_whatever_the_chunk_order() -> None:
    shipped = {"name": "shipped_at", "type": "datetime", "after": "ordered_at"}
    shipped |= {"offset": {"distribution": "normal", "mean": "2d", "std": "12h", "max": "1w"}}
    columns = [ORDERED, shipped, CATEGORY, SUBCATEGORY, AGE, INCOME]
    config = _config(columns, rows=3000)
    whole = generate_all(config)
    assert whole.equals(generate_all(_config(columns, rows=3000)))
    chunks = plan_chunks(config.rows, config.chunk_size)
    backwards = {c.index: generate_chunk(config, c).table for c in reversed(chunks)}
    assert pa.concat_tables(backwards[i] for i in sorted(backwards)).equals(whole)
    other = generate_all(make_config(columns, rows=3000, chunk_size=5000, seed=2))
    assert not other["subcategory"].equals(whole["subcategory"])


# --- config errors -----------------------------------------------------------------------

HEAD = """name: x
rows: 100
columns:
  - {name: ordered_at, type: datetime, start: 2024-01-01, end: 2024-12-31}
  - {name: tier, type: category, values: [gold, basic], nullable: 0.1}
  - {name: who, type: person.first_name}
  - name: c
"""


def _error(tmp_path: Path, column: str) -> str:
    path = tmp_path / "bad.yaml"
    path.write_text(HEAD + column, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return str(info.value)


@pytest.mark.parametrize(
    ("column", "expected"),
    [
        (
            "    type: date\n    after: ordered_at\n    offset: {min: 36h, max: 5d}\n",
            "bad.yaml:10: columns[3] (c).offset.min: '36h' is not a whole number of days",
        ),
        (
            "    type: datetime\n    after: ordered_at\n    offset:\n"
            "      max: 1mo\n      min: 1h\n",
            "bad.yaml:10: columns[3] (c).offset: offset mixes months or years with fixed units",
        ),
        (
            "    type: datetime\n    after: ordered_at\n    offset:\n      max: 5 parsecs\n",
            "bad.yaml:11: columns[3] (c).offset.max: '5 parsecs' is not a duration",
        ),
        (
            "    type: datetime\n    after: ordered_at\n    offset:\n      min: -1h\n",
            "bad.yaml:11: columns[3] (c).offset.min: offsets are never negative; use before",
        ),
        (
            "    type: datetime\n    after: ordered_at\n    offset:\n"
            "      min: 2d\n      max: 1d\n",
            "bad.yaml:11: columns[3] (c).offset.min: min (2d) is greater than max (1d)",
        ),
        (
            "    type: integer\n    after: ordered_at\n    offset: {max: 3}\n",
            "bad.yaml:9: columns[3] (c).after: ordered_at holds timestamp[us]; integer columns "
            "can only be offset from integer columns",
        ),
        (
            "    type: datetime\n    before: who\n    offset: {max: 1d}\n",
            "bad.yaml:9: columns[3] (c).before: who holds string; datetime columns can only be "
            "offset from date or datetime columns",
        ),
        (
            "    type: float\n    after: ordered_at\n    offset: {max: 1d}\n",
            "columns[3] (c).offset.max: '1d' is not a number",
        ),
        (
            "    type: datetime\n    after: ordered_at\n    start: 2024-01-01\n"
            "    offset: {max: 1d}\n",
            "bad.yaml:10: columns[3] (c).start: start does not apply with after",
        ),
        (
            "    type: datetime\n    after: ordered_at\n",
            "bad.yaml:7: columns[3] (c).offset: after needs an offset, e.g. offset: {max: 5d}",
        ),
        (
            "    type: integer\n    before: ordered_at\n",
            "columns[3] (c).offset: before needs an offset, e.g. offset: {max: 10}",
        ),
        (
            "    type: datetime\n    after: ordered_at\n    offset:\n      min: 1h\n",
            "bad.yaml:10: columns[3] (c).offset.max: a uniform offset needs offset.max (the "
            "largest offset), e.g. max: 5d",
        ),
        (
            "    type: datetime\n    after: ordered_at\n    offset:\n      max: 5m\n",
            "bad.yaml:11: columns[3] (c).offset.max: '5m': m is ambiguous (minutes or months); "
            "write min or mo",
        ),
        (
            "    type: float\n    min: 1\n",
            "columns[3] (c): a uniform distribution needs both min and max; max is missing",
        ),
        (
            "    type: float\n    min: 1\n    max: 2\n    offset: {max: 1}\n",
            "bad.yaml:11: columns[3] (c).offset: offset needs after or before",
        ),
        (
            "    type: float\n    by: tier\n    min: 1\n    max: 100\n    params:\n"
            "      gold: {min: 500}\n      platinum: {max: 3}\n",
            "bad.yaml:13: columns[3] (c).params.gold.min: min (500) is greater than max (100)",
        ),
        (
            "    type: float\n    by: tier\n    min: 1\n    max: 100\n    params:\n"
            "      gold: {min: 5}\n      platinum: {max: 3}\n",
            "bad.yaml:14: columns[3] (c).params.platinum: tier never takes the value 'platinum'",
        ),
        (
            "    type: float\n    by: tier\n    params:\n      gold: {min: 5, max: 30}\n",
            "bad.yaml:7: columns[3] (c): a uniform distribution needs both min and max (the "
            "column's own parameters apply to tier = basic and rows where tier is null)",
        ),
        (
            "    type: integer\n    by: who\n    min: 1\n    params:\n      Ann: {max: 30}\n",
            "own parameters apply to the values of who not listed in params",
        ),
        (
            "    type: category\n    by: tier\n    params:\n      gold: {values: [a]}\n"
            "      basic:\n        valuse: [b]\n",
            "bad.yaml:13: columns[3] (c).params.basic.valuse: unknown parameter 'valuse'; did "
            "you mean 'values'?",
        ),
        (
            "    type: boolean\n    by: tier\n    params:\n      gold: {p: 0.9, nullable: 0.5}\n",
            "columns[3] (c).params.gold.nullable: nullable is the same for all segments",
        ),
        (
            "    type: boolean\n    by: tier\n    params:\n      true: {p: 0.9}\n",
            "columns[3] (c).params.True: True is not a value tier can hold (string)",
        ),
        ("    type: boolean\n    by: tier\n", "columns[3] (c): by and params go together"),
        (
            "    type: float\n    distribution: normal\n    mean: 1\n    std: 1\n"
            "    correlated_with: who\n    rho: 0.5\n",
            "bad.yaml:12: columns[3] (c).correlated_with: who holds string; a correlation needs",
        ),
        (
            "    type: float\n    min: 0\n    max: 1\n    correlated_with: tier\n",
            "columns[3] (c): correlated_with needs rho",
        ),
        (
            "    type: float\n    min: 0\n    max: 1\n    correlated_with: ordered_at\n"
            "    rho: 1.5\n",
            "bad.yaml:12: columns[3] (c).rho: Input should be less than or equal to 1",
        ),
        (
            "    type: float\n    min: 0\n    max: 1\n    after: ordered_at\n"
            "    offset: {max: 1}\n",
            "bad.yaml:9: columns[3] (c).min: min does not apply with after",
        ),
    ],
)
def test_bad_inputs_name_the_file_line_and_field(
    tmp_path: Path, column: str, expected: str
) -> None:
    assert expected in _error(tmp_path, column)


def test_a_correlation_with_a_sequence_is_refused(tmp_path: Path) -> None:
    """Ranks are taken per chunk, and a sequence rises along the rows: each chunk of 5,000
    correlated 0.89, the 20,000 rows 0.22 (the report failed a build that had published)."""
    path = tmp_path / "bad.yaml"
    path.write_text(
        "name: x\nrows: 100\ncolumns:\n  - {name: id, type: sequence}\n"
        "  - {name: x, type: float, min: 0, max: 1, correlated_with: id, rho: 0.9}\n"
    )
    with pytest.raises(ConfigError, match=r"bad.yaml:5: .*id is a sequence, which rises"):
        load_config(path)


def test_a_date_without_end_still_reads_field_required(tmp_path: Path) -> None:
    message = _error(tmp_path, "    type: date\n    start: 2024-01-01\n")
    assert "bad.yaml:7: columns[3] (c).end: Field required" in message


def test_whole_days_in_hours_are_fine_for_dates() -> None:
    due = {"name": "due", "type": "date", "after": "ordered_at", "offset": {"max": "48h"}}
    make_config([ORDERED, due])


# --- exact integers, sub-second bases, the ends of the calendar, decimal bases --------------

SENT_NS = {"name": "sent_ns", "type": "integer", "min": 1_700_000_000_000_000_000}
SENT_NS["max"] = 1_700_000_100_000_000_000  # epoch nanoseconds: far above 2**53


def test_integer_offsets_on_epoch_nanoseconds_are_exact() -> None:
    recv = {"name": "recv_ns", "type": "integer", "after": "sent_ns"}
    recv["offset"] = {"distribution": "poisson", "mean": 50, "min": 1, "max": 100}
    config = _config([SENT_NS, recv], rows=5000)
    table = generate_all(config)
    sent, got = table["sent_ns"].to_pylist(), table["recv_ns"].to_pylist()
    gaps = [r - s for s, r in zip(sent, got, strict=True)]  # Python ints: exact
    assert min(gaps) >= 1 and max(gaps) <= 100 and abs(sum(gaps) / len(gaps) - 50) < 1
    assert min(sent) >= SENT_NS["min"] and max(sent) <= SENT_NS["max"]
    check = _checks(config, "recv_ns")[0]
    assert _run(check, table)[0] == 0
    far = pa.table({"sent_ns": [-(2**63) + 1, 5], "recv_ns": [2**63 - 1, 6]})
    assert _run(check, far)[0] == 1  # counted, not an overflow error in DuckDB


@pytest.mark.parametrize("distribution", ["uniform", "normal"])
def test_integer_bounds_beyond_2_to_the_53_are_exact(distribution: str) -> None:
    low = 2**62 + 1  # as a float, 2**62: one below the bound
    column = {"name": "n", "type": "integer", "min": low, "max": low + 2}
    column["distribution"] = distribution
    values = set(generate_all(_config([column], rows=600))["n"].to_pylist())
    if distribution == "uniform":
        assert values == {low, low + 1, low + 2}
    else:  # drawn as floats, 1024 apart up there: clipped to the exact bounds
        assert values <= {low, low + 1, low + 2}


def test_integer_offsets_past_int64_are_an_error_naming_the_row() -> None:
    top = 2**63 - 3
    sent = {"name": "sent", "type": "integer", "min": top, "max": top}
    recv = {"name": "recv", "type": "integer", "after": "sent", "offset": {"min": 5, "max": 6}}
    with pytest.raises(SynthaixError) as error:
        generate_all(_config([sent, recv], rows=100))  # wrapped to -2**63 + 2 before
    message = str(error.value)
    assert message.startswith(f"column 'recv': row 0: sent {top} + offset ")
    assert message.endswith(
        "which does not fit in a 64-bit integer (-9223372036854775808 to 9223372036854775807)"
    )
    assert "offset.max" in (error.value.hint or "")


def test_the_row_named_is_the_chunk_row_also_within_a_segment() -> None:
    top = 2**63 - 3
    tier = {"name": "tier", "type": "category", "values": ["ok", "late"]}
    recv = {"name": "recv", "type": "integer", "by": "tier", "after": "sent"}
    recv["offset"] = {"min": 0, "max": 1}
    recv["params"] = {"late": {"offset": {"min": 5, "max": 6}}}
    sent = {"name": "sent", "type": "integer", "min": top, "max": top}
    config = _config([tier, sent, recv], rows=300)
    tiers = _table([tier], rows=300)["tier"].to_pylist()
    with pytest.raises(SynthaixError, match=rf"row {tiers.index('late')}: sent {top} \+ offset"):
        generate_all(config)


def test_integer_underflow_and_unbounded_draws_past_int64_are_errors() -> None:
    bottom = -(2**63) + 3
    sent = {"name": "sent", "type": "integer", "min": bottom, "max": bottom}
    back = {"name": "back", "type": "integer", "before": "sent", "offset": {"min": 5, "max": 6}}
    with pytest.raises(SynthaixError, match=rf"column 'back': row 0: sent {bottom} - offset 5 = "):
        generate_all(_config([sent, back], rows=10))
    huge = {"name": "huge", "type": "integer", "distribution": "normal", "mean": 9.2e18}
    huge["std"] = 1e17
    with pytest.raises(SynthaixError, match=r"column 'huge': row .*64-bit integer"):
        generate_all(_config([huge], rows=100))


def test_a_sub_second_base_keeps_its_fraction() -> None:
    t_ms = {"name": "t_ms", "type": "sql", "expr": "ordered_at + INTERVAL 123 MILLISECOND"}
    later = {"name": "later", "type": "datetime", "after": "t_ms"}
    later["offset"] = {"min": 0, "max": "1s"}
    second = {"name": "second", "type": "datetime", "before": "t_ms"}
    second["offset"] = {"min": "1s", "max": "1s"}
    day = {"name": "day", "type": "date", "after": "t_ms", "offset": {"max": "1d"}}
    config = _config([ORDERED, t_ms, later, second, day], rows=2000)
    table = generate_all(config).drop_null()
    base = _numbers(table["t_ms"].cast(pa.int64()))
    gaps = _numbers(table["later"].cast(pa.int64())) - base
    assert set(gaps.tolist()) == {0, 1_000_000}  # whole seconds from the exact base
    assert all(v.microsecond == 123_000 for v in table["later"].to_pylist())
    assert set((base - _numbers(table["second"].cast(pa.int64()))).tolist()) == {1_000_000}
    for name in ("later", "second", "day"):
        assert _run(_checks(config, name)[0], table)[0] == 0


@pytest.mark.parametrize(
    ("base", "column", "message"),
    [
        (
            {"type": "date", "start": "9999-12-01", "end": "9999-12-31"},
            {"type": "date", "after": "b", "offset": {"min": "1mo", "max": "2mo"}},
            r"column 'c': row 0: b 9999-12-\d\d \+ offset [12] months = 10000-",
        ),
        (
            {"type": "datetime", "start": "0001-01-01 00:00:00", "end": "0001-01-01 00:00:00"},
            {"type": "datetime", "before": "b", "offset": {"min": "1s", "max": "1h"}},
            r"column 'c': row 0: b 0001-01-01T00:00:00 - offset \d+ s = 0000-12-31T23:",
        ),
        (
            {"type": "date", "start": "2024-01-01", "end": "2024-01-01"},
            {"type": "date", "after": "b", "offset": {"min": "1000000w", "max": "1000000w"}},
            r"column 'c': row 0: b 2024-01-01 \+ offset 7000000 days = far outside",
        ),
        (
            {"type": "datetime", "start": "2024-01-01 00:00:00", "end": "2024-01-01 00:00:00"},
            {"type": "date", "after": "b", "offset": {"min": "8000y", "max": "8000y"}},
            r"column 'c': row 0: b 2024-01-01 \+ offset 96000 months = 10024-01-01",
        ),
    ],
)
def test_offsets_past_the_calendar_are_an_error_naming_the_row(
    base: dict[str, Any], column: dict[str, Any], message: str
) -> None:
    config = _config([{"name": "b", **base}, {"name": "c", **column}], rows=20)
    with pytest.raises(SynthaixError, match=message) as error:
        generate_all(config)
    assert "0001-01-01 to 9999-12-31" in str(error.value)


def test_a_decimal_column_can_be_an_offset_base_and_a_correlation_target() -> None:
    price = {"name": "price", "type": "float", "min": 1, "max": 500}
    total = {"name": "total", "type": "sql", "expr": "price * 1.19", "as": "decimal(10,2)"}
    paid = {"name": "paid", "type": "float", "after": "total", "offset": {"max": 5}, "decimals": 2}
    tip = {"name": "tip", "type": "float", "distribution": "normal", "mean": 5, "std": 1}
    tip |= {"correlated_with": "total", "rho": 0.8}
    config = _config([price, total, paid, tip], rows=4000)
    table = generate_all(config)
    assert table["total"].type == pa.decimal128(10, 2)
    extra = _numbers(table["paid"]) - _numbers(table["total"].cast(pa.float64()))
    assert extra.min() >= -0.005 and extra.max() <= 5.005
    totals = _numbers(table["total"].cast(pa.float64()))
    assert _spearman(totals, _numbers(table["tip"])) > 0.7
    for name in ("paid", "tip"):
        assert _run(_checks(config, name)[0], table)[0] == 0
