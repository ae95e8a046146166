"""Expressions over related tables: a parent's column read as `customers.tier` (a column of
that name, dot included, in the data), and aggregates of child rows grouped by their parent."""

from __future__ import annotations

import pyarrow as pa
import pytest

from synthaix.sqlexpr import (
    ExpressionError,
    aggregate_by,
    bind,
    checked,
    checked_aggregate,
    evaluate,
    failing_row,
)

ORDERS = pa.table(
    {
        "quantity": pa.array([1, 2, 3], pa.int64()),
        "customers.tier": ["gold", "silver", None],
        "customers.discount": [0.1, 0.0, 0.5],
    }
)


@pytest.mark.parametrize("expr", ["customers.tier", '"customers.tier"', '"customers".tier'])
def test_a_dotted_name_is_one_column_of_the_data(expr: str) -> None:
    term, columns = checked(expr)
    assert columns == {"customers.tier"}
    assert term == '"customers.tier"'
    assert evaluate([term], ORDERS).column(0).to_pylist() == ["gold", "silver", None]


def test_arithmetic_and_functions_on_dotted_columns() -> None:
    term, columns = checked("quantity * (1 - customers.discount) || ''")
    assert columns == {"quantity", "customers.discount"}
    term, columns = checked("round(quantity * (1 - customers.discount), 2)")
    assert evaluate([term], ORDERS).column(0).to_pylist() == [0.9, 2.0, 1.5]
    term, _ = checked("upper(coalesce(customers.tier, 'none')) || '-' || quantity")
    assert evaluate([term], ORDERS).column(0).to_pylist() == ["GOLD-1", "SILVER-2", "NONE-3"]


def test_plain_names_render_as_before() -> None:
    assert checked("quantity + 1") == ("(quantity + 1)", frozenset({"quantity"}))


@pytest.mark.parametrize("expr", ["a.b.c", '"a.b".c', '"a.b.c"', "shop.customers.tier + 1"])
def test_three_parts_are_refused(expr: str) -> None:
    with pytest.raises(ExpressionError, match=r"reads \S+\.\S+\.\S+: write table\.column"):
        checked(expr)


def test_bind_and_failing_row_with_dotted_names() -> None:
    term = checked("CAST(100 // (quantity - 2) AS BIGINT) || customers.tier")[0]
    assert bind(term, ORDERS.schema) == pa.string()
    assert bind(term, ORDERS.schema, cast="text") == pa.string()
    row, message = failing_row(term, ORDERS)
    assert row == 1 and "zero" in message.lower()
    with pytest.raises(ExpressionError, match=r"customers\.nope"):
        bind(checked("customers.nope")[0], ORDERS.schema)


ITEMS = pa.table(
    {
        "order_id": [1, 1, 1, 2, 2, 3],
        "qty": [2, 1, 2, None, 4, 1],
        "unit_price": [1.005, 2.5, 3.0, 9.0, 0.25, 10.0],
        "orders.region": ["n", "n", "n", "s", "s", "e"],
    }
)


@pytest.mark.parametrize(
    ("expr", "values"),
    [
        ("sum(qty)", [5, 4, 1]),
        ("avg(qty)", [5 / 3, 4.0, 1.0]),
        ("count(*)", [3, 2, 1]),
        ("count(qty)", [3, 1, 1]),
        ("count(DISTINCT qty)", [2, 1, 1]),
        ("round(sum(qty * unit_price), 2)", [10.51, 1.0, 10.0]),
        ("coalesce(sum(qty) FILTER (WHERE qty > 1), 0)", [4, 4, 0]),
        ("max(unit_price) - min(unit_price)", [1.995, 8.75, 0.0]),
        ("string_agg(DISTINCT orders.region, ',')", ["n", "s", "e"]),
        ("string_agg(CAST(qty AS TEXT), '+' ORDER BY qty DESC)", ["2+2+1", "4", "1"]),
        ("arg_min(unit_price, qty)", [2.5, 0.25, 10.0]),
        ("bool_and(qty > 0)", [True, True, True]),
        ("7", [7, 7, 7]),
    ],
)
def test_aggregates_are_computed_per_key(expr: str, values: list) -> None:
    result = aggregate_by(ITEMS, "order_id", expr)
    assert result.column_names == ["key", "value"]
    assert result.column("key").to_pylist() == [1, 2, 3]
    assert result.column("value").to_pylist() == pytest.approx(values)


def test_aggregates_read_dotted_columns_and_group_by_them() -> None:
    result = aggregate_by(ITEMS, "orders.region", "sum(qty)")
    assert result.to_pylist() == [
        {"key": "e", "value": 1},
        {"key": "n", "value": 5},
        {"key": "s", "value": 4},
    ]
    assert checked_aggregate("count(DISTINCT orders.region)")[1] == {"orders.region"}


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("qty + sum(unit_price)", "reads qty outside an aggregate"),
        ("orders.region", "reads orders.region outside an aggregate"),
        ("sum(avg(qty))", "avg() inside another aggregate"),
        ("sum(qty) OVER ()", "window function"),
        ("row_number() OVER (ORDER BY qty)", "window function"),
        ("(SELECT sum(qty) FROM read_csv('/etc/passwd'))", "subquery"),
        ("sum((SELECT 1))", "subquery"),
        ("histogram(qty)", "histogram() is not allowed"),
        ("quantile_cont(qty, 0.5)", "quantile_cont() is not allowed"),
        ("sum(random())", "random() is not allowed"),
        ("sum(qty) EXPORT_STATE", "EXPORT_STATE"),
        ("main.sum(qty)", "without a schema"),
        ("sum(qty) AS total", "alias"),
        ("sum(qty) FROM data", "no FROM"),
        ("sum(qty); ATTACH '/tmp/x.db'", "SELECT"),
        ("sum(a.b.c)", "reads a.b.c: write table.column"),
        ("count(DISTINCT *)", "* is not allowed"),
        ("round(sum(qty) FILTER (WHERE qty > 1) *", "not an aggregate DuckDB expression"),
    ],
)
def test_bad_and_hostile_aggregates_are_refused(expr: str, message: str) -> None:
    with pytest.raises(ExpressionError, match="not an aggregate DuckDB expression") as caught:
        checked_aggregate(expr)
    assert message in str(caught.value)
    with pytest.raises(ValueError, match="not an aggregate"):
        aggregate_by(ITEMS, "order_id", expr)


def test_aggregates_stay_refused_in_row_expressions() -> None:
    with pytest.raises(ExpressionError, match=r"sum\(\) is not allowed"):
        checked("sum(quantity)")
    with pytest.raises(ExpressionError, match="FILTER, DISTINCT or ORDER BY is an aggregate"):
        checked("upper(DISTINCT customers.tier)")


def test_an_aggregate_that_fails_at_run_time_is_a_value_error() -> None:
    with pytest.raises(ExpressionError, match=r"(?i)overflow|out of range"):
        aggregate_by(ITEMS, "order_id", "CAST(sum(qty) * 100 AS TINYINT)")
