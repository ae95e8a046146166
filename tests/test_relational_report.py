"""The multi-table report: every check passes on a clean build, and each fails on data
corrupted on purpose (the report queries the data, it never trusts the generator)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from typer.testing import CliRunner

from synthaix.build.executor import ThreadExecutor
from synthaix.cli import app
from synthaix.config import load_config
from synthaix.relational.build import DatasetBuild
from synthaix.relational.counts import count_moments
from synthaix.report.tables import TableCheck, check_tables

SHOP = """
name: shop
seed: 5
tables:
  - name: customers
    rows: 600
    columns:
      - {name: customer_id, type: sequence, primary_key: true}
      - {name: tier, type: category, values: {gold: 0.2, basic: 0.8}}
      - {name: signup_date, type: date, start: 2022-01-01, end: 2023-12-31}
      - {name: favourite, type: reference, to: products.product_id, weights: {column: popularity}}
  - name: products
    rows: 50
    columns:
      - {name: product_id, type: sequence, primary_key: true}
      - {name: price, type: float, min: 1, max: 100, decimals: 2}
      - {name: popularity, type: integer, min: 0, max: 4}
  - name: orders
    parent: customers
    count: {distribution: poisson, mean: 3, min: 0, max: 8, by: tier, params: {gold: {mean: 6}}}
    constraints: ["ordered_at >= customers.signup_date"]
    columns:
      - {name: order_id, type: uuid, primary_key: true}
      - {name: customer_id, type: reference, to: customers.customer_id}
      - {name: ordered_at, type: date, after: customers.signup_date, offset: {min: 0d, max: 365d}}
      - {name: previous_order, type: reference, to: orders.order_id, nullable: 0.4}
      - {name: total, type: aggregate, of: items, expr: "sum(qty * unit_price)", default: 0}
      - {name: most_units, type: aggregate, of: items, expr: "max(qty)"}
  - name: items
    parent: orders
    rows: 4000
    count: {distribution: uniform, min: 0, max: 4}
    columns:
      - {name: order_id, type: reference, to: orders.order_id, primary_key: true}
      - {name: line, type: sequence, primary_key: true}
      - {name: product_id, type: reference, to: products.product_id, weights: {zipf: 1.1}}
      - {name: qty, type: integer, min: 1, max: 5}
      - {name: unit_price, type: sql, expr: "products.price"}
      - {name: tier, type: sql, expr: "customers.tier"}
"""


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("shop")
    out = tmp / "out"
    (tmp / "shop.yaml").write_text(SHOP + f"output: {{dir: '{out}'}}\n", encoding="utf-8")
    config = load_config(tmp / "shop.yaml")
    DatasetBuild(config, lambda table_config: ThreadExecutor(table_config)).run()
    return out


def _failed(checks: list[TableCheck]) -> list[TableCheck]:
    return [c for c in checks if not c.passed]


def test_a_clean_build_passes_every_check(shop: Path) -> None:
    checks = check_tables(shop)
    assert not _failed(checks), _failed(checks)
    kinds = {(c.table, c.column, c.name) for c in checks}
    for expected in [
        ("customers", "", "primary key"),
        ("items", "", "primary key"),  # composite: (order_id, line)
        ("orders", "previous_order", "self reference"),
        ("orders", "customer_id", "foreign key"),
        ("customers", "favourite", "weights"),
        ("items", "product_id", "foreign key"),
        ("orders", "customer_id", "children per parent"),
        ("orders", "customer_id", "mean children"),
        ("items", "", "rows"),
        ("orders", "total", "aggregate"),  # 0 without items
        ("orders", "most_units", "aggregate"),  # null without items
        ("orders", "ordered_at", "relation"),  # reads customers.signup_date through the parent
        ("items", "tier", "relation"),  # reads customers.tier through orders
        ("orders", "", "constraint"),
    ]:
        assert expected in kinds, expected
    # Per `by` value: gold parents have their own mean.
    means = [c.relation for c in checks if c.name == "mean children" and c.table == "orders"]
    assert len(means) == 2 and any("gold" in m for m in means)


def test_the_report_command_writes_html_for_a_multi_table_output(shop: Path) -> None:
    result = CliRunner().invoke(app, ["report", str(shop)])
    assert result.exit_code == 0, result.output
    html = (shop / "report.html").read_text(encoding="utf-8")
    for text in ("customers", "orders", "items", "products", "children per parent", "FAIL"):
        assert (text in html) == (text != "FAIL"), text


Rows = list[dict[str, Any]]


def _corrupt(shop: Path, tmp: Path, table: str, edit: Callable[[Rows], Rows]) -> Path:
    """A copy of the output whose `table` holds `edit`ed rows."""
    copy = tmp / "copy"
    shutil.copytree(shop, copy, symlinks=True)
    folder = (copy / ".current" / table).resolve()
    parts = sorted(folder.glob("part-*.parquet"))
    data = pa.concat_tables(pq.read_table(p) for p in parts)
    for part in parts:
        part.unlink()
    rows = edit(data.to_pylist())
    pq.write_table(pa.Table.from_pylist(rows, schema=data.schema), parts[0])
    return copy


def _set(index: int, column: str, value: Callable[[Rows], Any]) -> Callable[[Rows], Rows]:
    def edit(rows: Rows) -> Rows:
        rows[index][column] = value(rows)
        return rows

    return edit


def _more_children(rows: Rows) -> Rows:
    """Five more items for the first order: 5 to 8 in all, above max 4."""
    line = max(r["line"] for r in rows)
    extra = [{**rows[0], "line": line + i + 1} for i in range(5)]
    return rows + extra


def _two_way_loop(rows: Rows) -> Rows:
    rows[8]["previous_order"], rows[9]["previous_order"] = rows[9]["order_id"], rows[8]["order_id"]
    return rows


CORRUPTIONS = {
    "orphan foreign key": (
        "orders",
        _set(0, "customer_id", lambda rows: 10**6),
        {("orders", "customer_id", "foreign key")},
    ),
    "orphan self reference": (
        "orders",
        _set(5, "previous_order", lambda rows: "not-an-order"),
        {("orders", "previous_order", "self reference")},
    ),
    "a row its own previous order": (
        "orders",
        _set(7, "previous_order", lambda rows: rows[7]["order_id"]),
        {("orders", "previous_order", "self reference")},
    ),
    "two orders each other's previous": (
        "orders",
        _two_way_loop,
        {("orders", "previous_order", "self reference")},
    ),
    "a favourite no weight can draw": (
        "products",
        lambda rows: [{**row, "popularity": 0} for row in rows],
        {("customers", "favourite", "weights")},
    ),
    "duplicate key": (
        "customers",
        _set(1, "customer_id", lambda rows: rows[2]["customer_id"]),
        {("customers", "", "primary key")},
    ),
    "null in a composite key": (
        "items",
        _set(0, "line", lambda rows: None),
        {("items", "", "primary key")},
    ),
    "children above max": (
        "items",
        _more_children,
        {("items", "order_id", "children per parent"), ("items", "", "rows")},
    ),
    "wrong aggregate": (
        "orders",
        _set(3, "total", lambda rows: rows[3]["total"] + 1),
        {("orders", "total", "aggregate")},
    ),
    "wrong related value": (
        "items",
        _set(0, "tier", lambda rows: "platinum"),
        {("items", "tier", "relation")},
    ),
}


@pytest.mark.parametrize("case", CORRUPTIONS)
def test_corrupted_data_fails_its_check(shop: Path, tmp_path: Path, case: str) -> None:
    table, edit, expected = CORRUPTIONS[case]
    checks = check_tables(_corrupt(shop, tmp_path, table, edit))
    failed = {(c.table, c.column, c.name) for c in _failed(checks)}
    assert expected <= failed, _failed(checks)
    assert all(c.failed >= 1 for c in _failed(checks))


def test_an_order_before_its_customer_signed_up_breaks_the_offset_and_the_constraint(
    shop: Path, tmp_path: Path
) -> None:
    edit = _set(0, "ordered_at", lambda rows: rows[0]["ordered_at"].replace(year=2000))
    checks = check_tables(_corrupt(shop, tmp_path, "orders", edit))
    failed = {(c.table, c.name): c for c in _failed(checks)}
    assert failed[("orders", "constraint")].failed == 1
    assert failed[("orders", "relation")].failed == 1


def test_an_orphan_is_counted_and_shown_in_the_report(shop: Path, tmp_path: Path) -> None:
    copy = _corrupt(shop, tmp_path, "items", _set(0, "product_id", lambda rows: -7))
    orphan = next(
        c for c in check_tables(copy) if c.column == "product_id" and c.name == "foreign key"
    )
    assert orphan.failed == 1 and orphan.observed.startswith("1 of 4,000")
    result = CliRunner().invoke(app, ["report", str(copy)])  # written, and the exit code says
    assert result.exit_code == 1 and "; FAIL: " in result.output
    assert "items.product_id foreign key" in result.output
    assert "FAIL" in (copy / "report.html").read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("distribution", "mean", "low", "high", "expected"),
    [
        ("poisson", 2.0, 1, None, 2.0 + 2.718281828**-2),  # zeros lifted to 1
        ("poisson", 3.0, 0, None, 3.0),
        ("uniform", 2.5, 1, 4, 2.5),
        ("fixed", 3.0, 3, 3, 3.0),
    ],
)
def test_the_expected_mean_of_a_clipped_count(
    distribution: str, mean: float, low: int, high: int | None, expected: float
) -> None:
    assert count_moments(distribution, mean, low, high)[0] == pytest.approx(expected, abs=1e-6)


BY_FLAGS = """
name: flags
seed: 2
tables:
  - name: people
    rows: 300
    columns:
      - {name: id, type: sequence, primary_key: true}
      - {name: smoker, type: boolean, p: 0.3}
      - {name: level, type: integer, min: 1, max: 3}
      - {name: risk, type: category, by: smoker, values: [low], params: {true: {values: [high]}}}
      - {name: plan, type: category, by: level, values: [basic], params: {3: {values: [top]}}}
"""


def test_by_keys_true_and_numbers_survive_the_manifest(tmp_path: Path) -> None:
    """The stored config kept YAML's true and 3 as text ('true', '3'), which a boolean or
    number `by` column cannot hold: the report (and an append) failed to read it."""
    out = tmp_path / "out"
    (tmp_path / "flags.yaml").write_text(BY_FLAGS + f"output: {{dir: '{out}'}}\n", "utf-8")
    DatasetBuild(load_config(tmp_path / "flags.yaml"), ThreadExecutor).run()
    checks = check_tables(out)
    assert not _failed(checks), _failed(checks)
    assert {"risk one of high, where smoker = True", "plan one of top, where level = 3"} <= {
        c.relation for c in checks
    }
    manifest = out / "manifest.json"
    data = json.loads(manifest.read_text("utf-8"))
    assert "params:\n      true:" in data["config_yaml"]
    data["config_yaml"] = yaml.safe_dump(data["config"], sort_keys=False)  # as earlier versions
    assert "'true':" in data["config_yaml"]
    manifest.write_text(json.dumps(data), "utf-8")
    assert not _failed(check_tables(out))


def test_the_loop_check_lets_null_references_and_keys_end_a_chain() -> None:
    """A null reference matched a null key, so every root counted as in a loop."""
    import duckdb

    from synthaix.columns.reference import ReferenceColumn
    from synthaix.report.tables import _loops

    boss = ReferenceColumn(name="boss", type="reference", to="e.id")
    with duckdb.connect() as con:
        con.execute("CREATE SCHEMA t")
        con.execute(
            "CREATE TABLE t.e AS SELECT * FROM (VALUES (1, NULL), (2, 1), (NULL, 2)) v(id, boss)"
        )
        assert _loops(con, "e", boss).failed == 0
        con.execute("INSERT INTO t.e VALUES (4, 5), (5, 4), (6, 6)")
        assert _loops(con, "e", boss).failed == 3


def test_weights_a_parent_link_ignores_are_not_checked(tmp_path: Path) -> None:
    """A parent link takes the row's own parent, whatever its weights: the weights check
    failed half of the orders, whose customers weighed 0."""
    config = tmp_path / "w.yaml"
    config.write_text(
        f"""
name: w
seed: 1
tables:
  - name: customers
    rows: 40
    columns:
      - {{name: customer_id, type: sequence, primary_key: true}}
      - {{name: w, type: integer, min: 0, max: 1}}
  - name: orders
    parent: customers
    count: {{distribution: uniform, min: 1, max: 2}}
    columns:
      - {{name: customer_id, type: reference, to: customers.customer_id, weights: {{column: w}}}}
output: {{dir: '{tmp_path / "out"}'}}
""",
        encoding="utf-8",
    )
    DatasetBuild(load_config(config), lambda table: ThreadExecutor(table)).run()
    checks = check_tables(tmp_path / "out")
    assert not _failed(checks) and not [c for c in checks if c.name == "weights"]


ORG = """
name: org
seed: 3
tables:
  - name: employees
    rows: {rows}
    columns:
      - {{name: employee_id, type: sequence, primary_key: true}}
      - {{name: manager_id, type: reference, to: employees.employee_id}}
      - {{name: mentor_id, type: reference, to: employees.employee_id, alias: m, nullable: 0.3}}
output: {{dir: '{out}'}}
"""


@pytest.mark.parametrize("rows", [1, 400])
def test_a_self_references_first_row_is_a_root_whatever_nullable_says(
    tmp_path: Path, rows: int
) -> None:
    """The first row has no earlier row to point at: a self reference not nullable failed
    its null rate on every build (1 of 400 rows), and a 1-row table failed at 30 %."""
    path = tmp_path / "org.yaml"
    path.write_text(ORG.format(rows=rows, out=tmp_path / "out"), "utf-8")
    DatasetBuild(load_config(path), ThreadExecutor).run()
    checks = check_tables(tmp_path / "out")
    assert not _failed(checks), _failed(checks)
    rates = {c.column: c for c in checks if c.name == "null rate"}
    assert rates["manager_id"].relation == "only the first row (a root)"
    assert rates["manager_id"].observed == f"1 of {rows:,} rows"
    assert rates["mentor_id"].relation.endswith("(the first row aside, a root)")


def test_a_self_reference_null_beyond_its_root_fails() -> None:
    from synthaix.report.checks import _self_null_rate

    assert not _self_null_rate("manager_id", 0.0, 2, 400).passed
    assert not _self_null_rate("manager_id", 0.0, 0, 400).passed  # the first row points
    assert _self_null_rate("manager_id", 0.0, 0, 0).passed
    assert not _self_null_rate("mentor_id", 0.05, 100, 400).passed
    assert _self_null_rate("mentor_id", 0.05, 21, 400).passed
