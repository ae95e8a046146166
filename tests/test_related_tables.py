# ruff: noqa: E501  (YAML configs read best on one line per column)
"""Multi-table datasets: keys that join, exact sizes, children that read their parents, late
columns, cycles, determinism, kill -9 and resume, append. Every relation is checked by
querying the output (DuckDB and Parquet), not by trusting the generator."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest
import yaml

from conftest import write_config
from synthaix.build.executor import ThreadExecutor
from synthaix.config import load_config
from synthaix.errors import CapacityError, ConfigError
from synthaix.relational.build import DatasetBuild
from synthaix.relational.config import RelationalConfig

ROOT = Path(__file__).resolve().parents[1]

SHOP = """
name: shop
seed: 5
tables:
  - name: customers
    rows: {customers}
    columns:
      - {{name: customer_id, type: sequence, primary_key: true}}
      - {{name: name, type: person.full_name}}
      - {{name: tier, type: category, values: {{gold: 0.2, basic: 0.8}}}}
      - {{name: signup_date, type: date, start: 2022-01-01, end: 2023-12-31}}
  - name: products
    rows: 40
    columns:
      - {{name: product_id, type: sequence, primary_key: true}}
      - {{name: category, type: category, values: [books, games, tools]}}
      - {{name: price, type: float, min: 1, max: 100, decimals: 2}}
      - {{name: popularity, type: integer, min: 0, max: 10}}
  - name: items
    parent: orders
    count: {{distribution: poisson, mean: 2, min: 1, max: 6}}
    chunk_size: {chunk}
    columns:
      - {{name: order_id, type: reference, to: orders.order_id}}
      - {{name: product_id, type: reference, to: products.product_id, weights: {{zipf: 1.1}}}}
      - {{name: qty, type: integer, min: 1, max: 5}}
      - {{name: unit_price, type: sql, expr: "products.price"}}
      - {{name: note, type: expression, template: "{{{{ customers.tier }}}} {{{{ products.category }}}}"}}
  - name: orders
    parent: customers
    count: {{distribution: poisson, mean: 3, max: 15, by: tier, params: {{gold: {{mean: 6}}}}}}
    chunk_size: {chunk}
    columns:
      - {{name: order_id, type: uuid, primary_key: true}}
      - {{name: customer_id, type: reference, to: customers.customer_id}}
      - {{name: ordered_at, type: date, after: customers.signup_date, offset: {{min: 0d, max: 365d}}}}
      - {{name: discount, type: sql, expr: "CASE WHEN customers.tier = 'gold' THEN 0.1 ELSE 0 END"}}
      - {{name: total, type: aggregate, of: items, expr: "round(sum(qty * unit_price), 2)", default: 0}}
output: {{dir: {out}}}
"""


def write_shop(folder: Path, customers: int = 1500, chunk: int = 2000, out: str = "out") -> Path:
    path = folder / "shop.yaml"
    path.write_text(SHOP.format(customers=customers, chunk=chunk, out=folder / out))
    return path


def build(config: RelationalConfig):
    return DatasetBuild(config, lambda table: ThreadExecutor(table)).run()


def make_single(columns: list[dict], **dedupe):
    from conftest import make_config

    return make_config(columns, rows=50, dedupe=dedupe)


def query(database: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(database), read_only=True) as con:
        return con.execute(sql).fetchall()


def test_three_levels_and_a_lookup_join_and_read_their_parents(tmp_path: Path) -> None:
    config = load_config(write_shop(tmp_path))
    assert config.order == ["customers", "products", "orders", "items"]  # parents first
    manifest = build(config)
    db = tmp_path / "out" / "shop.duckdb"
    rows = manifest.rows
    assert rows["customers"] == 1500 and rows["products"] == 40
    for table, count in rows.items():
        assert query(db, f"SELECT count(*) FROM {table}") == [(count,)]
        parts = (tmp_path / "out" / "data" / table).glob("part-*.parquet")
        assert sum(pq.ParquetFile(p).metadata.num_rows for p in parts) == count
    orphans = {
        "orders": "orders o LEFT JOIN customers c USING (customer_id) WHERE c.customer_id IS NULL",
        "items": "items i LEFT JOIN orders o USING (order_id) WHERE o.order_id IS NULL",
        "lookup": "items i LEFT JOIN products p USING (product_id) WHERE p.product_id IS NULL",
    }
    for sql in orphans.values():
        assert query(db, f"SELECT count(*) FROM {sql}") == [(0,)]
    # Children read their parents, grandparents and looked-up rows.
    late = "SELECT count(*) FROM orders o JOIN customers c USING (customer_id) WHERE "
    assert query(db, late + "o.ordered_at NOT BETWEEN c.signup_date AND c.signup_date + 365") == [
        (0,)
    ]
    assert query(db, late + "o.discount <> CASE WHEN c.tier = 'gold' THEN 0.1 ELSE 0 END") == [(0,)]
    three = (
        "SELECT count(*) FROM items i JOIN orders o USING (order_id) JOIN customers c "
        "ON c.customer_id = o.customer_id JOIN products p ON p.product_id = i.product_id "
        "WHERE i.unit_price <> p.price OR i.note <> c.tier || ' ' || p.category"
    )
    assert query(db, three) == [(0,)]
    # Counts per parent: bounds hold, and `by` moves the mean (gold 6, basic 3).
    per = (
        "SELECT c.tier, avg(n), min(n), max(n) FROM customers c JOIN (SELECT c.customer_id, "
        "count(o.order_id) n FROM customers c LEFT JOIN orders o USING (customer_id) GROUP BY 1)"
        " USING (customer_id) GROUP BY 1 ORDER BY 1"
    )
    (basic, bmean, bmin, bmax), (gold, gmean, _, gmax) = query(db, per)
    assert basic == "basic" and 2.7 < bmean < 3.3 and bmin >= 0 and bmax <= 15
    assert gold == "gold" and 5.4 < gmean < 6.6 and gmax <= 15
    items = "SELECT min(n), max(n) FROM (SELECT order_id, count(*) n FROM items GROUP BY 1)"
    low, high = query(db, items)[0]
    assert low >= 1 and high <= 6
    # What `validate` estimates: `by` shares and clipping included (3 a customer said 4,500).
    for table in ("orders", "items"):
        assert abs(config.plan(table).estimated_rows / rows[table] - 1) < 0.05, table
    assert query(
        db, "SELECT count(*) FROM orders WHERE order_id NOT IN (SELECT order_id FROM items)"
    ) == [(0,)]
    # Zipf lookups: the first product is the most popular by far.
    top = query(db, "SELECT product_id FROM items GROUP BY 1 ORDER BY count(*) DESC LIMIT 1")
    assert top == [(1,)]  # sequences start at 1
    # The aggregate, computed after the items exist.
    totals = (
        "SELECT count(*) FROM orders o WHERE o.total IS DISTINCT FROM coalesce((SELECT "
        "round(sum(qty * unit_price), 2) FROM items i WHERE i.order_id = o.order_id), 0)"
    )
    assert query(db, totals) == [(0,)]
    # Keys declared in DuckDB.
    declared = query(
        db,
        "SELECT table_name, constraint_type FROM duckdb_constraints() WHERE constraint_type "
        "IN ('PRIMARY KEY', 'FOREIGN KEY') ORDER BY ALL",
    )
    assert ("items", "FOREIGN KEY") in declared and ("orders", "PRIMARY KEY") in declared
    assert ("orders", "FOREIGN KEY") in declared


def test_a_child_total_is_exact_and_its_counts_stay_in_bounds(tmp_path: Path) -> None:
    text = """
    name: org
    seed: 3
    tables:
      - name: employees
        rows: 400
        columns:
          - {name: employee_id, type: sequence, start: 100, primary_key: true}
          - {name: name, type: person.full_name}
          - {name: manager_id, type: reference, to: employees.employee_id, nullable: 0.05}
      - name: tasks
        parent: employees
        rows: 1234
        count: {distribution: poisson, mean: 2, min: 1, max: 8}
        columns:
          - {name: employee_id, type: reference, to: employees.employee_id, primary_key: true}
          - {name: number, type: integer, min: 1, max: 30, primary_key: true}
          - {name: hours, type: integer, min: 1, max: 40}
    """
    path = tmp_path / "org.yaml"
    path.write_text(textwrap.dedent(text) + f"output: {{dir: {tmp_path / 'org'}}}\n")
    manifest = build(load_config(path))
    db = tmp_path / "org" / "org.duckdb"
    assert manifest.rows == {"employees": 400, "tasks": 1234}
    counts = "SELECT min(n), max(n) FROM (SELECT employee_id, count(*) n FROM tasks GROUP BY 1)"
    low, high = query(db, counts)[0]
    assert low >= 1 and high <= 8
    assert query(db, "SELECT count(DISTINCT employee_id) FROM tasks") == [(400,)]
    # A composite key is unique as a whole.
    assert query(db, "SELECT count(DISTINCT (employee_id, number)) FROM tasks") == [(1234,)]
    # A self reference points at an earlier row (so it never loops) that exists.
    assert query(db, "SELECT count(*) FROM employees WHERE manager_id >= employee_id") == [(0,)]
    orphans = (
        "SELECT count(*) FROM employees e LEFT JOIN employees m ON e.manager_id = m.employee_id"
        " WHERE e.manager_id IS NOT NULL AND m.employee_id IS NULL"
    )
    assert query(db, orphans) == [(0,)]
    roots = query(db, "SELECT count(*) FROM employees WHERE manager_id IS NULL")[0][0]
    assert 1 <= roots < 60  # the first row, and about 5 % of the others


def test_impossible_total_and_cycles_are_config_errors(tmp_path: Path) -> None:
    cycle = """
    name: loop
    tables:
      - name: a
        rows: 10
        columns:
          - {name: id, type: sequence, primary_key: true}
          - {name: b_id, type: reference, to: b.id}
      - name: b
        rows: 10
        columns:
          - {name: id, type: sequence, primary_key: true}
          - {name: a_id, type: reference, to: a.id}
    """
    path = tmp_path / "loop.yaml"
    path.write_text(textwrap.dedent(cycle))
    with pytest.raises(ConfigError, match=r"loop.yaml:\d+: .*cycle: a -> b -> a"):
        load_config(path)
    no_link = path.read_text().replace("- {name: a_id, type: reference, to: a.id}", "")
    no_link = no_link.replace("- {name: b_id, type: reference, to: b.id}", "")
    no_link = no_link.replace(
        "  - name: b\n    rows: 10", "  - name: b\n    parent: a\n    count: 2"
    )
    path.write_text(no_link)
    with pytest.raises(ConfigError, match="needs a reference column to it"):
        load_config(path)
    bad_read = SHOP.replace("products.price", "products.cost").format(
        customers=10, chunk=100, out=tmp_path / "x"
    )
    path.write_text(bad_read)
    with pytest.raises(ConfigError, match=r"products\.cost"):
        load_config(path)


def test_same_seed_same_tables(tmp_path: Path) -> None:
    first = load_config(write_shop(tmp_path, customers=300, chunk=200, out="a"))
    second = first.with_overrides(out=tmp_path / "b")
    build(first)
    build(second)
    for table in first.order:
        a = pq.read_table(tmp_path / "a" / "data" / table)
        b = pq.read_table(tmp_path / "b" / "data" / table)
        assert a.equals(b), table


def test_append_adds_parents_with_their_children(tmp_path: Path) -> None:
    config = load_config(write_shop(tmp_path, customers=200, chunk=300))
    first = build(config)
    db = tmp_path / "out" / "shop.duckdb"
    before = query(db, "SELECT order_id, total FROM orders ORDER BY ALL")
    second = build(config.with_overrides(mode="append"))
    rows = second.rows
    assert rows["customers"] == 400 and rows["products"] == 80
    assert rows["orders"] == first.rows["orders"] + second.tables["orders"].rows.delivered
    assert query(db, "SELECT count(*), count(DISTINCT customer_id) FROM customers") == [(400, 400)]
    new_orders = "SELECT count(*) FROM orders WHERE customer_id <= 200"
    assert query(db, new_orders) == [(first.rows["orders"],)]  # old customers got no new orders
    for sql in (
        "orders o LEFT JOIN customers c USING (customer_id) WHERE c.customer_id IS NULL",
        "items i LEFT JOIN orders o USING (order_id) WHERE o.order_id IS NULL",
    ):
        assert query(db, f"SELECT count(*) FROM {sql}") == [(0,)]
    kept = query(db, "SELECT order_id, total FROM orders WHERE customer_id <= 200 ORDER BY ALL")
    assert kept == before  # earlier rows unchanged, their totals included


def test_an_append_keeps_a_catalogue_of_rows_0_and_new_rows_look_it_up(tmp_path: Path) -> None:
    """More customers and orders for the same products: `rows: 0` on an append keeps a root
    table's rows, and the new items look up the stored products. It is refused where it
    would leave the table empty (an overwrite, or nothing built yet), naming the fix."""
    from synthaix.errors import OutputError
    from synthaix.overrides import apply_overrides
    from synthaix.relational.preview import preview_tables
    from synthaix.report.tables import check_tables

    path = write_shop(tmp_path, customers=100, chunk=300)
    data = yaml.safe_load(path.read_text())  # a child of the kept table: no new parent
    variants = [
        {"name": "variant_id", "type": "sequence", "primary_key": True},
        {"name": "product_id", "type": "reference", "to": "products.product_id"},
    ]
    data["tables"].append(
        {"name": "variants", "parent": "products", "rows": 90, "columns": variants}
    )
    path.write_text(yaml.safe_dump(data))
    config = load_config(path)
    with pytest.raises(ConfigError, match=r"tables\[1\].*rows: 0 keeps a table's stored rows"):
        apply_overrides(config, {"tables.products.rows": 0})
    keep = apply_overrides(config, {"mode": "append", "tables.products.rows": 0})
    with pytest.raises(OutputError, match="holds no build of shop yet") as raised:
        build(keep)
    with pytest.raises(OutputError, match="cannot preview products"):
        preview_tables(keep, 5)
    assert "build the dataset first" in str(raised.value.hint)
    assert not (tmp_path / "out").exists()
    build(config)
    db = tmp_path / "out" / "shop.duckdb"
    products = query(db, "SELECT * FROM products ORDER BY ALL")
    second = build(keep)
    assert second.rows["products"] == 40 and second.tables["products"].rows.delivered == 0
    assert second.rows["variants"] == 90 and second.tables["variants"].rows.delivered == 0
    assert second.rows["customers"] == 200
    assert query(db, "SELECT * FROM products ORDER BY ALL") == products
    assert query(db, "SELECT count(*) FROM orders WHERE customer_id > 100")[0][0] > 0
    orphans = "SELECT count(*) FROM items i LEFT JOIN products p USING (product_id) WHERE p.product_id IS NULL"
    assert query(db, orphans) == [(0,)]
    prices = "SELECT count(*) FROM items i JOIN products p USING (product_id) WHERE i.unit_price <> p.price"
    assert query(db, prices) == [(0,)]
    failed = [c for c in check_tables(tmp_path / "out") if not c.passed]
    assert failed == []
    shown = preview_tables(keep, 5)["products"]  # as the stored rows were made
    assert [tuple(r.values()) for r in shown.to_pylist()] == products[:5]


def test_a_kept_catalogue_in_a_childs_key_is_sized_by_its_stored_rows(tmp_path: Path) -> None:
    """A key (order_id, product_id) through a kept catalogue (`rows: 0`) holds as many items
    per order as the catalogue has stored rows: validate counted the 0 of the config and
    refused configs/shop.yaml's documented append. It is checked against the stored rows."""
    from synthaix.overrides import apply_overrides

    path = write_shop(tmp_path, customers=60, chunk=300)
    data = yaml.safe_load(path.read_text())
    data["tables"][1]["rows"] = 8
    data["tables"][2]["dedupe"] = {"key": ["order_id", "product_id"]}
    path.write_text(yaml.safe_dump(data))
    config = load_config(path)
    keep = apply_overrides(config, {"mode": "append", "tables.products.rows": 0})
    build(config)
    assert build(keep).tables["products"].rows.delivered == 0
    db = tmp_path / "out" / "shop.duckdb"
    pairs = "SELECT count(*) - count(DISTINCT (order_id, product_id)) FROM items"
    assert query(db, pairs) == [(0,)]
    uniform = {"distribution": "uniform", "min": 1, "max": 9}
    wider = apply_overrides(keep, {"tables.items.count": uniform})  # loads: 8 stored unknown
    with pytest.raises(ConfigError) as refused:
        build(wider)
    assert str(refused.value) == (
        f"cannot append to {tmp_path / 'out'}: a parent may get 9 children, but the key "
        "(order_id, product_id) holds only 8 rows per orders row; lower the count (e.g. "
        "max: 8) or give products more rows"
    )
    assert query(db, "SELECT count(*) FROM products") == [(8,)]


def test_rows_sizes_root_tables_and_scales_child_totals(tmp_path: Path) -> None:
    """`--rows 500` on 2,000 customers with 2,500 shifts gave the 500 customers all 2,500
    (each one the count's max, 5, where the config meant about 1.25); a child total now
    scales with its root, and a table an append keeps stays kept."""
    from synthaix.overrides import apply_overrides

    path = write_shop(tmp_path, customers=2000)
    data = yaml.safe_load(path.read_text())
    shifts = {
        "name": "shifts",
        "parent": "customers",
        "rows": 2500,
        "count": {"distribution": "poisson", "mean": 1.25, "max": 5},
        "columns": [{"name": "customer_id", "type": "reference", "to": "customers.customer_id"}],
    }
    data["tables"].append(shifts)
    path.write_text(yaml.safe_dump(data))
    config = load_config(path)
    smaller = apply_overrides(config, {"rows": 500})
    sizes = {t.name: t.rows for t in smaller.tables}
    assert sizes == {
        "customers": 500,
        "products": 500,
        "items": None,
        "orders": None,
        "shifts": 625,
    }
    kept = apply_overrides(config, {"mode": "append", "tables.products.rows": 0})
    assert apply_overrides(kept, {"rows": 100}).table("products").rows == 0
    manifest = build(smaller)
    per_customer = query(
        tmp_path / "out" / "shop.duckdb",
        "SELECT count(*) FILTER (WHERE n = 5) FROM (SELECT count(*) n FROM shifts GROUP BY customer_id)",
    )
    assert manifest.rows["shifts"] == 625 and per_customer[0][0] < 25  # all 500 had 5


def test_an_append_slot_built_already_appends_no_table_again(tmp_path: Path) -> None:
    """A retry or rerun of a deployment's multi-table append slot appended every table again;
    it now leaves the dataset as it is and says so. Another slot appends; an overwrite
    forgets the slots; a CLI build (not a slot) appends as asked."""
    import datetime as dt

    from conftest import NoteListener
    from synthaix import progress

    base = load_config(write_shop(tmp_path, customers=100, chunk=300))
    db = tmp_path / "out" / "shop.duckdb"

    def append(hour: int, mode: str = "append", slot: bool = True):
        config = base.with_overrides(mode=mode)  # uses no relative time: no as_of
        config._slot = dt.datetime(2026, 11, 27, hour) if slot else None  # plan_build's
        return build(config)

    first = append(10)
    orders = query(db, "SELECT count(*) FROM orders")
    listener = NoteListener()
    with progress.listening(listener):
        again = append(10)
    assert again.build_id == first.build_id and again.rows["customers"] == 100
    assert query(db, "SELECT count(*) FROM orders") == orders
    assert listener.notes == [
        f"shop holds the rows of this config at as_of 2026-11-27T10:00:00 already (appended "
        f"by build {first.build_id}): nothing is appended again"
    ]
    later = append(11)
    assert later.rows["customers"] == 200
    assert set(later.slots.values()) == {first.build_id, later.build_id}
    on_disk = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert on_disk["slots"] == later.slots
    assert all(not table.slots for table in later.tables.values())  # the dataset keeps them
    assert append(10, "overwrite").slots == {}
    assert append(10).rows["customers"] == 200  # after an overwrite, the slot is new again
    assert append(10, slot=False).rows["customers"] == 300  # `synthaix build --as-of`


def test_a_child_whose_candidates_often_repeat_a_key_still_gets_its_count(tmp_path: Path) -> None:
    """A fill-up round makes several candidates per missing child, but the per-parent quota
    was taken before the dedupe: a first candidate repeating its order's product took the
    place and the others were dropped, round after round (the shop's items failed at random
    with `could only produce 4,355 of 4,356 rows`). Here 2,000 orders each need 5-7 of 8
    products drawn with a steep zipf: it failed with 11,187 of 12,008."""
    path = tmp_path / "skew.yaml"
    path.write_text(
        textwrap.dedent(
            f"""
            name: skew
            seed: 3
            tables:
              - name: orders
                rows: 2000
                columns:
                  - {{name: order_id, type: sequence, primary_key: true}}
              - name: products
                rows: 8
                columns:
                  - {{name: product_id, type: sequence, primary_key: true}}
              - name: items
                parent: orders
                count: {{distribution: uniform, min: 5, max: 7}}
                dedupe: {{key: [order_id, product_id]}}
                columns:
                  - {{name: order_id, type: reference, to: orders.order_id}}
                  - {{name: product_id, type: reference, to: products.product_id, weights: {{zipf: 2}}}}
            output: {{dir: {tmp_path / "out"}}}
            """
        )
    )
    manifest = build(load_config(path))
    db = tmp_path / "out" / "skew.duckdb"
    items = manifest.rows["items"]
    assert query(db, "SELECT count(*), count(DISTINCT (order_id, product_id)) FROM items") == [
        (items, items)
    ]
    per_order = (
        "SELECT min(n), max(n), count(*) FROM (SELECT count(*) n FROM items GROUP BY order_id)"
    )
    assert query(db, per_order) == [(5, 7, 2000)]


def test_an_append_with_other_tables_than_the_datasets_is_refused(tmp_path: Path) -> None:
    """A table new in the config got children of the new parents only (the report then
    failed its per-parent counts); a table left out of the config was dropped."""
    from synthaix.errors import OutputError

    path = write_shop(tmp_path, customers=100, chunk=300)
    full = yaml.safe_load(path.read_text())
    without_items = {**full, "tables": [t for t in full["tables"] if t["name"] != "items"]}
    for table in without_items["tables"]:  # orders' total sums its items: keep it buildable
        table["columns"] = [c for c in table["columns"] if c.get("of") != "items"]
    path.write_text(yaml.safe_dump(without_items))
    build(load_config(path))
    db = tmp_path / "out" / "shop.duckdb"
    before = query(db, "SELECT count(*) FROM orders")
    path.write_text(yaml.safe_dump(full))
    with pytest.raises(OutputError, match=r"items not in it yet\); an append adds rows"):
        build(load_config(path).with_overrides(mode="append"))
    said = subprocess.run(
        [sys.executable, "-m", "synthaix.cli", "validate", str(path), "--set", "mode=append"],
        capture_output=True,
        text=True,
    )
    assert said.returncode == 2 and "items not in it yet" in said.stdout + said.stderr
    smaller = {
        **without_items,
        "tables": [t for t in without_items["tables"] if t["name"] != "products"],
    }
    path.write_text(yaml.safe_dump(smaller))
    with pytest.raises(OutputError, match="products not in the config"):
        build(load_config(path).with_overrides(mode="append"))
    assert query(db, "SELECT count(*) FROM orders") == before


def test_a_drawn_primary_key_holds_each_value_once(tmp_path: Path) -> None:
    """An integer primary key drew repeats: the publish failed on DuckDB's PRIMARY KEY after
    the whole build (and in a single-table config the key was ignored)."""
    path = tmp_path / "pk.yaml"
    path.write_text(
        "name: pk\ntables:\n  - name: a\n    rows: 50\n    columns:\n"
        "      - {name: id, type: integer, min: 1, max: 60, primary_key: true}\n"
        f"output: {{dir: {tmp_path / 'out'}}}\n"
    )
    build(load_config(path))
    assert query(tmp_path / "out" / "pk.duckdb", "SELECT count(DISTINCT id) FROM a") == [(50,)]
    single = make_single(
        [
            {"name": "id", "type": "integer", "min": 1, "max": 60, "primary_key": True},
            {"name": "a", "type": "integer", "min": 1, "max": 9, "primary_key": True},
            {"name": "b", "type": "integer", "min": 1, "max": 9, "primary_key": True},
        ]
    )
    assert single.dedupe.key == ["id", "a", "b"] and single.dedupe.exact
    wide = {"name": "a", "type": "integer", "min": 1, "max": 1000, "primary_key": True}
    key = [{"name": "n", "type": "sequence", "primary_key": True}, wide]
    assert make_single(key).dedupe.key is None  # a sequence makes every key distinct
    # Turned off, nothing would hold the key (the report's key check then failed): refused.
    with pytest.raises(ConfigError, match=r"primary key \(id, a, b\) holds only when"):
        make_single([c.model_dump() for c in single.columns], exact=False)
    one = make_single([{"name": "id", "type": "integer", "min": 1, "max": 60, "primary_key": True}])
    assert one.columns[0].unique


CHILD_HEAVY = """
name: heavy
seed: 11
tables:
  - name: customers
    rows: 3000
    columns:
      - {name: customer_id, type: sequence, primary_key: true}
      - {name: name, type: person.full_name}
      - {name: tier, type: category, values: {gold: 0.2, basic: 0.8}}
  - name: orders
    parent: customers
    count: {distribution: poisson, mean: 40, max: 100}
    chunk_size: 2000
    dedupe: {exact: false}
    columns:
      - {name: order_id, type: uuid, primary_key: true}
      - {name: customer_id, type: reference, to: customers.customer_id}
      - {name: note, type: expression, template: "{% for i in range(40) %}{{ customers.tier }}{% endfor %}"}
"""


def test_kill_9_during_a_child_table_then_resume_gives_the_same_tables(tmp_path: Path) -> None:
    config_path = tmp_path / "heavy.yaml"
    config_path.write_text(CHILD_HEAVY + f"output: {{dir: {tmp_path / 'out'}}}\n")
    script = (
        "import sys; from synthaix.config import load_config; "
        "from synthaix.relational.build import DatasetBuild; "
        "from synthaix.build.executor import ThreadExecutor; "
        "DatasetBuild(load_config(sys.argv[1]), lambda t: ThreadExecutor(t)).run()"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", script, str(config_path)], cwd=ROOT, start_new_session=True
    )
    staging = tmp_path / "out" / ".staging"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # until the child table has parts staged
        if list(staging.glob("*/orders/part-*.parquet")):
            break
        assert process.poll() is None, "the build ended before the child table was written"
        time.sleep(0.02)
    else:
        pytest.fail("the child table never started")
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert not (tmp_path / "out" / "data").exists()  # nothing published
    resumed = build(load_config(config_path))
    clean = build(load_config(config_path).with_overrides(out=tmp_path / "clean"))
    assert resumed.rows == clean.rows
    for table in ("customers", "orders"):
        a = pq.read_table(tmp_path / "out" / "data" / table)
        b = pq.read_table(tmp_path / "clean" / "data" / table)
        assert a.equals(b), table
    assert not list(staging.glob("*"))  # the killed attempt's parts were removed


def test_cli_validate_shows_every_table(tmp_path: Path) -> None:
    path = write_shop(tmp_path, customers=50)
    done = subprocess.run(
        [sys.executable, "-m", "synthaix.cli", "validate", str(path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "COLUMNS": "200"},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "items: ~" in done.stdout and "reads orders (parent), products (lookup)" in done.stdout
    assert "customers (through)" in done.stdout


@pytest.mark.usefixtures("prefect_server")
def test_the_flow_builds_each_table_as_a_task_run_holding_its_chunk_tasks(tmp_path: Path) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    from flows.build_dataset import build_dataset

    path = write_shop(tmp_path, customers=300, chunk=400)
    state = build_dataset(config_path=str(path), return_state=True)
    manifest = state.result()
    assert manifest.rows["customers"] == 300
    assert set(manifest.rows) == {"customers", "products", "orders", "items"}
    deadline = time.monotonic() + 30
    while True:  # task run states reach the server as events, a moment after the flow ends
        runs: list = []
        with get_client(sync_client=True) as client:
            flow_run = FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id]))
            while page := client.read_task_runs(
                flow_run_filter=flow_run, limit=200, offset=len(runs)
            ):
                runs += page
        tables = {r.name: r for r in runs if r.task_key.startswith("build_table")}
        done = all(r.state and r.state.is_completed() for r in tables.values())
        done = done and {"late-columns", "publish-dataset"} <= {r.name for r in runs}
        if (len(tables) == 4 and done) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert sorted(tables) == ["customers", "items", "orders", "products"]
    assert done, {name: r.state for name, r in tables.items()}

    def under(table: str, prefix: str) -> list:
        parent = str(tables[table].id)
        return [
            r
            for r in runs
            if r.name.startswith(prefix)
            and any(str(p.id) == parent for p in r.task_inputs.get("__parents__", []))
        ]

    # Mapped per table, nested under it, and named after it: unique in the flow run.
    assert len(under("items", "items-chunk-")) >= 2
    assert under("orders", "orders-write-part-") and under("orders", "orders-stage-table")
    # Pages read while runs still arrive can hold one run twice: count each run once.
    names = [r.name for r in {r.id: r for r in runs}.values()]
    assert len(names) == len(set(names)), sorted(names)
    # A sample artifact per table (there was none), beside the dataset's summary.
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(flow_run_filter=flow_run)
    keys = {a.key for a in artifacts if a.key}
    assert {f"shop-{t}-sample" for t in tables} | {"shop-summary"} <= keys, keys
    assert {"late-columns", "publish-dataset"} <= {r.name for r in runs}


SIBLINGS = """
name: sib
seed: 2
tables:
  - name: customers
    rows: 300
    columns:
      - {name: customer_id, type: sequence, primary_key: true}
      - {name: name, type: person.full_name}
  - name: orders
    parent: customers
    count: {distribution: poisson, mean: 4, max: 10}
    columns:
      - {name: order_id, type: sequence, primary_key: true}
      - {name: customer_id, type: reference, to: customers.customer_id}
      - {name: ordered_at, type: datetime, start: 2024-01-01, end: 2024-12-31}
  - name: tickets
    parent: customers
    count: 1
    siblings:
      - {name: recent_orders, table: orders, columns: [order_id, ordered_at], order_by: ordered_at desc, limit: 3}
    columns:
      - {name: ticket_id, type: sequence, primary_key: true}
      - {name: customer_id, type: reference, to: customers.customer_id}
      - {name: body, type: expression, template: "{{ customers.name }}:{% for o in recent_orders %} {{ o.order_id }}{% endfor %}"}
"""


def test_a_row_reads_its_parents_other_children(tmp_path: Path) -> None:
    path = tmp_path / "sib.yaml"
    path.write_text(SIBLINGS + f"output: {{dir: {tmp_path / 'out'}}}\n")
    shown = subprocess.run(
        [sys.executable, "-m", "synthaix.cli", "validate", str(path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "reads customers (parent), orders (siblings, as recent_orders)" in shown
    method = SIBLINGS.replace("{{ o.order_id }}", "{{ o.get('order_id', 0) }}")  # no field
    path.with_name("method.yaml").write_text(method)
    load_config(path.with_name("method.yaml"))
    build(load_config(path))
    expected = (
        "SELECT count(*) FROM tickets t JOIN customers c USING (customer_id) WHERE t.body <> "
        "c.name || ':' || coalesce((SELECT string_agg(' ' || order_id, '' ORDER BY ordered_at "
        "DESC) FROM (SELECT * FROM orders o WHERE o.customer_id = t.customer_id ORDER BY "
        "ordered_at DESC LIMIT 3)), '')"
    )
    assert query(tmp_path / "out" / "sib.duckdb", expected) == [(0,)]


def test_a_root_table_looks_up_and_grandchildren_read_through_two_tables(tmp_path: Path) -> None:
    config = tmp_path / "chain.yaml"
    config.write_text(
        textwrap.dedent(
            """
            name: chain
            tables:
              - name: regions
                rows: 5
                columns:
                  - {name: region_id, type: sequence, primary_key: true}
                  - {name: rname, type: category, values: [north, south, east, west, mid]}
              - name: customers
                rows: 100
                columns:
                  - {name: customer_id, type: sequence, primary_key: true}
                  - {name: region_id, type: reference, to: regions.region_id}
              - name: orders
                parent: customers
                count: 2
                columns:
                  - {name: order_id, type: sequence, primary_key: true}
                  - {name: customer_id, type: reference, to: customers.customer_id}
              - name: items
                parent: orders
                count: 2
                dedupe: {exact: false}
                columns:
                  - {name: order_id, type: reference, to: orders.order_id}
                  - {name: region, type: sql, expr: "regions.rname"}
            """
        )
        + f"output: {{dir: {tmp_path / 'out'}}}\n"
    )
    assert build(load_config(config)).rows == {
        "regions": 5,
        "customers": 100,
        "orders": 200,
        "items": 400,
    }
    wrong = (
        "SELECT count(*) FROM items i JOIN orders o USING (order_id) JOIN customers c ON "
        "c.customer_id = o.customer_id JOIN regions r ON r.region_id = c.region_id "
        "WHERE i.region <> r.rname"
    )
    db = tmp_path / "out" / "chain.duckdb"
    assert query(db, wrong) == [(0,)]
    assert query(db, "SELECT count(DISTINCT region_id) FROM customers") == [(5,)]


def test_preview_shows_every_table_as_the_build_makes_it(tmp_path: Path) -> None:
    from synthaix.relational.preview import preview_tables

    path = write_shop(tmp_path, customers=50, out="never")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "synthaix.cli",
            "preview",
            str(path),
            "--rows",
            "4",
            "--format",
            "jsonl",
            "--table",
            "orders",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    orders = [json.loads(line) for line in done.stdout.splitlines()]  # JSON Lines, nothing else
    tables = preview_tables(load_config(path), rows=4)
    assert list(tables) == ["customers", "products", "orders", "items"]
    assert all(len(rows) == 4 for rows in tables.values())
    assert [r["order_id"] for r in orders] == tables["orders"]["order_id"].to_pylist()
    built = build(load_config(path))
    customers = pq.read_table(tmp_path / "never" / "data" / "customers").slice(0, 4)
    assert tables["customers"]["name"].to_pylist() == customers["name"].to_pylist()
    assert built.rows["customers"] == 50
    assert {r["customer_id"] for r in orders} <= {1, 2, 3, 4}


def test_a_preview_writes_nothing_at_a_tables_dedupe_uri(tmp_path: Path) -> None:
    from synthaix.relational.preview import preview_tables

    lance = tmp_path / "lance"
    customers = {
        "name": "customers",
        "rows": 20,
        "columns": [
            {"name": "customer_id", "type": "sequence", "primary_key": True},
            {"name": "name", "type": "person.full_name"},
        ],
        "dedupe": {"uri": str(lance), "exact": True},
    }
    data = {"name": "shop", "tables": [customers], "output": {"dir": str(tmp_path / "out")}}
    config = load_config(write_config(tmp_path / "shop.yaml", data))
    assert len(preview_tables(config, rows=5)["customers"]) == 5
    assert not lance.exists() and not (tmp_path / "out").exists()


def test_a_null_lookup_reads_no_row_and_a_decimal_aggregate_takes_its_default(
    tmp_path: Path,
) -> None:
    text = (
        SHOP.replace(
            "weights: {{zipf: 1.1}}}}",
            "weights: {{zipf: 1.1}}, nullable: 0.3}}",
        )
        .replace(
            'expr: "round(sum(qty * unit_price), 2)", default: 0',
            'expr: "sum(qty * unit_price)", as: "decimal(12,2)", default: 0',
        )
        .replace(
            "count: {{distribution: poisson, mean: 2, min: 1, max: 6}}",
            "count: {{distribution: poisson, mean: 1, max: 6}}",
        )
        .format(customers=300, chunk=500, out=tmp_path / "out")
    )
    path = tmp_path / "shop.yaml"
    path.write_text(text)
    build(load_config(path))
    db = tmp_path / "out" / "shop.duckdb"
    nulls = query(
        db,
        "SELECT count(*), count(*) FILTER (WHERE unit_price IS NOT NULL OR note LIKE '% %_') FROM items WHERE product_id IS NULL",
    )
    assert nulls[0][0] > 50 and nulls[0][1] == 0  # no price, no category of a row not looked up
    assert query(db, "SELECT typeof(total) FROM orders LIMIT 1") == [("DECIMAL(12,2)",)]
    childless = "SELECT count(*), count(*) FILTER (WHERE total = 0) FROM orders WHERE order_id NOT IN (SELECT order_id FROM items)"
    empty, zero = query(db, childless)[0]
    assert empty > 0 and zero == empty


def test_a_nullable_parent_link_and_a_count_by_a_grandparent_column_are_refused(
    tmp_path: Path,
) -> None:
    path = tmp_path / "shop.yaml"
    base = SHOP.format(customers=10, chunk=100, out=tmp_path / "x")
    path.write_text(
        base.replace(
            "{name: order_id, type: reference, to: orders.order_id}",
            "{name: order_id, type: reference, to: orders.order_id, nullable: 0.1}",
        )
    )
    with pytest.raises(ConfigError, match="link to the parent is never null"):
        load_config(path)
    path.write_text(
        base.replace(
            "count: {distribution: poisson, mean: 2, min: 1, max: 6}",
            "count: {distribution: poisson, mean: 2, by: customers.tier, params: {gold: {mean: 3}}}",
        )
    )
    with pytest.raises(ConfigError, match=r"'customers\.tier' is not a column of orders"):
        load_config(path)


def test_a_key_that_may_be_null_is_refused_as_a_primary_key_or_a_reference_target(
    tmp_path: Path,
) -> None:
    """A reference to a unique column that is null in 30 % of rows made 30 % null foreign keys,
    which the config never asked for ("keys always join"); a nullable primary key, nulls."""
    path = tmp_path / "shop.yaml"
    base = SHOP.format(customers=10, chunk=100, out=tmp_path / "x")
    path.write_text(
        base.replace(
            "{name: customer_id, type: sequence, primary_key: true}",
            "{name: customer_id, type: sequence, primary_key: true, nullable: 0.3}",
        )
    )
    with pytest.raises(ConfigError, match="a primary key is never null"):
        load_config(path)
    tables = yaml.safe_load(base)
    customers = next(t for t in tables["tables"] if t["name"] == "customers")
    customers["columns"].append({"name": "code", "type": "uuid", "unique": True, "nullable": 0.3})
    orders = next(t for t in tables["tables"] if t["name"] == "orders")
    code_ref = {"name": "code_ref", "type": "reference", "to": "customers.code", "alias": "c2"}
    orders["columns"].append(code_ref)
    path.write_text(yaml.safe_dump(tables, sort_keys=False))
    with pytest.raises(ConfigError, match=r"customers\.code is null in 30% of customers rows"):
        load_config(path)
    customers["columns"][-1]["nullable"] = 0
    path.write_text(yaml.safe_dump(tables, sort_keys=False))
    load_config(path)


def test_reading_a_related_tables_aggregate_says_it_is_filled_late(tmp_path: Path) -> None:
    """orders.total is summed over the items: they cannot read it (it said 'not a column')."""
    path = tmp_path / "shop.yaml"
    base = SHOP.format(customers=10, chunk=100, out=tmp_path / "x")
    old = '{name: unit_price, type: sql, expr: "products.price"}'
    assert old in base
    path.write_text(base.replace(old, old.replace('"products.price"', '"orders.total + 1"')))
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert "reads 'orders.total', which is filled after its table is built" in message
    assert "not a column" not in message


WEIGHTED = """
name: weighted
seed: 9
tables:
  - name: products
    rows: 30
    dedupe: {exact: false}
    columns:
      - {name: product_id, type: sequence, primary_key: true}
      - {name: popularity, type: integer, min: 0, max: 3}
  - name: customers
    rows: 400
    dedupe: {exact: false}
    columns:
      - {name: customer_id, type: sequence, primary_key: true}
      - {name: tier, type: category, values: {gold: 0.3, basic: 0.7}}
  - name: visits
    parent: customers
    count: 5
    dedupe: {exact: false}
    columns:
      - {name: customer_id, type: reference, to: customers.customer_id}
      - {name: product_id, type: reference, to: products.product_id, weights: {column: popularity}}
      - {name: express, type: boolean, by: customers.tier, p: 0.0, params: {gold: {p: 1.0}}}
"""


def test_lookups_weighted_by_a_column_and_by_params_read_from_the_parent(tmp_path: Path) -> None:
    path = tmp_path / "weighted.yaml"
    path.write_text(WEIGHTED + f"output: {{dir: {tmp_path / 'out'}}}\n")
    build(load_config(path))
    db = tmp_path / "out" / "weighted.duckdb"
    picked = query(
        db,
        "SELECT p.popularity, count(v.product_id) FROM products p LEFT JOIN visits v "
        "USING (product_id) GROUP BY 1 ORDER BY 1",
    )
    counts = dict(picked)
    assert counts[0] == 0  # weight 0: never looked up
    per_weight = {w: counts[w] / w for w in counts if w}
    visits_per_product = {
        w: per_weight[w]
        / max(1, query(db, f"SELECT count(*) FROM products WHERE popularity = {w}")[0][0])
        for w in per_weight
    }
    values = list(visits_per_product.values())
    assert max(values) < 1.5 * min(values)  # picks grow in proportion to the weight
    wrong = (
        "SELECT count(*) FROM visits v JOIN customers c USING (customer_id) "
        "WHERE v.express <> (c.tier = 'gold')"
    )
    assert query(db, wrong) == [(0,)]


def test_a_weights_column_with_no_positive_value_is_a_config_error(tmp_path: Path) -> None:
    """It was a bare ValueError naming only the column (exit 1, as for a bug)."""
    path = tmp_path / "weighted.yaml"
    text = WEIGHTED.replace(
        "popularity, type: integer, min: 0, max: 3", "popularity, type: integer, min: 0, max: 0"
    )
    path.write_text(text + f"output: {{dir: {tmp_path / 'out'}}}\n")
    with pytest.raises(ConfigError) as caught:
        build(load_config(path))
    assert "the lookup of 'products' weighs its rows by the column popularity" in str(caught.value)
    assert "weights: uniform" in (caught.value.hint or "")


DEEP = """
name: deep
tables:
  - name: customers
    rows: 40
    columns:
      - {name: customer_id, type: sequence, primary_key: true}
      - {name: tier, type: category, values: [basic, gold]}
      - {name: signup, type: date, start: 2024-01-01, end: 2024-06-30}
  - name: products
    rows: 10
    columns:
      - {name: sku, type: pattern, pattern: "SKU-[0-9]{6}", unique: true}
      - {name: price, type: integer, min: 1, max: 9}
  - name: orders
    parent: customers
    count: 2
    columns:
      - {name: order_id, type: sequence, primary_key: true}
      - {name: customer_id, type: reference, to: customers.customer_id}
  - name: items
    parent: orders
    count: 2
    columns:
      - {name: item_id, type: sequence, primary_key: true}
      - {name: order_id, type: reference, to: orders.order_id}
      - {name: sku, type: reference, to: products.sku}
  - name: reviews
    parent: items
    count: 1
    columns:
      - {name: review_id, type: sequence, primary_key: true}
      - {name: item_id, type: reference, to: items.item_id}
      - {name: tier_copy, type: sql, expr: "customers.tier"}
      - {name: price_copy, type: sql, expr: "products.price"}
      - {name: written, type: date, after: customers.signup, offset: {min: 1d, max: 9d}}
"""


def test_great_grandparents_are_read_and_reported_and_unique_keys_are_referenced(
    tmp_path: Path,
) -> None:
    from synthaix.report.tables import check_tables

    path = tmp_path / "deep.yaml"
    path.write_text(DEEP + f"output: {{dir: {tmp_path / 'out'}}}\n")
    manifest = build(load_config(path))
    assert manifest.rows == {
        "customers": 40,
        "products": 10,
        "orders": 80,
        "items": 160,
        "reviews": 160,
    }
    db = tmp_path / "out" / "deep.duckdb"
    wrong = (
        "SELECT count(*) FROM reviews r JOIN items i USING (item_id) JOIN orders o USING "
        "(order_id) JOIN customers c USING (customer_id) JOIN products p ON p.sku = i.sku "
        "WHERE r.tier_copy <> c.tier OR r.price_copy <> p.price"
    )
    assert query(db, wrong) == [(0,)]
    declared = query(
        db, "SELECT constraint_text FROM duckdb_constraints() WHERE table_name = 'products'"
    )
    assert any("UNIQUE" in text and "sku" in text for (text,) in declared)
    failed = [c for c in check_tables(tmp_path / "out") if not c.passed]
    assert failed == []


def test_tables_keep_repeated_values_unless_asked_to_dedupe(tmp_path: Path) -> None:
    text = """
    name: plain
    tables:
      - name: customers
        rows: 3000
        columns:
          - {name: customer_id, type: sequence, primary_key: true}
          - {name: tier, type: category, values: {basic: 0.7, silver: 0.2, gold: 0.1}}
    """
    path = tmp_path / "plain.yaml"
    path.write_text(textwrap.dedent(text) + f"output: {{dir: {tmp_path / 'out'}}}\n")
    manifest = build(load_config(path))
    assert manifest.tables["customers"].dropped.total == 0  # three tiers, 3,000 customers
    share = query(
        tmp_path / "out" / "plain.duckdb", "SELECT avg((tier = 'basic')::INT) FROM customers"
    )
    assert 0.66 < share[0][0] < 0.74


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            ("table: orders, columns: [order_id", "table: order, columns: [order_id"),
            "'order' is not a table",
        ),
        (
            ("    parent: customers\n    count: 1", "    parent: tickets\n    count: 1"),
            "cannot be its own parent",
        ),
        (("count: 1\n", "count: 1\n    rows: 900\n"), "tickets cannot total 900 rows"),
        (
            (
                "{name: body, type: expression",
                '{name: n, type: aggregate, of: orders, expr: "count(*)"}\n      - {name: body, type: expression',
            ),
            "is not a child of tickets",
        ),
        (  # passed validate; the build failed rendering it, after the LLM had been paid
            ("{{ o.order_id }}{% endfor %}", "{{ o.ordr_id }}{% endfor %}"),
            "reads 'ordr_id' of the rows of the siblings list 'recent_orders', which hold only "
            "order_id, ordered_at; did you mean 'order_id'?",
        ),
        (
            ("{{ o.order_id }}{% endfor %}", "{{ o['ordr_id'] }}{% endfor %}"),
            "reads 'ordr_id' of the rows of the siblings list 'recent_orders'",
        ),
        (
            (
                "{% for o in recent_orders %} {{ o.order_id }}{% endfor %}",
                "{{ recent_orders[0].ordr_id }}",
            ),
            "reads 'ordr_id' of the rows of the siblings list 'recent_orders'",
        ),
    ],
)
def test_mistakes_are_config_errors_with_their_place(
    tmp_path: Path, change: tuple[str, str], message: str
) -> None:
    path = tmp_path / "sib.yaml"
    text = SIBLINGS.replace(*change)
    assert text != SIBLINGS
    path.write_text(text)
    with pytest.raises(ConfigError, match=r"sib\.yaml:\d+: .*" + re.escape(message)):
        load_config(path)


COUNTS = """
name: cnt
tables:
  - name: customers
    rows: 50
    columns:
      - {name: customer_id, type: sequence, primary_key: true}
      - {name: tier, type: category, values: [basic, gold]}
  - name: orders
    parent: customers
    count: COUNT
    columns:
      - {name: customer_id, type: reference, to: customers.customer_id}
"""


@pytest.mark.parametrize(
    ("count", "message"),
    [
        (  # gold parents quietly got the default mean
            "{mean: 2, by: tier, params: {Gold: {mean: 7}}}",
            "count.params.Gold: customers.tier never takes the value 'Gold'; did you mean "
            "'gold'? (its values: basic, gold)",
        ),
        (  # made 2 children each, and the report said `fixed 2`
            "{distribution: fixed, mean: 2.5}",
            "count: a fixed count is a whole number of children, not 2.5; for 2.5 on average "
            "write {distribution: poisson, mean: 2.5}",
        ),
        ("2.5", "count: a fixed count is a whole number of children, not 2.5"),
        (".inf", "count.mean: Input should be a finite number"),  # a traceback before
    ],
)
def test_counts_that_would_not_make_what_they_say_are_refused(
    tmp_path: Path, count: str, message: str
) -> None:
    path = tmp_path / "cnt.yaml"
    path.write_text(COUNTS.replace("COUNT", count))
    with pytest.raises(
        ConfigError, match=r"cnt\.yaml:11: tables\[1\] \(orders\)\." + re.escape(message)
    ):
        load_config(path)
    path.write_text(COUNTS.replace("COUNT", "3.0"))  # a whole number, written as a float
    assert load_config(path).plan("orders").spec.count.mean == 3


SHIFTS = """
name: staff
tables:
  - name: employees
    rows: 20
    columns:
      - {name: employee_id, type: sequence, primary_key: true}
  - name: shifts
    parent: employees
    count: COUNT
    columns:
      - {name: employee_id, type: reference, to: employees.employee_id, primary_key: true}
      - {name: day, type: date, start: 2025-01-01, end: 2025-01-31, primary_key: true}
"""


@pytest.mark.parametrize(
    ("count", "said"),
    [
        ("{distribution: fixed, mean: 40}", "a parent may get 40 children"),
        ("{distribution: uniform, min: 20, max: 35}", "a parent may get 35 children"),
        ("{mean: 25}", "a poisson count of mean 25 gives some parents more than 31 children"),
    ],
)
def test_a_count_the_key_cannot_hold_per_parent_is_refused(
    tmp_path: Path, count: str, said: str
) -> None:
    """A composite key with the parent link holds only its other columns' values per parent:
    validate passed, and the build failed after 20 rounds, its hint offering to turn off a
    check that a primary key cannot turn off."""
    path = tmp_path / "staff.yaml"
    path.write_text(SHIFTS.replace("COUNT", count))
    message = (
        f"{said}, but the key (employee_id, day) holds only 31 rows per employees row; lower "
        "the count (e.g. max: 31) or widen the range of day"
    )
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(path)
    for fine in ("{mean: 25, max: 31}", "{mean: 12}", "31"):
        path.write_text(SHIFTS.replace("COUNT", fine))
        load_config(path)
    # Params for every tier: the default mean applies to no parent. A key of ten million
    # seconds per parent is counted without summing ten million terms.
    tiers = SHIFTS.replace(
        "primary_key: true}\n  - name: shifts",
        "primary_key: true}\n      - {name: tier, type: category, values: [gold, silver]}\n"
        "  - name: shifts",
    ).replace("COUNT", "{mean: 60, by: tier, params: {gold: {mean: 3}, silver: {mean: 4}}}")
    path.write_text(tiers)
    load_config(path)
    path.write_text(tiers.replace("end: 2025-01-31", "end: 2025-12-31").replace("date", "datetime"))
    load_config(path)


def test_a_child_short_of_its_primary_key_says_so(tmp_path: Path) -> None:
    """The shortfall hint of a composite primary key does not offer `exact: false`."""
    from synthaix.errors import CapacityError

    path = tmp_path / "staff.yaml"  # validate cannot count a Faker method's values: 7 here
    text = SHIFTS.replace("COUNT", "9").replace(
        "      - {name: day, type: date, start: 2025-01-01, end: 2025-01-31, primary_key: true}",
        "      - {name: day, type: faker, method: random_element, primary_key: true,"
        " args: {elements: [Mon, Tue, Wed, Thu, Fri, Sat, Sun]}}",
    )
    path.write_text(text + f"output: {{dir: {tmp_path / 'out'}}}\n")
    with pytest.raises(CapacityError) as caught:
        build(load_config(path))
    assert "repeating the primary key (employee_id, day)" in str(caught.value)
    assert caught.value.hint == (
        "widen the ranges of the key's columns: each key is unique; or lower the counts"
    )  # said once


def test_table_mistakes_get_a_guess_and_say_what_to_do(tmp_path: Path) -> None:
    """A misspelt table got no guess (and a spurious 'needs a reference column' beside it); a
    row reading its child's field was offered an unrelated column; an aggregate of another
    table's aggregate failed with DuckDB's binder error."""
    path = tmp_path / "sib.yaml"

    def error(*change: tuple[str, str]) -> str:
        text = SIBLINGS
        for old, new in change:
            assert old in text
            text = text.replace(old, new)
        path.write_text(text)
        with pytest.raises(ConfigError) as caught:
            load_config(path)
        return str(caught.value)

    misspelt = error(
        (
            "to: customers.customer_id}\n      - {name: ordered_at",
            "to: custmers.customer_id}\n      - {name: ordered_at",
        )
    )
    assert "'custmers' is not a table; did you mean 'customers'?" in misspelt
    assert "(1 problem)" in misspelt  # not also 'a child of customers needs a reference column'
    parent = error(("    parent: customers\n    count: 1", "    parent: customer\n    count: 1"))
    assert "parent: 'customer' is not a table; did you mean 'customers'?" in parent
    child = error(
        (
            "{name: name, type: person.full_name}",
            '{name: name, type: person.full_name}\n      - {name: last, type: expression, template: "{{ orders.ordered_at }}"}',
        )
    )
    assert (
        "references 'orders.ordered_at', a field of its child table orders: a row has any "
        "number of children, so it cannot read one; sum or count them with an aggregate column"
    ) in child
    late = error(
        (
            "{name: name, type: person.full_name}",
            '{name: name, type: person.full_name}\n      - {name: most, type: aggregate, of: orders, expr: "max(n)"}',
        ),
        (
            "{name: ordered_at, type: datetime",
            '{name: n, type: aggregate, of: items, expr: "count(*)"}\n      - {name: ordered_at, type: datetime',
        ),
        (
            "  - name: tickets",
            "  - name: items\n    parent: orders\n    count: 1\n    columns:\n      - {name: order_id, type: reference, to: orders.order_id}\n  - name: tickets",
        ),
    )
    assert "expr: reads n of orders, filled late itself (an aggregate or a self reference)" in late


def test_after_an_append_new_rows_read_their_own_parents_siblings(tmp_path: Path) -> None:
    path = tmp_path / "sib.yaml"
    path.write_text(SIBLINGS + f"output: {{dir: {tmp_path / 'out'}}}\n")
    config = load_config(path)
    build(config)
    build(config.with_overrides(mode="append"))
    expected = (
        "SELECT count(*) FROM tickets t JOIN customers c USING (customer_id) WHERE t.body <> "
        "c.name || ':' || coalesce((SELECT string_agg(' ' || order_id, '' ORDER BY ordered_at "
        "DESC) FROM (SELECT * FROM orders o WHERE o.customer_id = t.customer_id ORDER BY "
        "ordered_at DESC LIMIT 3)), '')"
    )
    db = tmp_path / "out" / "sib.duckdb"
    assert query(db, "SELECT count(*) FROM tickets") == [(600,)]
    assert query(db, expected) == [(0,)]


def test_a_dedupe_key_a_skewed_lookup_cannot_fill_gets_the_right_hint(tmp_path: Path) -> None:
    """The hint said "lower rows" (a child has none) and "set dedupe.key" (it was set)."""
    path = tmp_path / "cap.yaml"
    path.write_text(
        "name: cap\ntables:\n"
        "  - name: products\n    rows: 5\n    columns:\n"
        "      - {name: product_id, type: sequence, primary_key: true}\n"
        "  - name: orders\n    rows: 200\n    columns:\n"
        "      - {name: order_id, type: sequence, primary_key: true}\n"
        "  - name: items\n    parent: orders\n    count: 5\n"
        "    dedupe: {key: [order_id, product_id]}\n    columns:\n"
        "      - {name: order_id, type: reference, to: orders.order_id}\n"
        "      - {name: product_id, type: reference, to: products.product_id, "
        "weights: {zipf: 3}}\n"
        f"output: {{dir: {tmp_path / 'out'}}}\n"
    )
    with pytest.raises(CapacityError) as caught:
        build(load_config(path))
    hint = caught.value.hint or ""
    assert "weights: uniform" in hint and hint.endswith("; or lower the counts")
    assert "lower rows" not in hint and "set dedupe.key" not in hint


def test_a_failed_load_of_the_tables_leaves_no_version_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As for one table: the rolled-back load's version folder is removed at once."""
    from synthaix.relational import database

    config = load_config(write_shop(tmp_path, customers=200))
    build(config)
    versions = sorted((tmp_path / "out" / ".versions").iterdir())
    counts = query(tmp_path / "out" / "shop.duckdb", "SELECT count(*) FROM orders")

    def interrupted(*args: object) -> None:
        raise RuntimeError("Query interrupted")  # inside the transaction, after the loads

    monkeypatch.setattr(database, "comment_table", interrupted)
    with pytest.raises(RuntimeError, match="Query interrupted"):
        build(config.with_overrides(seed=5))
    assert sorted((tmp_path / "out" / ".versions").iterdir()) == versions
    assert query(tmp_path / "out" / "shop.duckdb", "SELECT count(*) FROM orders") == counts


def test_a_constraint_validate_cannot_sample_stops_the_build_after_its_first_round(
    tmp_path: Path,
) -> None:
    """A table reading related rows has no sample before the build: an impossible constraint
    ran 3 rounds (6 million rows, 53 s for 100,000 customers) before it failed."""
    path = tmp_path / "never.yaml"
    path.write_text(
        "name: never\ntables:\n"
        "  - name: customers\n    rows: 1000\n    columns:\n"
        "      - {name: customer_id, type: sequence, primary_key: true}\n"
        "      - {name: signup, type: date, start: 2023-01-01, end: 2023-12-31}\n"
        "  - name: orders\n    parent: customers\n    count: 3\n"
        "    constraints: ['ordered_on < customers.signup']\n    columns:\n"
        "      - {name: customer_id, type: reference, to: customers.customer_id}\n"
        "      - {name: ordered_on, type: date, after: customers.signup, offset: {max: 60d}}\n"
        f"output: {{dir: {tmp_path / 'out'}}}\n"
    )
    config = load_config(path)  # validate: nothing to try the constraint on
    with pytest.raises(CapacityError) as caught:
        build(config)
    assert str(caught.value).endswith(
        "the constraint 'ordered_on < customers.signup' (0.0%) held for under 1% of the 3,000 "
        "rows of the first round: the rounds to come cannot make the rows"
    )
    assert not (tmp_path / "out" / "never.duckdb").exists()
