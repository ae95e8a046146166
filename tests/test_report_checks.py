"""The report's null-rate and row-count checks can fail: a derived column (a foreign key, a
`sql` value, an offset) null beyond what its `nullable` and its inputs explain, and a table
holding other than the rows asked for (overwrite) or recorded in the manifest (append). It
reads the DuckDB table of an output without Parquet, keeps the checks a constraint cannot
break, checks llm values against their schema, counts duplicates as the dedupe does, and
`synthaix report` fails when a check does.
Built without Prefect, through the engines; each corruption is made on a copy of the output."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from conftest import make_config
from synthaix.build.engine import Build
from synthaix.build.executor import ThreadExecutor
from synthaix.build.manifest import read_manifest
from synthaix.cli import app
from synthaix.config import load_config
from synthaix.relational.build import DatasetBuild
from synthaix.report.checks import Check, run_checks
from synthaix.report.html import check_dataset, write_report
from synthaix.report.profile import Source, profile_dataset, profile_source
from synthaix.report.tables import TableCheck, check_tables

Rows = list[dict[str, Any]]

COLUMNS = [
    {"name": "id", "type": "sequence"},
    # Tells rows apart for the exact dedupe (which ignores the sequence): without it, rows
    # that are null wherever they can be repeat one another and are dropped, nulls with them.
    {"name": "v", "type": "float", "min": 0, "max": 1},
    {"name": "x", "type": "integer", "min": 1, "max": 100, "nullable": 0.3},
    {"name": "twice", "type": "sql", "expr": "x * 2", "nullable": 0.2},
    {"name": "label", "type": "expression", "template": "n{{ x }}"},
    {"name": "start", "type": "date", "start": "2024-01-01", "end": "2024-06-30", "nullable": 0.25},
    {"name": "end", "type": "date", "after": "start", "offset": {"max": "10d"}, "nullable": 0.1},
]


def _build(out: Path, columns: list[dict[str, Any]] = COLUMNS, **overrides: Any) -> None:
    config = make_config(columns, **{"rows": 1000, "chunk_size": 250, "seed": 4, **overrides})
    config = config.with_overrides(out=out)
    Build(config, ThreadExecutor(config)).run()


@pytest.fixture(scope="module")
def single(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("single") / "out"
    _build(out)
    return out


def _copy(out: Path, tmp: Path) -> Path:
    copy = tmp / "copy"
    shutil.copytree(out, copy, symlinks=True)
    return copy


def _parts(folder: Path) -> list[Path]:
    return sorted(folder.resolve().glob("part-*.parquet"))


def _edit(folder: Path, edit: Callable[[Rows], Rows]) -> None:
    """The Parquet parts in `folder` replaced by one holding the `edit`ed rows."""
    parts = _parts(folder)
    data = pa.concat_tables(pq.read_table(p) for p in parts)
    for part in parts:
        part.unlink()
    rows = edit(data.to_pylist())
    pq.write_table(pa.Table.from_pylist(rows, schema=data.schema), parts[0])


def _copy_a_part(folder: Path) -> None:
    """A part copied next to itself: its rows twice (what a stray copy does)."""
    first = _parts(folder)[0]
    shutil.copyfile(first, first.with_name("part-99999.parquet"))


def _null(column: str, where: Callable[[dict[str, Any]], bool] = lambda row: True) -> Any:
    return _set_rows(column, None, where)


def _set_rows(column: str, value: Any, where: Callable[[dict[str, Any]], bool]) -> Any:
    def edit(rows: Rows) -> Rows:
        for row in rows:
            if where(row):
                row[column] = value
        return rows

    return edit


def _failed(checks: list[Check]) -> set[tuple[str, str]]:
    return {(c.column, c.name) for c in checks if not c.passed}


def _check(checks: list[Check], column: str, name: str) -> Check:
    return next(c for c in checks if c.column == column and c.name == name)


# -- single table ---------------------------------------------------------------------------
def test_a_clean_build_passes_its_null_and_row_checks(single: Path) -> None:
    checks = check_dataset(single)
    assert not _failed(checks), [c for c in checks if not c.passed]
    rows = _check(checks, "(dataset)", "row count")
    assert (rows.expected, rows.observed) == ("1,000 (this build)", "1,000")
    # The sql value is null where x is (30%) and, of the other rows, 20% (its own nulls).
    twice = _check(checks, "twice", "null rate")
    assert "where the inputs give a value" in twice.expected and "null with their inputs" in (
        twice.observed
    )
    assert _check(checks, "label", "null rate").expected.startswith("none")


@pytest.mark.parametrize(
    ("column", "edit"),
    [
        ("twice", _null("twice")),  # a sql column entirely null (nullable 0.2)
        ("twice", _null("twice", lambda row: row["id"] % 2 == 0)),  # half null, x or not
        ("end", _null("end", lambda row: row["start"] is not None)),  # offset null, base not
        ("label", _null("label", lambda row: row["id"] == 7)),  # one null: never null
    ],
)
def test_a_derived_column_null_beyond_its_inputs_fails(
    single: Path, tmp_path: Path, column: str, edit: Callable[[Rows], Rows]
) -> None:
    copy = _copy(single, tmp_path)
    _edit(copy / ".current", edit)
    assert (column, "null rate") in _failed(check_dataset(copy))


def test_a_template_is_rendered_again_from_the_rows_inputs(single: Path, tmp_path: Path) -> None:
    check = _check(check_dataset(single), "label", "relation")
    assert (check.expected, check.observed) == ("label = n{{ x }}", "0 of 1,000 rows differ")
    copy = _copy(single, tmp_path)
    _edit(copy / ".current", _set_rows("label", "n0", lambda row: row["id"] in (3, 4)))
    check = _check(check_dataset(copy), "label", "relation")
    assert not check.passed and check.observed.startswith("2 of 1,000 rows differ; e.g. 'n0' ")


def test_a_streamed_check_after_an_sql_relation_runs(tmp_path: Path) -> None:
    """A gendered name's check reads its rows with con.sql(); after an offset's SQL check
    left its result open (fetchone), DuckDB refused it and the whole report failed."""
    columns = [
        {"name": "sex", "type": "category", "values": {"F": 1, "M": 1}},
        {"name": "a", "type": "date", "start": "2022-01-01", "end": "2024-12-31"},
        {"name": "b", "type": "date", "after": "a", "offset": {"max": "5d"}},
        {"name": "first", "type": "person.first_name", "gender": "sex"},
        {"name": "label", "type": "expression", "template": "{{ first }} {{ b }}"},
    ]
    _build(tmp_path / "out", columns, rows=200)
    checks = check_dataset(tmp_path / "out")
    assert {c.column for c in checks if c.name == "relation"} >= {"b", "first", "label"}
    assert _failed(checks) == set()


def test_a_template_over_a_time_zone_aware_value_passes_on_any_machine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both the build and the report worked in the machine's zone (the session's UTC did not
    reach the cursors): the stored type was tz=Europe/Berlin, and a report elsewhere failed
    every row."""
    import time

    monkeypatch.setenv("TZ", "Europe/Berlin")
    time.tzset()
    try:
        columns = [
            {"name": "epoch", "type": "integer", "min": 1_600_000_000, "max": 1_700_000_000},
            {"name": "ts", "type": "sql", "expr": "to_timestamp(epoch)"},
            {"name": "label", "type": "expression", "template": "at {{ ts }}"},
        ]
        _build(tmp_path / "out", columns, rows=300)
        check = _check(check_dataset(tmp_path / "out"), "label", "relation")
        stored = pq.read_schema(_parts(tmp_path / "out" / ".current")[0]).field("ts").type
        from synthaix.export import export_dataset

        csv_file = export_dataset(tmp_path / "out", "csv", tmp_path / "rows.csv")
        exported = csv_file.read_text(encoding="utf-8").splitlines()[1]
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
    assert check.passed and check.observed == "0 of 300 rows differ", check
    assert stored == pa.timestamp("us", tz="UTC")  # was tz=Europe/Berlin: the machine's zone
    assert "+00," in exported and "+01" not in exported and "+02" not in exported, exported


def test_an_overwrite_with_a_copied_part_fails_the_row_count(single: Path, tmp_path: Path) -> None:
    copy = _copy(single, tmp_path)
    _copy_a_part(copy / ".current")
    check = _check(check_dataset(copy), "(dataset)", "row count")
    assert not check.passed and check.expected == "1,000 (this build)", check


def test_an_append_is_counted_against_its_manifest(single: Path, tmp_path: Path) -> None:
    copy = _copy(single, tmp_path)
    _build(copy, mode="append", rows=500)
    checks = check_dataset(copy)
    assert not _failed(checks), [c for c in checks if not c.passed]
    rows = _check(checks, "(dataset)", "row count")
    assert rows.observed == "1,500" and rows.expected.startswith("1,500 (manifest: 1,000 earlier")

    _copy_a_part(copy / ".current")  # a stray part: more rows than the manifest records
    rows = _check(check_dataset(copy), "(dataset)", "row count")
    assert not rows.passed and rows.expected.startswith("1,500 (manifest"), rows


def test_the_report_command_prints_the_tally_and_fails_with_a_check(
    single: Path, tmp_path: Path
) -> None:
    result = CliRunner().invoke(app, ["report", str(single)])
    assert result.exit_code == 0, result.output
    assert "FAIL" not in result.output and " pass" in result.output.split("checks ")[1]

    copy = _copy(single, tmp_path)
    _edit(copy / ".current", _null("twice"))
    (copy / "report.html").unlink(missing_ok=True)
    result = CliRunner().invoke(app, ["report", str(copy)])
    assert result.exit_code == 1, result.output
    checks = check_dataset(copy)
    passed, failed = sum(c.passed for c in checks), len(_failed(checks))
    tally = result.output.split("checks ")[1]
    assert failed and tally.startswith(f"{passed}/{passed + failed} pass; FAIL: "), tally
    assert "twice null rate" in tally, tally
    assert "FAIL" in (copy / "report.html").read_text(encoding="utf-8")  # written all the same
    result = CliRunner().invoke(app, ["report", str(copy), "--json", "--force"])
    assert result.exit_code == 1, result.output
    said = json.loads(result.stdout)
    assert (said["checks"], said["failed"]) == (passed + failed, failed)
    null_rate = {"column": "twice", "name": "null rate", "passed": False}
    assert any(null_rate.items() <= r.items() for r in said["results"]), said["results"]


def test_a_duckdb_only_output_is_checked_in_its_duckdb_table(tmp_path: Path) -> None:
    out = tmp_path / "out"
    _build(out, output={"formats": ["duckdb"]})
    assert not (out / "data").exists() and not _failed(check_dataset(out))
    with duckdb.connect(str(out / "t.duckdb")) as con:  # what its user may do to it
        con.execute("UPDATE t SET x = 1000 WHERE id = 3")
        con.execute("DELETE FROM t WHERE id > 990")
    failed = _failed(check_dataset(out))
    assert {("x", "range"), ("(dataset)", "row count")} <= failed, failed
    assert _check(check_dataset(out), "(dataset)", "row count").observed == "990"


CITIES = [
    {"name": "id", "type": "uuid"},
    {"name": "city", "type": "category", "values": ["Berlin", "Paris", "Rome"]},
]


def test_duplicates_are_counted_over_the_dedupe_key(tmp_path: Path) -> None:
    out = tmp_path / "out"
    _build(out, CITIES, dedupe={"exact": False})
    profile = profile_dataset(out)
    assert (profile.duplicate_rows, profile.duplicate_key) == (997, ["city"])
    html = write_report(out).read_text(encoding="utf-8")
    assert "<b>99.70%</b><small class=muted>997 rows over (city)</small>" in html


def test_duplicates_are_not_counted_without_key_columns(tmp_path: Path) -> None:
    out = tmp_path / "out"
    _build(out, [{"name": "id", "type": "sequence"}, {"name": "u", "type": "uuid"}], rows=50)
    profile = profile_dataset(out)
    assert (profile.duplicate_rows, profile.duplicate_key) == (None, [])
    assert "<b>n/a</b><small class=muted>no columns to compare" in write_report(out).read_text()


def test_a_repeated_primary_key_or_dedupe_key_fails_its_check(tmp_path: Path) -> None:
    """A single table's primary key and its exact dedupe were shown, not checked: a copied
    (k, a) pair, or a row repeating another's key, passed every check."""
    out = tmp_path / "out"
    columns = [
        {"name": "k", "type": "integer", "min": 1, "max": 1000, "primary_key": True},
        {"name": "a", "type": "category", "values": ["x", "y"], "primary_key": True},
        {"name": "v", "type": "float", "min": 0, "max": 1},
    ]
    _build(out, columns, rows=200, dedupe={"key": ["k", "a"]})
    checks = check_dataset(out)
    key, dedupe = (
        _check(checks, "(dataset)", "primary key"),
        _check(checks, "(dataset)", "exact dedupe"),
    )
    assert key.passed and dedupe.passed and dedupe.expected == "no row repeats another's (k, a)"

    def repeat(rows: Rows) -> Rows:
        rows[1] |= {"k": rows[0]["k"], "a": rows[0]["a"]}
        rows[2]["k"] = None
        return rows

    _edit(out / "data", repeat)
    failed = check_dataset(out)
    assert {("(dataset)", "primary key"), ("(dataset)", "exact dedupe")} <= _failed(failed)
    assert _check(failed, "(dataset)", "primary key").observed == "1 duplicate and 1 null keys"


FILTERED = [
    {"name": "id", "type": "sequence"},
    {"name": "v", "type": "float", "min": 0, "max": 1},
    {"name": "size", "type": "category", "values": {"S": 0.2, "M": 0.5, "L": 0.3}},
    {"name": "n", "type": "integer", "min": 1, "max": 100},
    {"name": "day", "type": "date", "start": "2024-01-01", "end": "2024-03-31"},
]
CONSTRAINT = "n >= 60 OR size = 'L' OR day >= DATE '2024-03-01'"


@pytest.fixture(scope="module")
def filtered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("filtered") / "out"
    _build(out, FILTERED, constraints=[CONSTRAINT])
    return out


def test_a_constraint_leaves_out_shape_checks_only(filtered: Path) -> None:
    checks = check_dataset(filtered)
    assert not _failed(checks), [c for c in checks if not c.passed]
    names = {(c.column, c.name) for c in checks}
    kept = {("size", "allowed values"), ("n", "range"), ("day", "range")}
    kept |= {(column, "null rate") for column in ("size", "n", "day")}
    assert kept <= names, names
    assert not {("size", "share of S"), ("n", "mean")} & names, names


def test_a_filter_reshapes_what_its_columns_were_drawn_from(tmp_path: Path) -> None:
    """A constraint on `total = price * 2` reshapes price and, through `price by category`,
    the category shares: their checks failed (exit 1) on data as the config makes it."""
    columns = [
        {"name": "category", "type": "category", "values": {"a": 0.5, "b": 0.5}},
        {"name": "price", "type": "float", "by": "category", "min": 1, "max": 100},
        {"name": "total", "type": "sql", "expr": "price * 2"},
        {"name": "age", "type": "integer", "min": 18, "max": 90},
        {"name": "spend", "type": "float", "min": 0, "max": 1000},
    ]
    columns[1] |= {"decimals": 2, "params": {"a": {"min": 1, "max": 30}}}
    columns[4] |= {"correlated_with": "age", "rho": 0.7}
    constraints = [{"name": "big_enough", "check": "total > 40"}, "spend > 600"]
    _build(tmp_path, columns, rows=5000, chunk_size=1000, constraints=constraints)
    checks = check_dataset(tmp_path)
    assert not _failed(checks), [c for c in checks if not c.passed]
    names = {(c.column, c.name) for c in checks}
    assert {("category", "allowed values"), ("age", "range")} <= names
    # left out: the shares, the distribution per category, the correlation and age's mean
    relations = {c.expected for c in checks if c.name == "relation"}
    assert not {("category", "share of a"), ("age", "mean")} & names, names
    assert not [r for r in relations if "distribution per value" in r or "rho" in r], relations

    # A segment's values are still checked against its own min and max, row by row.
    def edit(rows: Rows) -> Rows:
        row = next(row for row in rows if row["category"] == "a")
        row["price"], row["total"] = 50.0, 100.0  # segment a's max is 30
        return rows

    _edit(tmp_path / ".current", edit)
    failed = [(c.column, c.name, c.expected) for c in check_dataset(tmp_path) if not c.passed]
    assert failed == [  # and the DuckDB table, not edited, no longer holds the Parquet's rows
        ("price", "relation", "price within its min and max, where category = a"),
        ("(dataset)", "duckdb copy", "the same rows as the Parquet parts"),
    ]


def test_an_edit_of_the_duckdb_table_beside_parquet_fails_its_copy_check(
    single: Path, tmp_path: Path
) -> None:
    """The report reads the Parquet parts: 5 repeated ids and 99 changed values in the
    DuckDB table passed every check."""
    out = _copy(single, tmp_path)
    assert _check(check_dataset(out), "(dataset)", "duckdb copy").passed
    with duckdb.connect(str(out / "t.duckdb")) as con:
        con.execute("UPDATE t SET x = x + 1 WHERE id <= 99 AND x IS NOT NULL")
    copy = _check(check_dataset(out), "(dataset)", "duckdb copy")  # values alone
    assert not copy.passed and copy.observed == "1,000 rows, the Parquet 1,000; they differ"
    with duckdb.connect(str(out / "t.duckdb")) as con:
        con.execute("INSERT INTO t SELECT * FROM t LIMIT 5")
    copy = _check(check_dataset(out), "(dataset)", "duckdb copy")
    assert not copy.passed and copy.observed == "1,005 rows, the Parquet 1,000; they differ"
    with duckdb.connect(str(out / "t.duckdb")):  # held by another program: not checked
        assert not [c for c in check_dataset(out) if c.name == "duckdb copy"]


def test_exact_dedupe_near_capacity_reshapes_its_key(tmp_path: Path) -> None:
    """Most rows of a small key space redrawn: the rarer values are kept more often."""
    columns = [
        {"name": "cat", "type": "category", "values": {"foo": 0.7, "bar": 0.3}},
        {"name": "n", "type": "integer", "min": 1, "max": 300},
    ]
    _build(tmp_path, columns, rows=500, chunk_size=250, dedupe={"exact": True})
    assert read_manifest(tmp_path).dropped.exact_duplicate > 50
    checks = check_dataset(tmp_path)
    assert not _failed(checks), [c for c in checks if not c.passed]
    assert ("cat", "allowed values") in {(c.column, c.name) for c in checks}
    assert not [c for c in checks if c.name.startswith("share of")]


@pytest.mark.parametrize(
    ("check", "column", "value"),
    [
        ("allowed values", "size", "XL"),
        ("range", "n", 500),
        ("range", "day", dt.date(2030, 1, 1)),
        ("null rate", "n", None),
    ],
)
def test_a_constraint_cannot_excuse_a_value_outside_the_config(
    filtered: Path, tmp_path: Path, check: str, column: str, value: Any
) -> None:
    copy = _copy(filtered, tmp_path)

    def edit(rows: Rows) -> Rows:
        rows[0][column] = value
        return rows

    _edit(copy / ".current", edit)
    assert (column, check) in _failed(check_dataset(copy))


def test_every_value_of_a_category_of_many_values_is_checked(tmp_path: Path) -> None:
    out = tmp_path / "out"
    labels = [f"c{i:02d}" for i in range(14)]  # more than the profile's top values
    columns = [
        {"name": "id", "type": "sequence"},
        {"name": "c", "type": "category", "values": labels},
    ]
    _build(out, columns, rows=2800, dedupe={"exact": False})
    assert not _failed(check_dataset(out))
    copy = _copy(out, tmp_path)
    _edit(copy / ".current", _set_rows("c", "c99", lambda row: row["id"] <= 2))
    assert ("c", "allowed values") in _failed(check_dataset(copy))


LLM = [
    {"name": "stars", "type": "llm", "schema": {"type": "integer", "minimum": 1, "maximum": 5}},
    {"name": "score", "type": "llm", "schema": {"type": "number", "maximum": 1.0}},
    {"name": "mood", "type": "llm", "schema": {"type": "string", "enum": ["happy", "sad"]}},
    {"name": "code", "type": "llm", "pattern": "^[A-Z]{3}$"},
    {"name": "note", "type": "llm", "max_length": 5},
]


@pytest.mark.parametrize(
    ("column", "check", "bad"),
    [
        ("stars", "range", 7),
        ("score", "range", 1.5),
        ("mood", "allowed values", "angry"),
        ("code", "pattern", "ABCD"),
        ("note", "max length", "too long"),
    ],
)
def test_llm_values_are_checked_against_their_schema(
    tmp_path: Path, column: str, check: str, bad: Any
) -> None:
    rows = [
        {"stars": s, "score": s / 10, "mood": m, "code": c, "note": "ok"}
        for s, m, c in [(1, "happy", "ABC"), (5, "sad", "XYZ"), (3, "happy", "QRS")]
    ]
    config = make_config(LLM, rows=len(rows))
    path = tmp_path / "part-000000.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    checks = run_checks(config, profile_source(Source((str(path),)), []))
    assert not _failed(checks), [c for c in checks if not c.passed]
    assert (column, check) in {(c.column, c.name) for c in checks}

    rows[1][column] = bad
    pq.write_table(pa.Table.from_pylist(rows), path)
    assert (column, check) in _failed(run_checks(config, profile_source(Source((str(path),)), [])))


def test_an_llm_pattern_is_checked_as_the_answers_were_unicode_included(tmp_path: Path) -> None:
    """`\\w` and `\\d` match beyond ASCII in the answers' validation (pydantic); DuckDB's RE2
    read them as ASCII, so `café` failed a check that its answer had passed."""
    columns = [{"name": "word", "type": "llm", "pattern": "^\\w+$"}]
    path = tmp_path / "part-000000.parquet"
    pq.write_table(pa.table({"word": ["café", "Straße", "naïve"]}), path)
    config = make_config(columns, rows=3)
    checks = run_checks(config, profile_source(Source((str(path),)), []))
    [check] = [c for c in checks if c.name == "pattern"]
    assert check.passed, check
    pq.write_table(pa.table({"word": ["café", "two words", "naïve"]}), path)
    checks = run_checks(config, profile_source(Source((str(path),)), []))
    assert ("word", "pattern") in _failed(checks)


# -- multi-table ----------------------------------------------------------------------------
SHOP = """
name: mini
seed: 3
mode: {mode}
tables:
  - name: products
    rows: 40
    columns:
      - {{name: product_id, type: sequence, primary_key: true}}
      - {{name: price, type: float, min: 1, max: 100, decimals: 2}}
  - name: orders
    rows: 800
    columns:
      - {{name: order_id, type: sequence, primary_key: true}}
      - {{name: product_id, type: reference, to: products.product_id}}
      - {{name: gift_id, type: reference, to: products.product_id, alias: gift, nullable: 0.3}}
      - {{name: price, type: sql, expr: "products.price"}}
      - {{name: gift_price, type: sql, expr: "gift.price * 2", nullable: 0.2}}
      - {{name: tag, type: expression, template: "{{{{ gift.price }}}}/{{{{ order_id }}}}"}}
  - name: lines
    parent: orders
    count: {{distribution: uniform, min: 0, max: 3}}
    columns:
      - {{name: order_id, type: reference, to: orders.order_id, primary_key: true}}
      - {{name: line, type: sequence, primary_key: true}}
      - {{name: qty, type: integer, min: 1, max: 5}}
output: {{dir: '{out}', formats: {formats}}}
"""


def _build_tables(out: Path, mode: str = "overwrite", formats: str = "[parquet, duckdb]") -> None:
    path = out.parent / f"mini-{mode}.yaml"
    path.write_text(SHOP.format(mode=mode, out=out, formats=formats), encoding="utf-8")
    DatasetBuild(load_config(path), lambda table_config: ThreadExecutor(table_config)).run()


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("mini") / "out"
    _build_tables(out)
    return out


def _table_failed(checks: list[TableCheck]) -> set[tuple[str, str, str]]:
    return {(c.table, c.column, c.name) for c in checks if not c.passed}


def _table_check(checks: list[TableCheck], table: str, column: str, name: str) -> TableCheck:
    return next(c for c in checks if (c.table, c.column, c.name) == (table, column, name))


def test_a_clean_multi_table_build_passes(shop: Path) -> None:
    checks = check_tables(shop)
    assert not _table_failed(checks), [c for c in checks if not c.passed]
    # A looked-up price is null where the lookup is (gift_id 30% null): explained.
    gift = _table_check(checks, "orders", "gift_price", "null rate")
    assert "null with their inputs" in gift.observed
    lines = _table_check(
        checks, "lines", "(dataset)", "row count"
    )  # its count from the parents' draws
    assert lines.relation.endswith("(manifest: " + lines.observed + " this build)"), lines


def test_a_template_over_related_fields_is_checked_row_by_row(
    shop: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A float field does not vectorise: Jinja2 renders the rows again, up to a bound."""
    check = _table_check(check_tables(shop), "orders", "tag", "relation")
    assert check.passed and check.observed == "0 of 800 rows differ", check
    copy = _copy(shop, tmp_path)
    _edit(copy / ".current" / "orders", _set_rows("tag", "x", lambda r: r["order_id"] > 700))
    check = _table_check(check_tables(copy), "orders", "tag", "relation")
    assert check.failed == 100 and check.observed.startswith("100 of 800 rows differ; e.g. 'x'")
    monkeypatch.setattr("synthaix.columns.expression.MAX_RENDERED_ROWS", 650)
    check = _table_check(check_tables(copy), "orders", "tag", "relation")
    assert check.failed <= 100 and check.observed.endswith(
        " (rendered one by one: the first 650 of 800)"
    ), check


NULLS = {
    "a third of the foreign keys": (
        "product_id",
        _null("product_id", lambda r: r["order_id"] % 3 == 0),
    ),
    "one foreign key": ("product_id", _null("product_id", lambda r: r["order_id"] == 5)),
    "every nullable foreign key": ("gift_id", _null("gift_id")),
    "every sql value that reads a looked-up row": ("gift_price", _null("gift_price")),
    "one sql value not declared nullable": ("price", _null("price", lambda r: r["order_id"] == 9)),
}


@pytest.mark.parametrize("case", NULLS)
def test_a_null_reference_or_derived_value_fails_its_null_rate(
    shop: Path, tmp_path: Path, case: str
) -> None:
    column, edit = NULLS[case]
    copy = _copy(shop, tmp_path)
    _edit(copy / ".current" / "orders", edit)
    checks = check_tables(copy)
    assert ("orders", column, "null rate") in _table_failed(checks), [
        c for c in checks if c.column == column
    ]


@pytest.mark.parametrize("table", ["products", "lines"])
def test_a_copied_part_fails_the_tables_row_count(shop: Path, tmp_path: Path, table: str) -> None:
    copy = _copy(shop, tmp_path)
    _copy_a_part(copy / ".current" / table)
    assert (table, "(dataset)", "row count") in _table_failed(check_tables(copy))


def test_an_appended_table_is_counted_against_its_manifest(shop: Path, tmp_path: Path) -> None:
    copy = _copy(shop, tmp_path)
    _build_tables(copy, "append")
    checks = check_tables(copy)
    rows = _table_check(checks, "products", "(dataset)", "row count")
    assert rows.passed and rows.observed == "80", rows
    assert rows.relation.startswith("80 (manifest: 40 earlier + 40 this build"), rows

    _copy_a_part(copy / ".current" / "products")
    rows = _table_check(check_tables(copy), "products", "(dataset)", "row count")
    assert not rows.passed and rows.relation.startswith("80 (manifest"), rows


def test_a_duckdb_only_multi_table_output_is_checked_in_its_duckdb_tables(tmp_path: Path) -> None:
    out = tmp_path / "out"
    _build_tables(out, formats="[duckdb]")
    assert not _table_failed(check_tables(out))
    with duckdb.connect(str(out / "mini.duckdb")) as con:  # what its user may do to it
        con.execute("UPDATE lines SET qty = 9 WHERE line = 1")
        con.execute("INSERT INTO products VALUES (1000, 5.0)")
    failed = _table_failed(check_tables(out))
    assert {("lines", "qty", "range"), ("products", "(dataset)", "row count")} <= failed, failed


def test_a_value_just_past_a_bound_is_shown_with_its_digits() -> None:
    """50.004 over a max of 50 read `[0, 50]` on both sides of a failed check."""
    from synthaix.report.checks import _range

    (check,) = _range("discount", 0.0, 50.0, 0.0, 50.004)
    assert not check.passed and (check.expected, check.observed) == ("[0, 50]", "[0, 50.004]")
    (check,) = _range("discount", 0.0, 50.0, 0.0, 50.0000001)  # past six digits: as stored
    assert (check.expected, check.observed) == ("[0, 50]", "[0.0, 50.0000001]")


def test_numbers_in_checks_keep_their_digits() -> None:
    """A mean of 9,987 read `1e+04` against an expected `1e+04 ± 4e+02`."""
    from synthaix.report.checks import significant

    assert significant(9987.123, 6) == "9,987.12" and significant(10000.0, 6) == "10,000"
    assert significant(310.4, 2) == "310" and significant(0.012345, 4) == "0.01235"
    assert significant(-3.14159, 3) == "-3.14" and significant(0.0, 4) == "0"
    assert significant(1.234567e22, 6) == "1.23457e+22" and significant(5e-324, 4) == "4.941e-324"
    assert significant(float("nan"), 4) == "nan" and significant(float("-inf"), 4) == "-inf"


def test_a_composite_primary_key_the_dedupe_would_not_hold_is_refused() -> None:
    """With `dedupe: {exact: false}` or a `key` of other columns, two rows could share a
    composite primary key: the report's key check then failed data the config allowed."""
    from synthaix.errors import ConfigError

    columns = [
        {"name": "k", "type": "integer", "min": 1, "max": 1000, "primary_key": True},
        {"name": "a", "type": "category", "values": ["x", "y"], "primary_key": True},
        {"name": "v", "type": "float", "min": 0, "max": 1},
    ]
    for dedupe, said in (
        ({"exact": False}, "dedupe.exact: false"),
        ({"key": ["v"]}, "dedupe.key [v]"),
    ):
        with pytest.raises(ConfigError, match=r"primary key \(k, a\) holds only") as caught:
            make_config(columns, dedupe=dedupe)
        assert f"with {said} two rows could share it" in str(caught.value)
    make_config(columns, dedupe={"key": ["k"]})  # a part of it: held
