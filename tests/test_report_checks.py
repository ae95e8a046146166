"""The report's null-rate and row-count checks can fail: a derived column (a foreign key, a
`sql` value, an offset) null beyond what its `nullable` and its inputs explain, and a table
holding other than the rows asked for (overwrite) or recorded in the manifest (append).
Built without Prefect, through the engines; each corruption is made on a copy of the output."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import make_config
from synthaix.build.engine import Build
from synthaix.build.executor import ThreadExecutor
from synthaix.config import load_config
from synthaix.relational.build import DatasetBuild
from synthaix.report.checks import Check
from synthaix.report.html import check_dataset
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


def _build(out: Path, **overrides: Any) -> None:
    config = make_config(COLUMNS, **{"rows": 1000, "chunk_size": 250, "seed": 4, **overrides})
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
    def edit(rows: Rows) -> Rows:
        for row in rows:
            if where(row):
                row[column] = None
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
  - name: lines
    parent: orders
    count: {{distribution: uniform, min: 0, max: 3}}
    columns:
      - {{name: order_id, type: reference, to: orders.order_id, primary_key: true}}
      - {{name: line, type: sequence, primary_key: true}}
      - {{name: qty, type: integer, min: 1, max: 5}}
output: {{dir: '{out}'}}
"""


def _build_tables(out: Path, mode: str = "overwrite") -> None:
    path = out.parent / f"mini-{mode}.yaml"
    path.write_text(SHOP.format(mode=mode, out=out), encoding="utf-8")
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
