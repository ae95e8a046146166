"""Columns that read a related table's fields, given under dotted names (`customers.tier`):
which names templates read, how references resolve, and every kind that names a column."""

from __future__ import annotations

import datetime as dt
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pytest

from conftest import make_config
from synthaix.columns.base import ChunkContext, RelationCheck
from synthaix.columns.choice import CategoryColumn
from synthaix.columns.conditional import quote
from synthaix.columns.expression import ExpressionColumn
from synthaix.columns.llm import LlmColumn
from synthaix.columns.numeric import FloatColumn
from synthaix.columns.people import HandleColumn
from synthaix.columns.refs import resolve, row_contexts, template_references
from synthaix.columns.sandbox import TEMPLATES
from synthaix.columns.temporal import DateColumn
from synthaix.errors import ConfigError
from synthaix.llm.fill import row_inputs, stage_of
from synthaix.llm.prompts import render

TIERS = pa.array(["gold", "silver", None, "gold"])
SIGNUP = pa.array([dt.date(2024, 1, 31), dt.date(2023, 6, 1), None, dt.date(2020, 2, 29)])
ORDERS = pa.array(
    [[{"total": 10.5}, {"total": 3.0}], [], None, [{"total": 7.25}]],
    type=pa.list_(pa.struct([("total", pa.float64())])),
)
VALUES = {"customers.tier": TIERS, "customers.signup_date": SIGNUP, "recent_orders": ORDERS}


def _ctx(values: dict[str, pa.Array], rows: int | None = None, seed: int = 0) -> ChunkContext:
    rows = rows if rows is not None else len(next(iter(values.values())))
    return ChunkContext(rows, 0, np.random.default_rng(seed), values=values)


def _failed(check: RelationCheck, table: pa.Table) -> int:
    con = duckdb.connect()
    con.register("data", table)
    failed, _ = con.execute(check.sql).fetchone()  # type: ignore[misc]
    return int(failed)


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{ customers.tier }}", {"customers.tier"}),
        ("{{ customers['tier'] }}", {"customers.tier"}),
        ("{{ name.upper() }}", {"name"}),
        ("{{ customers.name.upper() }}", {"customers.name"}),
        ("{{ signup_date.year }}", {"signup_date.year"}),
        ("{{ c['x'] }}", {"c.x"}),
        ("{{ c['x.y'] }}", {"c"}),
        ("{{ c[0].x }}", {"c"}),
        ("{{ a.b }} {{ a }}", {"a", "a.b"}),
        ("{{ x|replace(y.z, '-') }}", {"x", "y.z"}),
        ("{% if customers.tier == 'gold' %}{{ first }}{% endif %}", {"customers.tier", "first"}),
        (
            "{% for o in recent_orders %}{{ o.total }}{{ loop.index }}{% endfor %}",
            {"recent_orders"},
        ),
        ("{% set t = customers.tier %}{{ t.upper() }}", {"customers.tier"}),
        ("plain text {{ range(2)|join }}", set()),
    ],
)
def test_template_references(template: str, expected: set[str]) -> None:
    assert template_references(TEMPLATES.parse(template)) == expected


def test_resolve_prefers_the_name_then_its_longest_head() -> None:
    available = {"signup_date", "customers.tier", "customers.address"}
    assert resolve("customers.tier", available) == "customers.tier"
    assert resolve("signup_date", available) == "signup_date"
    assert resolve("signup_date.year", available) == "signup_date"
    assert resolve("customers.address.city", available) == "customers.address"
    assert resolve("customers", available) is None
    assert resolve("customers.name", available) is None
    assert resolve("other", available) is None


def test_row_contexts_nest_dotted_names_and_keep_plain_ones_flat() -> None:
    values = {**VALUES, "n": pa.array([1, 2, 3, 4])}
    rows = row_contexts(["customers.signup_date", "customers.tier", "n"], values, 4)
    assert rows[0] == {"customers": {"signup_date": dt.date(2024, 1, 31), "tier": "gold"}, "n": 1}
    assert rows[2] == {"customers": {"signup_date": None, "tier": None}, "n": 3}
    assert row_contexts(["customers.tier"], values, 4, null="")[2] == {"customers": {"tier": ""}}
    assert row_contexts([], values, 2) == [{}, {}]
    with pytest.raises(ConfigError, match="clashes"):
        row_contexts(["customers", "customers.tier"], {**values, "customers": TIERS}, 4)


def test_expression_reads_related_fields_vectorised() -> None:
    column = ExpressionColumn(name="label", template="{{ customers.tier|upper }}-{{ n }}")
    values = {**VALUES, "n": pa.array([1, 2, 3, 4])}
    assert column.references() == {"customers.tier", "n"}
    assert column.vectorised(values, 4) is not None
    expected = ["GOLD-1", "SILVER-2", "-3", "GOLD-4"]
    assert column.generate(_ctx(values)).to_pylist() == expected
    assert column.render_rows(values, 4).to_pylist() == expected  # Jinja2 agrees


def test_expression_reads_related_fields_row_by_row() -> None:
    template = (
        "{% if customers.tier == 'gold' %}VIP since {{ customers.signup_date.year }}"
        "{% else %}{{ customers['tier']|default('none', true) }}{% endif %}"
        "{% for o in recent_orders %} {{ o.total }}{% endfor %}"
    )
    column = ExpressionColumn(name="label", template=template)
    assert column.references() == {
        "customers.tier",
        "customers.signup_date.year",
        "recent_orders",
    }
    assert column.vectorised(VALUES, 4) is None
    out = column.generate(_ctx(VALUES)).to_pylist()
    assert out == ["VIP since 2024 10.5 3.0", "silver", "none", "VIP since 2020 7.25"]


def test_expression_reads_an_attribute_of_a_plain_column() -> None:
    column = ExpressionColumn(name="year", template="{{ signup_date.year }}/{{ signup_date }}")
    values = {"signup_date": SIGNUP[:2]}  # a null is empty text, which has no year
    assert column.generate(_ctx(values)).to_pylist() == ["2024/2024-01-31", "2023/2023-06-01"]
    assert column.capacity({"signup_date": 365}, "en_US") == 365


PROMPT = (
    "A review by a {{ customers.tier }} customer who bought "
    "{% for o in recent_orders %}{{ o.total }};{% endfor %}"
)


def test_llm_prompts_render_related_fields_and_lists_of_rows() -> None:
    review = LlmColumn(name="review", prompt=PROMPT)
    fixed = LlmColumn(name="mood", prompt="a mood")
    assert review.references() == {"customers.tier", "recent_orders"}
    inputs = row_inputs([review, fixed], VALUES, [0, 1, 3])
    assert inputs == {
        0: {"id": 0, "review": "A review by a gold customer who bought 10.5;3.0;"},
        1: {"id": 1, "review": "A review by a silver customer who bought "},
        3: {"id": 3, "review": "A review by a gold customer who bought 7.25;"},
    }
    messages = render(None, [review, fixed], list(inputs.values()), 3, False)
    assert "gold customer who bought 10.5;3.0;" in messages[1]["content"]


def test_llm_stage_splits_where_a_column_reads_an_attribute_of_another() -> None:
    first = LlmColumn(name="profile", schema={"type": "object"})
    second = LlmColumn(name="bio", prompt="{{ profile.job }} and {{ customers.tier }}")
    other = LlmColumn(name="note", prompt="{{ customers.tier }}")
    assert stage_of([first, other, second], 0) == [first, other]


def test_a_category_by_a_related_field() -> None:
    column = CategoryColumn(
        name="discount",
        by="customers.tier",
        values=["none"],
        params={"gold": {"values": ["10%", "20%"]}, "silver": {"values": ["5%"]}},
    )
    tiers = pa.array(["gold", "silver", None, "bronze"] * 500)
    out = column.generate(_ctx({"customers.tier": tiers})).to_pylist()
    assert set(out[0::4]) == {"10%", "20%"} and set(out[1::4]) == {"5%"}
    assert set(out[2::4]) == set(out[3::4]) == {"none"}
    table = pa.table({"customers.tier": tiers, "discount": out})
    checks = column.relation_checks()
    assert checks and all(_failed(c, table) == 0 for c in checks)


def test_a_date_after_a_related_date() -> None:
    column = DateColumn(name="ordered_on", after="customers.signup_date", offset={"max": "30d"})
    assert column.references() == {"customers.signup_date"}
    base = pa.array([dt.date(2024, 1, 1) + dt.timedelta(days=i % 400) for i in range(999)] + [None])
    out = column.generate(_ctx({"customers.signup_date": base}))
    days = [
        None if o is None else (o - b).days
        for o, b in zip(out.to_pylist(), base.to_pylist(), strict=True)
    ]
    assert days[-1] is None and all(0 <= d <= 30 for d in days[:-1] if d is not None)
    table = pa.table({"customers.signup_date": base, "ordered_on": out})
    [check] = column.relation_checks()
    assert '"customers.signup_date"' in check.sql
    assert _failed(check, table) == 0
    broken = table.set_column(1, "ordered_on", pa.array([dt.date(2000, 1, 1)] * 1000))
    assert _failed(check, broken) == 1000  # a value without its base breaks it too


def test_a_float_correlated_with_a_related_number() -> None:
    column = FloatColumn(
        name="spend",
        distribution="normal",
        mean=50,
        std=10,
        correlated_with="customers.score",
        rho=0.8,
    )
    score = pa.array(np.random.default_rng(1).normal(size=4000))
    out = column.generate(_ctx({"customers.score": score}, seed=2))
    [check] = column.relation_checks()
    assert _failed(check, pa.table({"customers.score": score, "spend": out})) == 0


def test_an_email_from_related_names() -> None:
    column = HandleColumn(
        name="email", type="person.email", **{"from": ["customers.first", "customers.last"]}
    )
    values = {
        "customers.first": pa.array(["Ann", "Bob"]),
        "customers.last": pa.array(["Lee", "Ng"]),
    }
    out = column.generate(_ctx(values))
    assert out.to_pylist() == ["ann.lee@example.com", "bob.ng@example.com"]
    [check] = column.relation_checks()
    assert _failed(check, pa.table({**values, "email": out})) == 0


def test_quote_escapes_any_name() -> None:
    assert quote("customers.tier") == '"customers.tier"'
    assert quote('odd"name') == '"odd""name"'
    con = duckdb.connect()
    con.register("data", pa.table({'odd"name': [1]}))
    assert con.execute("SELECT " + quote('odd"name') + " FROM data").fetchone() == (1,)


def _problems(columns: list[dict[str, Any]]) -> str:
    with pytest.raises(ConfigError) as caught:
        make_config(columns)
    return str(caught.value)


def test_config_resolves_attributes_of_columns_in_templates_only() -> None:
    signup = {"name": "signup_date", "type": "date", "start": "2020-01-01", "end": "2024-12-31"}
    config = make_config(
        [signup, {"name": "label", "type": "expression", "template": "{{ signup_date.year }}"}]
    )
    assert config.columns[1].references() == {"signup_date.year"}
    early = {"name": "label", "type": "expression", "template": "{{ signup_date.year }}"}
    assert "references 'signup_date.year', which comes later" in _problems([early, signup])
    by = {"name": "c", "type": "category", "by": "signup_date.year", "values": ["x"]}
    by["params"] = {2021: {"values": ["y"]}}
    assert "'signup_date.year' is not a column" in _problems([signup, by])
    after = {"name": "d", "type": "date", "after": "signup_date.year", "offset": {"max": "5d"}}
    assert "'signup_date.year' is not a column" in _problems([signup, after])


def test_fields_named_like_dict_methods_read_the_field_on_both_paths() -> None:
    column = ExpressionColumn(name="x", template="{{ customers.items }}")
    values = {"customers.items": pa.array(["3 books"])}
    assert column.vectorised(values, 1).to_pylist() == ["3 books"]  # type: ignore[union-attr]
    assert column.render_rows(values, 1).to_pylist() == ["3 books"]
    looped = ExpressionColumn(name="y", template="{% for o in orders %}{{ o.values }}{% endfor %}")
    orders = pa.array([[{"values": 2}]], type=pa.list_(pa.struct([("values", pa.int64())])))
    assert looped.generate(_ctx({"orders": orders})).to_pylist() == ["2"]
