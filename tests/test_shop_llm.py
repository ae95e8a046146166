"""configs/shop.yaml, scaled down, built against the simulator over loopback HTTP: every review
was asked for with its own product's name and category and its customer's tier (read from the
simulator's request log), and the tables hold together (keys, sums, dates, prices)."""

from __future__ import annotations

import json
import re
import urllib.request
from collections import defaultdict
from pathlib import Path
from typing import Any

import duckdb
import pytest
import yaml
from llm_helpers import simulator

from synthaix.build.executor import ThreadExecutor
from synthaix.config import parse_any_config
from synthaix.relational.build import DatasetBuild

SHOP = Path(__file__).resolve().parents[1] / "configs" / "shop.yaml"
_FENCED = re.compile(r"```json\s*\n(.*?)\n```", re.DOTALL)
FOREIGN_KEYS = [  # (table, column, referenced table, its key)
    ("orders", "customer_id", "customers", "customer_id"),
    ("items", "order_id", "orders", "order_id"),
    ("items", "product_id", "products", "product_id"),
    ("reviews", "item_id", "items", "item_id"),
]


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, Any]]]:
    """The shop with 150 customers (the catalogue keeps its 50 products), built against a
    recording simulator; the output folder and the simulator's request log."""
    out = tmp_path_factory.mktemp("shop")
    data = yaml.safe_load(SHOP.read_text())
    next(t for t in data["tables"] if t["name"] == "customers")["rows"] = 150
    with simulator(seed=7, record=True) as sim:
        data["provider"]["base_url"] = sim.url
        data["output"] = {"dir": str(out)}
        DatasetBuild(parse_any_config(data), lambda tc: ThreadExecutor(tc)).run()
        base = sim.url.removesuffix("/v1")
        with urllib.request.urlopen(f"{base}/sim/requests", timeout=30) as answer:
            log = json.load(answer)
    return out, log


def _query(out: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(out / "shop.duckdb"), read_only=True) as con:
        return con.execute(sql).fetchall()


def _prompts_by_answer(log: list[dict[str, Any]], column: str) -> dict[str, list[str]]:
    """Each text the simulator wrote for `column`, with the per-row prompts it answered (the
    input of the same id in the same request)."""
    found: dict[str, list[str]] = defaultdict(list)
    for entry in log:
        user = entry["request"]["messages"][-1]["content"]
        inputs = [json.loads(block) for block in _FENCED.findall(user)]
        rows = next((i for i in inputs if isinstance(i, list) and i and column in i[0]), None)
        if rows is None:
            continue
        asked = {row["id"]: row[column] for row in rows}
        for row in json.loads(entry["answer"])["rows"]:
            found[row[column]].append(asked[row["id"]])
    return found


def test_every_review_was_asked_with_its_product_and_customer(
    shop: tuple[Path, list[dict[str, Any]]],
) -> None:
    out, log = shop
    prompts = _prompts_by_answer(log, "review")
    reviews = _query(
        out,
        "SELECT r.review, p.name, p.category, c.tier FROM reviews r "
        "JOIN items i USING (item_id) JOIN products p ON p.product_id = i.product_id "
        "JOIN orders o ON o.order_id = i.order_id JOIN customers c USING (customer_id)",
    )
    (count,) = _query(out, "SELECT count(*) FROM reviews")[0]
    assert len(reviews) == count > 20
    for review, name, category, tier in reviews:
        asked = prompts.get(review, [])
        assert any(
            f'"{name}"' in p and f"({category})" in p and f"a {tier}-tier customer" in p
            for p in asked
        ), (review, name, category, tier, asked)
    # The LLM wrote the catalogue and the reviews; orders and items cost no request.
    (products,) = _query(out, "SELECT count(*) FROM products")[0]
    assert len(_prompts_by_answer(log, "name")) >= products == 50


def test_the_tables_hold_together(shop: tuple[Path, list[dict[str, Any]]]) -> None:
    out, _ = shop
    for table, column, parent, key in FOREIGN_KEYS:
        (orphans,) = _query(
            out,
            f"SELECT count(*) FROM {table} t LEFT JOIN {parent} p ON t.{column} = p.{key} "
            f"WHERE p.{key} IS NULL",
        )[0]
        assert orphans == 0, (table, column)
    declared = {
        text
        for (text,) in _query(
            out,
            "SELECT constraint_text FROM duckdb_constraints() WHERE constraint_type = "
            "'FOREIGN KEY'",
        )
    }
    assert len(declared) == len(FOREIGN_KEYS), declared
    checks = {
        "total is the sum of the order's items": "SELECT count(*) FROM orders o LEFT JOIN "
        "(SELECT order_id, sum(qty * unit_price) AS s FROM items GROUP BY order_id) i "
        "USING (order_id) WHERE o.total <> coalesce(i.s, 0)",
        "an item's price is its product's": "SELECT count(*) FROM items i JOIN products p "
        "USING (product_id) WHERE i.unit_price <> round(p.price, 2)",
        "a product once per order": "SELECT count(*) FROM (SELECT order_id, product_id FROM "
        "items GROUP BY ALL HAVING count(*) > 1)",
        "ordered after signing up": "SELECT count(*) FROM orders JOIN customers "
        "USING (customer_id) WHERE ordered_at < signup_date",
        "every order has an item": "SELECT count(*) FROM orders WHERE order_id NOT IN "
        "(SELECT order_id FROM items)",
    }
    for what, sql in checks.items():
        assert _query(out, sql)[0][0] == 0, what


def test_the_summary_says_each_tables_retries_and_rejected_rows(
    shop: tuple[Path, list[dict[str, Any]]],
) -> None:
    """The single-table summary said them, the multi-table one did not: a user was not told
    that timed-out requests may be billed beyond the cost shown."""
    from collections import Counter

    from synthaix.cli import build
    from synthaix.relational.manifest import DatasetManifest

    out, _ = shop
    manifest = DatasetManifest.model_validate_json((out / "manifest.json").read_bytes())
    llm = manifest.tables["reviews"].llm
    llm.retries = Counter(timeout=2, rate_limit=5)
    llm.rejected_rows = Counter(malformed_json=3)
    with build.out.capture() as captured:
        build._print_tables(manifest, 1.0)
    text = captured.get()
    reviews = text[text.index("  reviews: ") :]
    assert "\n    timed out: 2 " in reviews and "\n    pacing: " in reviews
    assert "\n    retries: " in reviews and "rate_limit 5" in reviews
    assert "\n    rejected rows: malformed_json 3" in reviews
    assert "retries" not in text[: text.index("  reviews: ")]  # tables without llm columns

    from synthaix.report.tables import write_tables_report

    html, _ = write_tables_report(out, out.parent / "shop-report.html")
    page = html.read_text(encoding="utf-8")
    assert "<th>reviews: retries</th>" in page and "<th>reviews: rejected rows</th>" in page
    assert "<th>customers: retries</th>" not in page
