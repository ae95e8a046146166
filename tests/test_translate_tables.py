"""`translate` for several tables: plain words that name related things become a multi-table
config over real HTTP against the simulator; one thing stays a single table; a clumsy answer
is repaired into a valid graph of tables."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import pytest
import yaml
from llm_helpers import simulator

from synthaix.build.executor import ThreadExecutor
from synthaix.columns.llm import LlmColumn
from synthaix.columns.reference import AggregateColumn, ReferenceColumn
from synthaix.config import DatasetConfig, parse_any_config
from synthaix.llm.provider import ProviderConfig
from synthaix.llm.translate import _repair_tables, to_yaml, translate
from synthaix.relational.build import DatasetBuild
from synthaix.relational.config import RelationalConfig

SHOP = "An online shop with customers, orders, order items and product reviews"


def _reference(config: RelationalConfig, table: str, target: str) -> ReferenceColumn:
    columns = config.table(table).columns
    return next(c for c in columns if isinstance(c, ReferenceColumn) and c.table == target)


def test_a_shop_becomes_related_tables_that_build(tmp_path: Path) -> None:
    with simulator(seed=2) as sim:
        provider = ProviderConfig(base_url=sim.url, model="sim-small")
        config, notes = translate(SHOP, provider, rows=100, name="shop")
        assert isinstance(config, RelationalConfig)
        text = to_yaml(config, notes)
        again = parse_any_config(yaml.safe_load(text))  # the file says what was validated
        assert again.model_dump(exclude={"output"}) == config.model_dump(exclude={"output"})

        tables = {t.name: t for t in config.tables}
        assert set(tables) == {"customers", "products", "orders", "items", "reviews"}
        assert (tables["orders"].parent, tables["items"].parent) == ("customers", "orders")
        assert tables["customers"].rows == 100 and tables["products"].rows == 50  # a catalogue
        assert tables["orders"].count is not None and tables["orders"].count.by == "tier"
        assert _reference(config, "items", "products").weights.zipf > 0  # type: ignore[union-attr]
        total = next(c for c in tables["orders"].columns if isinstance(c, AggregateColumn))
        assert total.of == "items"
        review = next(c for c in tables["reviews"].columns if isinstance(c, LlmColumn))
        assert {"products.name", "customers.tier"} <= review.references()
        assert "tables:\n  - name: customers" in text and "parent: orders" in text

        out = tmp_path / "out"
        built = RelationalConfig.model_validate(
            {**config.model_dump(mode="python", by_alias=True), "output": {"dir": out}}
        )
        manifest = DatasetBuild(built, lambda tc: ThreadExecutor(tc)).run()
    assert all(manifest.rows[t] > 0 for t in ("customers", "products", "orders", "items"))
    with duckdb.connect(str(out / "shop.duckdb"), read_only=True) as con:
        (wrong,) = con.execute(  # type: ignore[misc]
            "SELECT count(*) FROM orders o LEFT JOIN (SELECT order_id, sum(quantity * "
            "unit_price) AS s FROM items GROUP BY order_id) i USING (order_id) "
            "WHERE o.total <> coalesce(i.s, 0)"
        ).fetchone()
    assert wrong == 0


def test_one_thing_with_fields_stays_a_single_table() -> None:
    with simulator(seed=5) as sim:
        provider = ProviderConfig(base_url=sim.url, model="sim-small")
        config, notes = translate("Customers with name, email, age and a short review", provider)
    assert isinstance(config, DatasetConfig)
    text = to_yaml(config, notes)
    assert "\ncolumns:\n" in text and "tables:" not in text
    assert isinstance(parse_any_config(yaml.safe_load(text)), DatasetConfig)
    # The simulator designs the fields listed (a demo of translate without a key made
    # random columns such as `hate_service_battery_arrived_`).
    types = {c.name: c.type for c in config.columns}
    assert config.name == "customers" and not notes
    assert types == {
        "name": "person.full_name",
        "email": "person.email",
        "age": "integer",
        "short_review": "llm",
    }


def _answer() -> dict[str, Any]:
    """What a clumsy model might say: singular names, no keys, a missing parent link, a
    reference without a column, lookups into unknown tables and round in a circle."""
    ref = {"type": "reference"}
    return {
        "name": "Shop",
        "tables": [
            {
                "name": "Customer",
                "rows": None,
                "columns": [
                    {"name": "full name", "type": "person.full_name"},
                    {"name": "tier", "type": "category", "values": ["basic", "gold"]},
                    {"name": "last_order_id", **ref, "to": "orders.order_id"},  # a cycle
                ],
                "constraints": [],
            },
            {
                "name": "orders",
                "parent": "customer",
                "count_mean": None,
                "count_by": "tier",
                "count_params": [{"value": "gold", "mean": 5}],
                "columns": [
                    {"name": "order_id", "type": "uuid"},
                    {"name": "placed", "type": "date", "start": "2024-01-01", "end": "2024-12-31"},
                    {"name": "warehouse_id", **ref, "to": "warehouses.id"},  # no such table
                    {"name": "total", "type": "aggregate", "of": "payments", "expr": "count(*)"},
                    {"name": "note", "type": "llm", "prompt": "For a {{ customers.tier }} buyer"},
                    {"name": "ship_fee", "type": "sql", "expr": "warehouses.fee * 2"},
                ],
                "constraints": ["placed >= DATE '2024-01-01'", "nope > 1"],
            },
            {
                "name": "products",
                "rows": 20,
                "columns": [{"name": "title", "type": "llm", "prompt": "A product title"}],
            },
            {
                "name": "lines",
                "parent": "orders",
                "count_mean": 2,
                "columns": [
                    {"name": "product", **ref, "to": "product", "zipf": 1.2},
                    {"name": "qty", "type": "integer", "min": 1, "max": 4},
                ],
            },
            {"name": "a", "parent": "b", "rows": 5, "columns": [{"name": "x", "type": "uuid"}]},
            {"name": "b", "parent": "a", "rows": 5, "columns": [{"name": "y", "type": "uuid"}]},
        ],
    }


def test_a_clumsy_answer_is_repaired_into_valid_tables() -> None:
    answer = _answer()
    config, notes = _repair_tables(answer, answer["tables"], "a shop", ProviderConfig(), 100, None)
    tables = {t.name: t for t in config.tables}
    assert config.name == "shop"
    customers, orders, lines = tables["customer"], tables["orders"], tables["lines"]
    assert customers.primary_key == ["customer_id"] and customers.rows == 100
    assert orders.parent == "customer" and orders.parent_link() is not None
    assert orders.count is not None and orders.count.mean == 3 and orders.count.by == "tier"
    assert orders.primary_key == ["order_id"]
    names = [c.name for c in orders.columns]
    assert "warehouse_id" not in names and "total" not in names and "ship_fee" in names
    note = next(c for c in orders.columns if c.name == "note")
    assert note.prompt == "For a {{ customer.tier }} buyer"  # type: ignore[union-attr]
    assert [c.check for c in orders.constraints] == ["placed >= DATE '2024-01-01'"]
    assert "last_order_id" not in [c.name for c in customers.columns]  # broke the cycle
    product = next(r for _, r in lines.references() if r.table == "products")
    assert product.to == "products.product_id" and product.weights.zipf == 1.2  # type: ignore[union-attr]
    assert tables["products"].rows == 20  # only looked up: keeps its size
    assert [tables["a"].parent, tables["b"].parent].count(None) >= 1  # no circle of parents
    joined = "\n".join(notes)
    for expected in ("added the key customer_id", "warehouse_id: dropped", "total: dropped"):
        assert expected in joined, joined
    assert "orders: constraint 'nope > 1' dropped" in joined
    text = to_yaml(config, notes)
    assert text.count("# repaired:") == len(notes)
    assert parse_any_config(yaml.safe_load(text)).model_dump(exclude={"output"}) == (
        config.model_dump(exclude={"output"})
    )


def test_alike_names_an_unusable_key_and_an_emptied_table() -> None:
    ref = {"type": "reference"}
    answer = {
        "name": "x",
        "tables": [
            {
                "name": "order",  # listed before `orders`: each name still means its own table
                "rows": 10,
                "columns": [
                    {"name": "id", "type": "sequence", "primary_key": True, "step": "one"},
                    {"name": "code", "type": "uuid"},
                ],
            },
            {"name": "orders", "parent": "order", "columns": [{"name": "o", **ref, "to": "order"}]},
            {"name": "lines", "parent": "orders", "columns": [{"name": "q", "type": "uuid"}]},
            {"name": "ghost", "rows": 5, "columns": [{"name": "w", **ref, "to": "warehouses.id"}]},
        ],
    }
    config, notes = _repair_tables(answer, answer["tables"], "x", ProviderConfig(), 20, None)
    tables = {t.name: t for t in config.tables}
    assert tables["order"].primary_key == ["code"]  # `id` became an llm column: no key
    link = tables["orders"].parent_link()
    assert link is not None and link.to == "order.code"
    assert tables["lines"].parent == "orders" and tables["lines"].parent_link() is not None
    assert [c.name for c in tables["ghost"].columns] == ["ghost_id"]
    assert any("ghost.w: dropped" in note for note in notes), notes


def test_the_translate_command_writes_a_tables_config(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from synthaix.cli import app

    target = tmp_path / "shop.yaml"
    with simulator(seed=2) as sim:
        result = CliRunner().invoke(
            app,
            ["translate", SHOP, "-o", str(target), "--base-url", sim.url, "--model", "sim-small"],
        )
    assert result.exit_code == 0, result.output
    assert "tables" in result.output and target.is_file()
    assert isinstance(parse_any_config(yaml.safe_load(target.read_text())), RelationalConfig)


def test_translate_refuses_a_bad_rows_or_output_before_asking(tmp_path: Path) -> None:
    """--rows 0 was refused after a paid request, as a config error on `rows`; -o a folder
    named a temporary file the user never gave."""
    from typer.testing import CliRunner

    from synthaix.cli import app

    with simulator(seed=2, record=True) as sim:
        base = ["translate", SHOP, "--base-url", sim.url, "--model", "sim-small"]
        zero = CliRunner().invoke(app, [*base, "-o", str(tmp_path / "a.yaml"), "--rows", "0"])
        folder = CliRunner().invoke(app, [*base, "-o", str(tmp_path)])
        assert sim.state.requests() == []
    assert zero.exit_code == 2 and "--rows" in zero.output
    assert folder.exit_code != 0 and f"{tmp_path} is a folder" in folder.output
    # A credential in --base-url: pydantic's ValidationError, exit 1, before.
    secret = ["translate", SHOP, "-o", str(tmp_path / "b.yaml"), "--model", "m"]
    url = "http://user:sk-123@127.0.0.1:9/v1"
    refused = CliRunner().invoke(app, [*secret, "--base-url", url])
    assert refused.exit_code == 2
    assert "error: --base-url: keep credentials out of base_url" in refused.output
    assert "sk-123" not in refused.output


def test_translate_against_a_slow_model_says_to_raise_its_timeout_option(tmp_path: Path) -> None:
    """The hint said a lower provider.timeout gives up sooner, of a model that answered
    every request, only slower than the timeout; translate's option is --timeout."""
    from typer.testing import CliRunner

    from synthaix.cli import app

    with simulator(seed=2, latency=3) as sim:
        base = ["translate", SHOP, "--base-url", sim.url, "--model", "sim-small"]
        slow = CliRunner().invoke(app, [*base, "-o", str(tmp_path / "x.yaml"), "--timeout", "1"])
    assert slow.exit_code == 2, slow.output
    assert "raise --timeout" in " ".join(slow.output.split())
    assert "provider.timeout" not in slow.output


def test_a_broken_design_answer_is_asked_again_and_flagged_when_it_stays_broken() -> None:
    """json-repair turned an answer cut at 5,042 of 8,100 characters into a valid config of
    two tables out of three, written with no word of it."""
    import pytest

    from synthaix.errors import ConfigError
    from synthaix.sim.faults import FaultRates

    with simulator(seed=2, faults=FaultRates(malformed=1.0), record=True) as sim:
        provider = ProviderConfig(base_url=sim.url, model="sim-small")
        config, notes = translate(SHOP, provider, rows=100, name="shop")
        asked = len(sim.state.requests())
    assert asked == 3  # asked again each time, up to MAX_ASKS
    assert notes[0].startswith("no answer in 3 tries was whole (the first usable one was")
    assert "check that no table or column is missing" in notes[0]
    assert "# repaired: no answer in 3 tries was whole" in to_yaml(config, notes)
    with simulator(seed=2, faults=FaultRates(chatter=1.0), record=True) as sim:
        _, notes = translate(SHOP, ProviderConfig(base_url=sim.url, model="sim-small"), rows=100)
        assert len(sim.state.requests()) == 1  # whole, if chatty: taken at once
    assert not any("was whole" in note for note in notes)
    with pytest.raises(ConfigError, match="the description is empty"):
        translate("  ", provider)


def test_a_wrong_model_fails_at_once_naming_the_served_ones() -> None:
    import pytest

    from synthaix.errors import ProviderError

    with simulator(record=True) as sim:
        provider = ProviderConfig(base_url=sim.url, model="gpt-4o-mini")
        with pytest.raises(ProviderError, match=r"\(it has: sim-large, sim-small\)"):
            translate(SHOP, provider)
        assert sim.state.requests() == []  # no design request was paid for


def test_a_refused_design_request_gets_a_hint_about_translate_not_columns() -> None:
    """The hint said to check the llm columns' schema, of which translate has none."""
    import http.server
    import json as json_lib
    import threading

    from synthaix.errors import ProviderError

    class Refusing(http.server.BaseHTTPRequestHandler):
        def _send(self, status: int, body: dict) -> None:
            data = json_lib.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # /v1/models
            self._send(200, {"object": "list", "data": [{"id": "m", "object": "model"}]})

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            self._send(400, {"error": {"message": "response_format is not supported"}})

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Refusing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/v1"
        with pytest.raises(ProviderError) as caught:
            translate("customers", ProviderConfig(base_url=url, model="m"), rows=10)
    finally:
        server.shutdown()
    assert "HTTP 400" in str(caught.value)
    assert "llm columns" not in (caught.value.hint or "")
    assert "this request's JSON schema" in (caught.value.hint or "")


def test_a_childs_narrow_key_is_widened_to_the_rows_its_parents_make() -> None:
    """A child table has no `rows`: the repair assumed 1,000 and widened the key to 10,000
    where 50,001 were asked for, again and again, until translate gave up (review)."""
    from synthaix.errors import ConfigError
    from synthaix.llm.translate import _fix_tables

    key = {"name": "order_id", "type": "integer", "min": 1, "max": 500, "primary_key": True}
    data = {
        "name": "shop",
        "tables": [
            {
                "name": "customers",
                "rows": 5000,
                "columns": [{"name": "customer_id", "type": "sequence", "primary_key": True}],
            },
            {
                "name": "orders",
                "parent": "customers",
                "count": {"mean": 10},
                "columns": [
                    key,
                    {"name": "customer_id", "type": "reference", "to": "customers.customer_id"},
                ],
            },
        ],
    }
    notes: list[str] = []
    with pytest.raises(ConfigError) as caught:
        parse_any_config(data)
    assert _fix_tables(data["tables"], str(caught.value), notes)
    assert notes == ["orders.order_id: range widened to 1..500010"]
    assert isinstance(parse_any_config(data), RelationalConfig)


def test_a_composite_key_of_narrow_columns_is_repaired_not_refused() -> None:
    """Narrow columns turn the exact dedupe off; a composite primary key then holds nothing,
    and translate exited 2 with advice about keys of a config the user never saw."""
    from synthaix.llm.translate import _repair

    columns = [
        {"name": "stars", "type": "integer", "min": 1, "max": 5, "primary_key": True},
        {"name": "tier", "type": "category", "values": ["a", "b", "c"], "primary_key": True},
    ]
    provider = ProviderConfig(base_url="http://127.0.0.1:9/v1", model="m")
    config, notes = _repair({"columns": columns}, "ratings", provider, 500, "r")
    assert config.dedupe.exact is False
    assert not any(c.primary_key for c in config.columns)
    assert "stars, tier: dropped primary_key (rows may repeat: no composite key holds)" in notes
