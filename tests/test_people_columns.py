"""Coherent people (emails and usernames made from the row's names, unique by a number),
any Faker method, and pattern text: values, uniqueness, the relation checks, config errors."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import re
import unicodedata
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pytest

from conftest import generate_all, make_config
from synthaix.assemble import Assembler, UniqueFilter, tracked_unique_columns
from synthaix.build.engine import Build
from synthaix.build.executor import ThreadExecutor
from synthaix.columns.base import ChunkContext
from synthaix.columns.pattern import distinct_strings, parse
from synthaix.config import DatasetConfig, load_config
from synthaix.errors import ConfigError
from synthaix.generate import generate_chunk, plan_chunks

NAMES = [
    {"name": "first", "type": "person.first_name"},
    {"name": "last", "type": "person.last_name"},
]
_DECIMAL = {"left_digits": 3, "right_digits": 2, "positive": True}
# Absolute dates: a range that ends "now" moves with the clock, and so do its values.
_YEAR = {"start_date": dt.date(2020, 1, 1), "end_date": dt.date(2021, 1, 1)}
_DATES = {"date_start": dt.date(2000, 1, 1), "date_end": dt.date(2005, 12, 31)}


def _email(**options: Any) -> dict[str, Any]:
    return {"name": "email", "type": "person.email", "from": ["first", "last"], **options}


# Letters without an accent to strip, spelt out (the documented table, in the cases the
# Faker name lists hold).
_SPELT = {"ß": "ss", "æ": "ae", "Æ": "ae", "œ": "oe", "Œ": "oe", "þ": "th", "Þ": "th"}
_SPELT |= dict.fromkeys("łŁ", "l") | dict.fromkeys("øØɔ", "o") | dict.fromkeys("đĐðÐ", "d")
_SPELT |= {"\u0131": "i", "ə": "e", "Ə": "e"}  # dotless i, schwa


def _fold(name: str) -> str:
    """The documented normalisation, written independently of the column's pyarrow kernels."""
    decomposed = "".join(_SPELT.get(c, c) for c in unicodedata.normalize("NFD", name))
    return re.sub("[^a-z0-9]", "", decomposed.lower())


def _failed(config: DatasetConfig, table: pa.Table, column: str) -> int:
    """Rows breaking the column's relation check, run as the report runs it: over `data`."""
    (check,) = next(c for c in config.columns if c.name == column).relation_checks()
    with duckdb.connect() as con:
        con.register("data", table)
        failed, observed = con.execute(check.sql).fetchone()
    assert "of" in observed
    return failed


def _load_error(tmp_path: Path, columns: list[dict[str, Any]], rows: int = 10) -> str:
    """The ConfigError of a config file whose column i is on line 4 + i."""
    lines = ["name: t", f"rows: {rows}", "columns:", *(f"  - {json.dumps(c)}" for c in columns)]
    path = tmp_path / "bad.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(ConfigError) as error:
        load_config(path)
    return str(error.value)


def _assemble(
    config: DatasetConfig,
    seen: dict[str, set] | None = None,
    first_row: int = 0,
    repairs: dict[str, Any] | None = None,
) -> tuple[pa.Table, Assembler]:
    """One round of the build's chunks, finishing in reverse order, through the assembler."""
    unique = UniqueFilter(tracked_unique_columns(config), seen, repairs)
    assembler = Assembler(config.rows, unique)
    chunks = plan_chunks(config.rows, config.chunk_size, first_row=first_row)
    batches = []
    for chunk in reversed(chunks):
        batches += assembler.add(chunk.index, generate_chunk(config, chunk))
    batches += [b for b in [assembler.flush()] if b is not None]
    for batch in batches:
        assembler.accepted(batch.table.num_rows)
    return pa.concat_tables(b.table for b in batches), assembler


# -- emails and usernames from the names -------------------------------------------------------


def test_email_is_made_from_the_rows_own_names_with_accents_folded() -> None:
    config = make_config([*NAMES, _email()], rows=2000, locale="de_DE")
    table = generate_all(config).to_pylist()
    assert any(not (r["first"] + r["last"]).isascii() for r in table)  # umlauts to fold
    for row in table:
        assert row["email"] == f"{_fold(row['first'])}.{_fold(row['last'])}@example.com"
    assert _failed(config, generate_all(config), "email") == 0


def test_styles_and_domains_mix_by_weight_and_a_full_name_column_works() -> None:
    columns = [
        {"name": "full", "type": "person.full_name"},
        {
            "name": "email",
            "type": "person.email",
            "from": "full",
            "style": {"first.last": 2, "flast": 1, "last_f": 1},
            "domain": {"gmail.com": 3, "example.com": 1},
        },
        {"name": "user", "type": "person.username", "from": "full", "style": "firstlast"},
    ]
    config = make_config(columns, rows=4000)
    table = generate_all(config)
    styles, domains = {"first.last": 0, "flast": 0, "last_f": 0}, {"gmail.com": 0}
    for row in table.to_pylist():
        first, last = (_fold(word) for word in (row["full"].split()[0], row["full"].split()[-1]))
        local, domain = row["email"].split("@")
        made = {
            "first.last": f"{first}.{last}",
            "flast": first[0] + last,
            "last_f": last + "_" + first[0],
        }
        assert local in made.values() and row["user"] == first + last
        styles[next(s for s, v in made.items() if v == local)] += 1
        domains["gmail.com"] += domain == "gmail.com"
    assert (
        abs(styles["first.last"] / 4000 - 0.5) < 0.04 and abs(styles["flast"] / 4000 - 0.25) < 0.04
    )
    assert abs(domains["gmail.com"] / 4000 - 0.75) < 0.04
    assert _failed(config, table, "email") == 0 and _failed(config, table, "user") == 0


def test_a_single_word_name_has_no_dangling_separator() -> None:
    columns = [
        {"name": "full", "type": "category", "values": ["Cher", "Ann  Marie Lee", "Ève Ünal"]},
        {"name": "user", "type": "person.username", "from": "full", "style": "first_last"},
    ]
    config = make_config(columns, rows=300)
    table = generate_all(config)
    made = dict(zip(table["full"].to_pylist(), table["user"].to_pylist(), strict=True))
    assert made == {"Cher": "cher", "Ann  Marie Lee": "ann_lee", "Ève Ünal": "eve_unal"}
    assert _failed(config, table, "user") == 0


def test_a_null_name_gives_a_null_email_and_same_seed_same_values() -> None:
    columns = [NAMES[0], {**NAMES[1], "nullable": 0.3}, _email(), {**_email(), "name": "e2"}]
    config = make_config(columns, rows=3000)
    table = generate_all(config)
    null_last = table["last"].is_null().to_pylist()
    assert table["email"].is_null().to_pylist() == null_last and 700 < sum(null_last) < 1100
    assert generate_all(config).equals(table)
    assert table["email"].equals(table["e2"])  # no draws with one style and one domain
    other = generate_all(make_config(columns, rows=3000, seed=2))
    assert not other["email"].equals(table["email"])


def test_without_from_emails_and_usernames_come_from_faker() -> None:
    columns = [
        {"name": "email", "type": "person.email"},
        {"name": "user", "type": "person.username", "pool": 0},
    ]
    table = generate_all(make_config(columns, rows=600))
    assert all("@" in v for v in table["email"].to_pylist())
    assert len(set(table["user"].to_pylist())) > 500


@pytest.mark.parametrize("russian", [["first"], ["first", "last"]])
def test_names_without_latin_letters_are_refused_when_generated(russian: list[str]) -> None:
    columns = [{**c, "locale": "ru_RU"} if c["name"] in russian else c for c in NAMES]
    config = make_config([*columns, _email()], rows=100)
    with pytest.raises(ConfigError, match="no Latin letters") as error:
        generate_all(config)
    assert "so they cannot make an email" in str(error.value)
    assert "Latin-script locale" in (error.value.hint or "")


def test_letters_without_accents_are_spelt_out_and_the_check_agrees() -> None:
    """ß, ł, ø, æ, œ, đ, þ, ð, dotless i, ə have no accent to strip: NFKD lost them (Heß -> he)."""
    spelt = {
        "Jörg Heß": "jorg_hess",
        "Anna Spieß": "anna_spiess",
        "Łukasz Wałęsa": "lukasz_walesa",
        "Øystein Særø": "oystein_saero",
        "Œdipe Lœuvre": "oedipe_loeuvre",
        "Đorđe Đoković": "dorde_dokovic",
        "Þórður Aðalsteinsson": "thordur_adalsteinsson",
        "Işıl Əliyev": "isil_eliyev",  # noqa: RUF001 (a Turkish dotless i)
        "Ǿrjan Ǽsir": "orjan_aesir",  # ø and æ with an accent on top
        "Ivan Петров": "ivan",  # a part with no Latin letters is left out...
        "Иван Петров": None,  # ...and only an empty value is null
    }
    columns = [
        {"name": "full", "type": "category", "values": list(spelt)},
        {"name": "user", "type": "person.username", "from": "full", "style": "first_last"},
    ]
    config = make_config(columns, rows=500)
    table = generate_all(config)
    made = dict(zip(table["full"].to_pylist(), table["user"].to_pylist(), strict=True))
    assert made == spelt
    assert _failed(config, table, "user") == 0


def test_the_relation_check_normalises_every_character_as_the_values_do() -> None:
    """Each character of the Basic Multilingual Plane, and accents on the spelt-out letters,
    between two Latin letters: DuckDB's check must make of each name what the column made.
    (Before, DuckDB's strip_accents and Arrow's NFKD disagreed on ﬁ, Ⅻ, Ǆ, full-width A ...)"""
    chars = [chr(c) for c in range(0x80, 0x10000) if not 0xD800 <= c <= 0xDFFF]
    chars += [f"{letter}\u0301" for letter in "øØłßæðþıə"] + ["I\u0307", "K\u212a"]
    first = pa.array([f"A{c}b" for c in chars])
    last = pa.array([f"{c}z" for c in chars])
    column = next(c for c in make_config([*NAMES, _email()]).columns if c.name == "email")
    ctx = ChunkContext(
        len(chars), 0, np.random.default_rng(0), values={"first": first, "last": last}
    )
    table = pa.table({"first": first, "last": last, "email": column.generate(ctx)})
    config = make_config([*NAMES, _email()])
    assert _failed(config, table, "email") == 0
    assert table["email"][chars.index("ß")].as_py() == "assb.ssz@example.com"


def test_relation_check_catches_a_mismatched_name() -> None:
    config = make_config(
        [*NAMES, _email(), {**_email(), "name": "user", "type": "person.username"}]
    )
    table = generate_all(config)
    assert _failed(config, table, "email") == 0
    rows = {
        "first": ["Aaron", "Aaron", "Aaron", "Aaron"],
        "last": ["Gough", "Gough", "Gough", "Gough"],
        "email": [
            "aaron.gough@example.com",
            "aaron.gough17@example.com",
            "aaronparker@example.com",
            "aaron.gough@gmail.com",
        ],
        "user": ["aaron.gough", "aaron.gough2", "aaron.goughx", "aaron.parker"],
    }
    broken = pa.table(rows)
    assert _failed(config, broken, "email") == 2 and _failed(config, broken, "user") == 2
    shifted = table.set_column(2, "email", pa.array(np.roll(table["email"].to_numpy(), 1)))
    assert _failed(config, shifted, "email") > 900


# -- unique by a number, not by redrawing -----------------------------------------------------


def test_150k_unique_emails_need_no_redraw_and_match_their_names() -> None:
    config = make_config([*NAMES, _email(unique=True)], rows=150_000, chunk_size=10_000)
    table, assembler = _assemble(config)
    assert table.num_rows == 150_000 and assembler.dropped_duplicates == 0
    emails = table["email"].to_pylist()
    assert len(set(emails)) == 150_000
    _, redrawing = _assemble(config, repairs={})  # as before: repeated emails drop their rows
    assert assembler.unique.repaired == redrawing.dropped_duplicates > 50_000
    assert _failed(config, table, "email") == 0
    renumbered = [e for e in emails if re.search(r"\d@", e)]
    assert all(
        re.fullmatch(r"[a-z0-9.]+[a-z](?:[2-9]|[1-9]\d+)@example\.com", e) for e in renumbered
    )

    again, _ = _assemble(config)
    assert again.equals(table)  # deterministic, whatever order the chunks finished in


def test_unique_holds_across_an_append_and_other_unique_columns_still_redraw() -> None:
    columns = [
        {"name": "first", "type": "person.first_name", "locale": "en_NG"},  # 40 names
        {"name": "last", "type": "person.last_name", "locale": "en_NG"},  # 20 names
        {**_email(unique=True), "style": "flast"},
        {"name": "code", "type": "integer", "min": 1, "max": 2000, "unique": True},
    ]
    config = make_config(columns, rows=1200, chunk_size=300)
    first, assembler = _assemble(config)
    assert assembler.dropped_duplicates > 0  # by `code`: rows are dropped, emails renumbered
    assert len(set(first["email"].to_pylist())) == first.num_rows
    seen = {"email": set(first["email"].to_pylist()), "code": set(first["code"].to_pylist())}
    second, _ = _assemble(config, seen, first_row=1200)
    both = first["email"].to_pylist() + second["email"].to_pylist()
    assert len(set(both)) == len(both) and _failed(config, second, "email") == 0


def test_renumbered_rows_lose_their_stale_dedupe_hashes() -> None:
    config = make_config([*NAMES, _email(unique=True)], rows=2000, chunk_size=1000)
    assembler = Assembler(config.rows, UniqueFilter(tracked_unique_columns(config)))
    chunks = plan_chunks(config.rows, config.chunk_size)
    results = [generate_chunk(config, c, keys=["email"]) for c in chunks]
    assert all(r.hashes is not None for r in results)
    assembler.add(0, results[0])
    batch = assembler.flush()
    assert batch is not None and (batch.hashes is None) == (assembler.unique.repaired > 0)


def test_append_builds_renumber_instead_of_redrawing(tmp_path: Path) -> None:
    columns = [
        {"name": "first", "type": "person.first_name", "locale": "en_NG"},
        {"name": "last", "type": "person.last_name", "locale": "en_NG"},
        _email(unique=True),
        {"name": "user", "type": "person.username", "from": ["first", "last"], "unique": True},
    ]
    config = make_config(columns, rows=3000, chunk_size=500, output={"dir": str(tmp_path)})
    assert Build(config, ThreadExecutor(config)).run().dropped.unique_value == 0
    append = config.with_overrides(rows=1000, mode="append")
    assert Build(append, ThreadExecutor(append)).run().dropped.unique_value == 0
    with duckdb.connect(str(tmp_path / "t.duckdb"), read_only=True) as con:
        table = con.sql("SELECT * FROM t").to_arrow_table()
    assert table.num_rows == 4000
    for column in ("email", "user"):
        assert len(set(table[column].to_pylist())) == 4000
        assert _failed(config, table, column) == 0


# -- any Faker method ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "args", "clock"),
    [
        ("date_of_birth", {"minimum_age": 18}, "datetime.now"),
        ("date_between", {"start_date": "-30d", "end_date": "today"}, "date.today"),
        ("date_time_this_month", {}, "datetime.now"),
        ("credit_card_expire", {}, "datetime.now"),
    ],
)
def test_faker_methods_that_read_the_clock_are_refused(method: str, args: dict, clock: str) -> None:
    """Their values change from day to day and between time zones, whatever the seed."""
    column = {"name": "when", "type": "faker", "method": method, "args": args}
    with pytest.raises(ConfigError, match=rf"{method}\(\) reads the clock \({clock}\(\)\)"):
        make_config([column])


def test_faker_methods_with_arguments_get_their_arrow_types() -> None:
    columns = [
        {"name": "iban", "type": "faker", "method": "iban"},
        {"name": "price", "type": "faker", "method": "pydecimal", "args": _DECIMAL},
        {
            "name": "exact",
            "type": "faker",
            "method": "pydecimal",
            "args": _DECIMAL,
            "as": "decimal(5,2)",
        },
        {"name": "born", "type": "faker", "method": "date_between_dates", "args": _DATES},
        {"name": "seen", "type": "faker", "method": "date_time_between", "args": _YEAR},
        {"name": "ok", "type": "faker", "method": "pybool"},
        {"name": "n", "type": "faker", "method": "random_int", "args": {"min": 5, "max": 9}},
        {"name": "pref", "type": "faker", "method": "prefecture", "locale": "ja_JP"},
    ]
    config = make_config(columns, rows=500)
    table = generate_all(config)
    types = {f.name: str(f.type) for f in table.schema}
    assert types == {
        "iban": "string",
        "price": "double",
        "exact": "decimal128(5, 2)",
        "born": "date32[day]",
        "seen": "timestamp[us]",
        "ok": "bool",
        "n": "int64",
        "pref": "string",
    }
    assert all(0 < v < 1000 and round(v, 2) == v for v in table["price"].to_pylist())
    assert set(table["n"].to_pylist()) == {5, 6, 7, 8, 9}
    assert {v.year for v in table["seen"].to_pylist()} == {2020}
    assert all(re.fullmatch("GB[0-9]{2}[A-Z]{4}[0-9]{14}", v) for v in table["iban"].to_pylist())
    assert generate_all(config).equals(table)


def test_faker_date_args_written_as_text_are_dates() -> None:
    """A quoted ISO date (or one from JSON) is what the user meant; Faker's parser reads only
    offsets such as -30d. Text arguments of other methods stay text."""
    columns = [
        {
            "name": "day",
            "type": "faker",
            "method": "date_between_dates",
            "args": {"date_start": "2020-01-01", "date_end": "2020-01-31"},
        },
        {
            "name": "at",
            "type": "faker",
            "method": "date_time_between",
            "args": {"start_date": "2021-03-01T12:00:00", "end_date": "2021-03-01T13:00:00"},
        },
        {"name": "code", "type": "faker", "method": "bothify", "args": {"text": "2020-01-01"}},
    ]
    table = generate_all(make_config(columns, rows=200))
    assert {(d.year, d.month) for d in table["day"].to_pylist()} == {(2020, 1)}
    assert {(t.day, t.hour) for t in table["at"].to_pylist()} == {(1, 12)}
    assert set(table["code"].to_pylist()) == {"2020-01-01"}


def test_faker_method_pool_and_unique_work_as_for_other_faker_types() -> None:
    pooled = {"name": "x", "type": "faker", "method": "ean13", "pool": 50}
    values = generate_all(make_config([pooled], rows=1000, chunk_size=1000))["x"].to_pylist()
    assert len(set(values)) <= 50
    unique = {"name": "x", "type": "faker", "method": "ean13", "unique": True}
    values = generate_all(make_config([unique], rows=1000, chunk_size=1000))["x"].to_pylist()
    assert len(set(values)) > 990


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"method": "ibn"}, "no method 'ibn' in locale en_US; did you mean iban"),
        ({"method": "_format"}, "private and seeding methods"),
        ({"method": "seed_instance"}, "private and seeding methods"),
        ({"method": "pydecimal", "args": {"digits": 3}}, "args do not fit pydecimal(left_digits"),
        ({"method": "binary"}, "returns bytes, not one scalar"),
        ({"method": "pylist"}, "returns list, not one scalar"),
        ({"method": "pystr", "args": {"max_chars": 10**9}}, "sizes are at most 1,000"),
        ({"method": "random_element", "args": {"elements": [1, "a"]}}, "declare as: text"),
        ({"method": "random_int", "args": {"min": 0, "max": 10**30}}, "do not convert to int64"),
        ({"method": "prefecture"}, "no method 'prefecture' in locale en_US"),
        ({"method": "iban", "as": "decimal(60,2)"}, "decimal(p,s), s <= p <= 38"),
        ({"method": "iban", "as": "double"}, "do not convert to double"),
    ],
)
def test_faker_method_problems_are_refused_with_the_reason(
    tmp_path: Path, spec: dict[str, Any], message: str
) -> None:
    columns = [{"name": "id", "type": "sequence"}, {"name": "x", "type": "faker", **spec}]
    error = _load_error(tmp_path, columns)
    assert "bad.yaml:5: columns[1] (x)" in error and message in error


# -- patterns -----------------------------------------------------------------------------------


def test_pattern_values_match_and_lengths_follow_their_share_of_values() -> None:
    pattern = r"ORD-[A-Z]{3}-\d{2,4}[a-c_\-]?\.x"
    config = make_config([{"name": "code", "type": "pattern", "pattern": pattern}], rows=20_000)
    table = generate_all(config)
    values = table["code"].to_pylist()
    assert all(re.fullmatch(pattern, v) for v in values)
    digits = np.array([len(re.search(r"\d+", v)[0]) for v in values])  # type: ignore[index]
    assert abs((digits == 4).mean() - 10_000 / 11_100) < 0.01
    assert _failed(config, table, "code") == 0
    broken = table.set_column(0, "code", pa.array(["ORD-AB-12.x", *values[1:-1], None]))
    assert _failed(config, broken, "code") == 1
    assert generate_all(config).equals(table)


@pytest.mark.parametrize(
    "pattern",
    ["a?a?", "[ab]{1,2}[ab]{0,2}", r"x\d?\d?[0-3]{0,1}", "[A-C]{2}-?[0-9]?", "é[ü-ÿ]{1,2}"],
)
def test_capacity_counts_distinct_strings_exactly(pattern: str) -> None:
    parts = parse(pattern)
    alphabet = sorted(set("".join(p.chars for p in parts)))
    longest = sum(p.high for p in parts)
    brute = {
        "".join(chars)
        for n in range(longest + 1)
        for chars in itertools.product(alphabet, repeat=n)
        if re.fullmatch(pattern, "".join(chars))
    }
    assert distinct_strings(parts) == len(brute)


def test_unique_pattern_with_too_few_strings_is_refused(tmp_path: Path) -> None:
    column = {"name": "c", "type": "pattern", "pattern": "[A-C]{2}-?", "unique": True}
    error = _load_error(tmp_path, [column], rows=100)
    assert "bad.yaml:4: columns[0] (c).unique: unique column can take only 18 distinct" in error


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("(ORD|INV)-[0-9]{4}", "'(' at position 1: groups and alternation"),
        ("A.B", "'.' at position 2: '.' (any character) is not supported"),
        ("[0-9]+", "'+' at position 6: unbounded repeats"),
        ("[0-9]{2,}", "'{' at position 6: a repeat is {n} or {n,m}"),
        ("[^a-z]", "'^' at position 2: negated classes"),
        (r"\s", "'\\' at position 1: \\s is not a supported escape"),
        ("[z-a]", "'z-a' is not a range"),
        ("^AB$", "anchors are not needed"),
        ("[A-Z", "the class is not closed"),
        ("?", "a repeat must follow"),
        ("[0-9]{5000}", "needs 0 <= n <= m, 1 <= m"),
    ],
)
def test_unsupported_pattern_parts_are_named(tmp_path: Path, pattern: str, message: str) -> None:
    error = _load_error(tmp_path, [{"name": "c", "type": "pattern", "pattern": pattern}])
    assert "bad.yaml:4: columns[0] (c)" in error and message in error


# -- config errors for emails and usernames -----------------------------------------------------


@pytest.mark.parametrize(
    ("email", "message"),
    [
        ({"from": ["first", "nope"]}, ": references 'nope', which is not a column"),
        ({"from": ["first", "age"]}, ".from: 'age' is int64, not text"),
        ({"from": ["first", "last"], "style": "first+last"}, ": style 'first+last' is not"),
        ({"from": ["first", "last"], "domain": "Example"}, ": domain 'Example' is not a lower"),
        ({"from": ["first", "last"], "domain": {"a.com": 0}}, ": domain weights must be posi"),
        ({"style": "flast"}, ": style needs `from`"),
        ({"style": "flast", "domain": "a.com"}, ": domain and style need `from`"),
        ({"from": ["first", "first"]}, ": from names the same column twice"),
        ({"from": ["first", "last", "age"]}, ".from: List should have at most 2 items"),
    ],
)
def test_bad_email_options_name_file_line_and_column(
    tmp_path: Path, email: dict[str, Any], message: str
) -> None:
    columns = [*NAMES, {"name": "age", "type": "integer", "min": 1, "max": 9}]
    error = _load_error(tmp_path, [*columns, {"name": "email", "type": "person.email", **email}])
    assert "bad.yaml:7: columns[3] (email)" + message in error


def test_username_refuses_a_domain_and_a_later_name_column_is_named(tmp_path: Path) -> None:
    user = {"name": "user", "type": "person.username", "from": ["first", "last"]}
    error = _load_error(tmp_path, [NAMES[0], user, NAMES[1]])
    assert "bad.yaml:5: columns[1] (user): references 'last', which comes later" in error
    error = _load_error(tmp_path, [*NAMES, {**user, "domain": "example.org"}])
    assert "bad.yaml:6: columns[2] (user): domain is for person.email" in error


def test_config_round_trips_with_from_and_as() -> None:
    columns = [*NAMES, _email(unique=True)]
    columns.append({"name": "p", "type": "faker", "method": "pydecimal", "as": "double"})
    config = make_config(columns)
    again = config.with_overrides(rows=10)
    assert again.columns[2] == config.columns[2] and again.columns[3] == config.columns[3]


# -- the unique filter, set-wise, against the rules row by row ----------------------------------


class _RowByRow:
    """The unique filter's rules taken literally, one row at a time (the implementation
    before it worked on whole columns): the reference its output must equal."""

    def __init__(self, columns: list[str], seen: dict[str, set], repairs: dict[str, Any]) -> None:
        self.columns, self.repaired = columns, 0
        self.seen = [set(seen.get(name, ())) for name in columns]
        self.repairs = [repairs.get(name) for name in columns]
        self.numbers: list[dict[Any, int]] = [{} for _ in columns]

    def apply(self, table: pa.Table) -> pa.Table:
        keep, seen, repairs = [], self.seen, self.repairs
        values = [table[c].to_pylist() for c in self.columns]
        for i, row in enumerate(zip(*values, strict=True)):
            if any(v is not None and v in seen[j] and not repairs[j] for j, v in enumerate(row)):
                continue
            for j, v in enumerate(row):
                if v is not None and v in seen[j]:
                    n = self.numbers[j].get(v, 2)
                    while (candidate := repairs[j](v, n)) in seen[j]:
                        n += 1
                    self.numbers[j][v], self.repaired = n + 1, self.repaired + 1
                    v = values[j][i] = candidate
                if v is not None:
                    seen[j].add(v)
            keep.append(i)
        for j, name in enumerate(self.columns):
            index = table.schema.get_field_index(name)
            table = table.set_column(index, name, pa.array(values[j], table.schema[index].type))
        return table.take(pa.array(keep, type=pa.int64()))


def _number(value: str, n: int) -> str:
    return f"{value}{n}"  # "a" numbered 2 is "a2", a value the batch may also hold


@pytest.mark.parametrize("seed", range(60))
def test_unique_filter_matches_the_row_by_row_rules(seed: int) -> None:
    """Random batches built to collide: tiny alphabets, values that equal another value's
    number (a, a2, a22), nulls, published values, floats with NaN and -0.0, and columns with
    and without a repair side by side. Output, seen values and counts must equal the rules'."""
    rng = np.random.default_rng(seed)
    words = ["a", "a2", "a3", "a22", "b", "b2", "ab", "a2b"][: rng.integers(2, 9)]

    def text(rows: int) -> list[str | None]:
        return [None if rng.random() < 0.1 else str(rng.choice(words)) for _ in range(rows)]

    names = ["u", "v", "k", "x"][: rng.integers(1, 5)]
    repaired = {"u": _number, "v": _number} if seed % 3 else {"u": _number}
    published = {"u": set(rng.choice(words, 3).tolist()), "k": {1, 3}, "x": {0.5}}
    ours = UniqueFilter(names, published, repaired)
    rules = _RowByRow(names, published, repaired)
    for _ in range(4):
        rows = int(rng.integers(1, 40))
        floats = rng.choice([0.0, -0.0, 0.5, 1.5, np.nan], rows).tolist()
        table = pa.table(
            {
                "u": pa.array(text(rows), pa.string()),
                "v": pa.array(text(rows), pa.string()),
                "k": pa.array([None if x > 30 else x for x in rng.integers(0, 40, rows)]),
                "x": pa.array(floats, pa.float64()),
            }
        )
        got, expected = ours.apply(table), rules.apply(table)
        assert repr(got.to_pydict()) == repr(expected.to_pydict())  # nan is nan, -0.0 not 0.0
    assert ours.repaired == rules.repaired
    assert [sorted(map(repr, s)) for s in ours.seen] == [sorted(map(repr, s)) for s in rules.seen]


def test_names_are_the_locales_own_and_a_full_names_parts_share_a_gender() -> None:
    """pl_PL and is_IS family names were all 'Doe' (a placeholder list Faker's base provider
    holds, which those locales do not use); ru_RU paired a man's first name with a woman's
    family name (Казимир Горбунова) in about half the rows."""
    from synthaix.columns.people import name_source

    for locale in ("pl_PL", "is_IS"):
        config = make_config([{"name": "last", "type": "person.last_name"}], locale=locale)
        lasts = generate_chunk(config, plan_chunks(200, 200)[0]).table["last"].to_pylist()
        assert "Doe" not in lasts and len(set(lasts)) > 100, lasts[:5]
    config = make_config([{"name": "full", "type": "person.full_name"}], locale="ru_RU")
    fulls = generate_chunk(config, plan_chunks(2000, 2000)[0]).table["full"].to_pylist()
    (men, _), (women, _) = (name_source("ru_RU", f"first_name_{g}") for g in ("male", "female"))
    (his, _), (hers, _) = (name_source("ru_RU", f"last_name_{g}") for g in ("male", "female"))
    pairs = [full.split(" ") for full in fulls]
    assert all((g in men and f in his) or (g in women and f in hers) for g, f in pairs)
    share = sum(f in women for f, _ in pairs) / len(pairs)
    assert 0.45 < share < 0.55


def test_names_follow_a_gender_column_or_a_fixed_gender_and_the_check_sees_a_swap() -> None:
    """Separate first and family name columns drew their genders apart (Любовь Жданов in
    ru_RU), and no name followed a gender column. With `gender:` each follows the row's
    (case and spaces aside; other values and nulls get either), or one fixed gender; the
    report's relation check holds every name to Faker's own list of its row's gender."""
    from faker.providers.person.en_US import Provider as English
    from faker.providers.person.ru_RU import Provider as Russian

    columns = [
        {"name": "sex", "type": "category", "values": {"F": 4, " female": 1, "m": 4, "X": 1}},
        {"name": "first", "type": "person.first_name", "gender": "sex"},
        {"name": "last", "type": "person.last_name", "gender": "sex"},
        {"name": "full", "type": "person.full_name", "gender": "sex"},
        {"name": "mum", "type": "person.full_name", "gender": "Female", "locale": "en_US"},
    ]
    config = make_config(columns, rows=3000, locale="ru_RU")
    table = generate_all(config)
    women = set(Russian.first_names_female) | set(Russian.last_names_female)
    men = set(Russian.first_names_male) | set(Russian.last_names_male)
    either = 0
    for row in table.to_pylist():
        names = [row["first"], row["last"], *row["full"].split(" ")]
        said = row["sex"].strip().lower()
        if said in ("f", "female"):
            assert all(n in women for n in names), row
        elif said == "m":
            assert all(n in men for n in names), row
        else:  # X: either gender, but the full name's two parts still agree
            assert all(n in women for n in names[2:]) or all(n in men for n in names[2:]), row
            either += row["first"] in Russian.first_names_female
        mum_first, _, mum_last = row["mum"].partition(" ")
        assert mum_first in English.first_names_female and mum_last in English.last_names
    xs = table["sex"].to_pylist().count("X")
    assert 0.35 < either / xs < 0.65
    checks = {c.column: c for col in config.columns for c in col.relation_checks("ru_RU")}
    assert set(checks) == {"first", "last", "full", "mum"}
    with duckdb.connect() as con:
        con.register("data", table)
        assert {n: c.run(con)[0] for n, c in checks.items()} == dict.fromkeys(checks, 0)
        swapped = table.set_column(
            0, "sex", pa.array(["M" if s == "F" else "F" for s in table["sex"].to_pylist()])
        )
        con.register("data", swapped)
        failed, observed = checks["last"].run(con)
        assert failed >= 2000 and "names not of their gender; e.g." in observed
        con.register("data", table.set_column(4, "mum", pa.array(["John Smith"] * 3000)))
        assert checks["mum"].run(con)[0] == 3000


def test_a_faker_column_of_an_unknown_locale_says_so() -> None:
    """The date-argument check asked the unknown locale for its methods: AttributeError."""
    column = {"name": "x", "type": "faker", "method": "iban", "locale": "xx_XX"}
    with pytest.raises(ConfigError, match="unknown locale 'xx_XX'"):
        make_config([column])


def test_a_gender_column_must_say_a_gender(tmp_path: Path) -> None:
    base = {"name": "first", "type": "person.first_name"}
    wrong = {
        "an integer": (
            [{"name": "g", "type": "integer", "min": 0, "max": 1}],
            "'g' is int64, not text",
        ),
        "no value": (
            [{"name": "g", "type": "category", "values": ["a", "b"]}],
            "none of 'g''s values",
        ),
        "misspelt": (
            [{"name": "gender", "type": "category", "values": ["F"]}],
            "did you mean 'gender'",
        ),
    }
    for case, (earlier, message) in wrong.items():
        target = "gendr" if case == "misspelt" else "g"
        error = _load_error(tmp_path, [*earlier, {**base, "gender": target}])
        assert message in error and "bad.yaml:5" in error, (case, error)


def test_full_names_follow_the_locales_order() -> None:
    """ja_JP, zh_CN and hu_HU write the family name first (zh_CN without a space), as Faker's
    own formats do; given names came first everywhere."""
    from synthaix.columns.people import faker_for, name_source

    for locale, between in (("ja_JP", " "), ("zh_CN", ""), ("hu_HU", " "), ("en_US", " ")):
        config = make_config([{"name": "full", "type": "person.full_name"}], locale=locale)
        fulls = generate_chunk(config, plan_chunks(100, 100)[0]).table["full"].to_pylist()
        found = name_source(locale, "last_name")
        if isinstance(found, str):  # ja_JP makes them its own way: Faker's, all of them
            family = {getattr(faker_for(locale, seed), found)() for seed in range(3000)}
        else:
            family = set(found[0])
        if locale == "en_US":
            assert all(any(f.endswith(between + n) for n in family) for f in fulls)
        else:
            assert all(any(f.startswith(n + between) for n in family) for f in fulls), fulls[:3]
