"""Every column type: values in range, distributions roughly right, nulls at the asked rate."""

from __future__ import annotations

import datetime as dt
import uuid

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from conftest import generate_all, make_config
from synthaix.columns import REGISTRY
from synthaix.columns.people import name_source

N = 20_000


def _column(spec: dict, rows: int = N, **overrides) -> pa.ChunkedArray:
    config = make_config([{"name": "x", **spec}], rows=rows, chunk_size=5000, **overrides)
    return generate_all(config)["x"]


def _values(spec: dict, rows: int = N) -> np.ndarray:
    return _column(spec, rows).to_numpy(zero_copy_only=False)


def test_uuid_is_valid_version_4_and_distinct() -> None:
    values = _column({"type": "uuid"}).to_pylist()
    parsed = [uuid.UUID(v) for v in values]
    assert all(u.version == 4 and str(u) == v for u, v in zip(parsed, values, strict=True))
    assert len(set(values)) == N


def test_sequence_counts_from_start_by_step() -> None:
    assert _values({"type": "sequence", "start": 10, "step": 5}, rows=7).tolist() == [
        10,
        15,
        20,
        25,
        30,
        35,
        40,
    ]


def test_integer_uniform_covers_the_range() -> None:
    values = _values({"type": "integer", "min": 1, "max": 6})
    assert values.min() == 1 and values.max() == 6
    counts = np.bincount(values)[1:]
    assert np.all(np.abs(counts / N - 1 / 6) < 0.015)


def test_integer_normal_is_clipped_and_has_the_asked_moments() -> None:
    spec = {
        "type": "integer",
        "min": 18,
        "max": 90,
        "distribution": "normal",
        "mean": 41,
        "std": 12,
    }
    values = _values(spec)
    assert values.min() >= 18 and values.max() <= 90
    assert abs(values.mean() - 41) < 0.5
    assert abs(values.std() - 12) < 0.6


def test_float_lognormal_mean_and_std_are_of_the_values() -> None:
    values = _values({"type": "float", "distribution": "lognormal", "mean": 50, "std": 20})
    assert values.min() > 0
    assert abs(values.mean() - 50) < 1.0
    assert abs(values.std() - 20) < 1.5


def test_float_decimals_and_bounds() -> None:
    values = _values({"type": "float", "min": 0, "max": 1, "decimals": 2})
    assert values.min() >= 0 and values.max() <= 1
    assert np.allclose(values, np.round(values, 2))


def test_poisson_mean() -> None:
    values = _values({"type": "integer", "distribution": "poisson", "mean": 3})
    assert abs(values.mean() - 3) < 0.1
    assert values.min() >= 0


def test_category_weights_are_respected() -> None:
    values = _column({"type": "category", "values": {"a": 0.2, "b": 0.3, "c": 0.5}}).to_pylist()
    for label, weight in {"a": 0.2, "b": 0.3, "c": 0.5}.items():
        assert abs(values.count(label) / N - weight) < 0.015


def test_category_list_and_numeric_labels() -> None:
    values = _column({"type": "category", "values": [1, 2, 3]})
    assert values.type == pa.int64()
    assert set(values.to_pylist()) == {1, 2, 3}


def test_boolean_probability() -> None:
    values = _values({"type": "boolean", "p": 0.8})
    assert abs(values.mean() - 0.8) < 0.015


def test_date_and_datetime_ranges() -> None:
    dates = _column({"type": "date", "start": "2020-01-01", "end": "2020-01-31"}).to_pylist()
    assert min(dates) == dt.date(2020, 1, 1) and max(dates) == dt.date(2020, 1, 31)
    spec = {"type": "datetime", "start": "2024-03-01 08:00:00", "end": "2024-03-01 17:59:59"}
    times = _column(spec).to_pylist()
    assert min(times) >= dt.datetime(2024, 3, 1, 8) and max(times) <= dt.datetime(
        2024, 3, 1, 17, 59, 59
    )
    assert len({t.hour for t in times}) == 10


def test_names_follow_the_locale_lists() -> None:
    first = _column({"type": "person.first_name", "locale": "de_DE"}).to_pylist()
    german, _ = name_source("de_DE", "first_name")
    assert set(first) <= set(german)
    full = _column({"type": "person.full_name"}, rows=1000).to_pylist()
    assert all(len(name.split(" ")) >= 2 for name in full)
    last = _column({"type": "person.last_name"}, rows=1000, locale="fr_FR").to_pylist()
    french, _ = name_source("fr_FR", "last_name")
    assert set(last) <= set(french)


@pytest.mark.parametrize(
    "kind",
    [
        "person.email",
        "person.phone",
        "person.job",
        "address.street",
        "address.full",
        "address.city",
        "address.country",
        "address.postcode",
        "company.name",
    ],
)
def test_faker_types_make_text(kind: str) -> None:
    values = _column({"type": kind}, rows=3000).to_pylist()
    assert all(isinstance(v, str) and v and "\n" not in v for v in values)
    assert len(set(values)) > 50  # not one repeated value
    if kind == "person.email":
        assert all("@" in v for v in values)


def test_faker_pool_zero_makes_one_value_per_row() -> None:
    pooled = _column({"type": "address.street", "pool": 100}, rows=2000).to_pylist()
    exact = _column({"type": "address.street", "pool": 0}, rows=2000).to_pylist()
    assert len(set(pooled)) <= 100  # one chunk, one pool of 100
    assert len(set(exact)) > 1900


@pytest.mark.parametrize("locale", ["en_US", "de_DE", "ar_AE"])  # ar_AE: Faker's own way
def test_every_row_gets_its_own_phone_number_in_the_locales_formats(locale: str) -> None:
    import re

    from synthaix.columns.people import phone_formats

    values = _column({"type": "person.phone", "locale": locale}, rows=6000).to_pylist()
    formats = phone_formats(locale)
    if formats is None:  # from a pool of Faker's values
        assert len(set(values)) > 50 and all(isinstance(v, str) and v for v in values)
        return
    assert len(set(values)) > 5990  # a pool of 2,000 Faker values repeated them ~3 times
    digit = {"#": "[0-9]", "%": "[1-9]", "$": "[2-9]"}
    shapes = [re.compile("".join(digit.get(c, re.escape(c)) for c in f.decode())) for f in formats]
    assert all(any(shape.fullmatch(v) for shape in shapes) for v in values)
    assert all(any(shape.fullmatch(v) for v in values) for shape in shapes)  # each is drawn


def test_lorem_respects_max_chars() -> None:
    values = _column({"type": "text.lorem", "max_chars": 80}, rows=500).to_pylist()
    assert all(5 <= len(v) <= 80 for v in values)


def test_expression_uses_earlier_columns() -> None:
    config = make_config(
        [
            {"name": "first", "type": "category", "values": ["Ann", "Bob"]},
            {"name": "n", "type": "sequence"},
            {"name": "email", "type": "expression", "template": "{{ first|lower }}.{{ n }}@x.org"},
        ],
        rows=10,
    )
    table = generate_all(config)
    for first, n, email in zip(
        *(table[c].to_pylist() for c in ("first", "n", "email")), strict=True
    ):
        assert email == f"{first.lower()}.{n}@x.org"


@pytest.mark.parametrize(
    "template",
    [
        "{{ a|lower }}.{{ b }}@x.com",
        "{{ a|trim|upper }}-{{ d }}",
        '{{ a|replace("n", "N")|title }}',
        "{{ a|capitalize }} and {{ b }}",
        "static text",
    ],
)
def test_vectorised_expressions_match_jinja(template: str) -> None:
    from synthaix.columns.expression import ExpressionColumn

    values = {
        "a": pa.array(["ann lee", None, " Bob ", "élodie"]),
        "b": pa.array([1, None, 3, -4]),
        "d": pa.array([dt.date(2020, 1, 2), None, dt.date(1999, 12, 31), dt.date(2000, 2, 29)]),
    }
    column = ExpressionColumn(name="e", template=template)
    fast = column.vectorised(values, 4)
    assert fast is not None
    assert fast.to_pylist() == column.render_rows(values, 4).to_pylist()


def test_a_constant_expression_fills_every_row_even_as_the_first_column() -> None:
    """It read its row count from the earlier columns: none, so it made 0 values (a crash)."""
    config = make_config(
        [
            {"name": "clinic", "type": "expression", "template": "Northside Clinic"},
            {"name": "age", "type": "integer", "min": 0, "max": 99},
        ],
        rows=5,
    )
    assert generate_all(config)["clinic"].to_pylist() == ["Northside Clinic"] * 5


def test_nullable_rate_and_nulls_in_expressions() -> None:
    config = make_config(
        [
            {"name": "city", "type": "category", "values": ["A", "B"], "nullable": 0.25},
            {"name": "label", "type": "expression", "template": "city={{ city }}"},
        ],
        rows=N,
    )
    table = generate_all(config)
    assert abs(table["city"].null_count / N - 0.25) < 0.015
    labels = pc.if_else(pc.is_null(table["city"]), "city=", table["label"])
    assert labels.to_pylist() == table["label"].to_pylist()


def test_every_registered_type_is_covered_here() -> None:
    tested = {
        "uuid",
        "sequence",
        "integer",
        "float",
        "category",
        "boolean",
        "date",
        "datetime",
        "person.first_name",
        "person.last_name",
        "person.full_name",
        "person.email",
        "person.phone",
        "person.job",
        "address.street",
        "address.full",
        "address.city",
        "address.country",
        "address.postcode",
        "company.name",
        "text.lorem",
        "expression",
        "llm",  # against the simulator: test_llm_build.py, test_llm_parts.py
        "sql",  # test_sql_constraints.py
        "person.username",  # test_people_columns.py, with faker and pattern
        "faker",
        "pattern",
        "reference",  # multi-table datasets: test_related_tables.py
        "aggregate",
    }
    assert set(REGISTRY) == tested
