"""One 20,000-row build that uses every cross-column construct, checked by querying its DuckDB
output: each declared relation holds with 0 violations. Also: every example config validates."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from conftest import write_config
from synthaix.build.engine import Build
from synthaix.build.executor import ThreadExecutor
from synthaix.build.manifest import read_manifest
from synthaix.config import load_config
from synthaix.report.checks import run_checks
from synthaix.report.html import write_report
from synthaix.report.profile import parts_of, profile_dataset
from synthaix.report.relations import declared, verify

CONFIGS = Path(__file__).resolve().parents[1] / "configs"

SHOP = {
    "name": "shop",
    "rows": 20_000,
    "seed": 12,
    "chunk_size": 3_000,
    "columns": [
        {"name": "order_ref", "type": "pattern", "pattern": "ORD-[A-Z]{2}[0-9]{6}", "unique": True},
        {"name": "first_name", "type": "person.first_name"},
        {"name": "last_name", "type": "person.last_name"},
        {
            "name": "email",
            "type": "person.email",
            "from": ["first_name", "last_name"],
            "unique": True,
        },
        {"name": "iban", "type": "faker", "method": "iban"},
        {"name": "age", "type": "integer", "min": 18, "max": 80},
        {
            "name": "income",
            "type": "float",
            "distribution": "lognormal",
            "mean": 50_000,
            "std": 20_000,
            "correlated_with": "age",
            "rho": 0.6,
        },
        {"name": "category", "type": "category", "values": {"books": 2, "toys": 1, "tech": 1}},
        {
            "name": "subcategory",
            "type": "category",
            "by": "category",
            "values": ["other"],
            "params": {
                "books": {"values": {"fiction": 3, "science": 1}},
                "toys": {"values": ["lego", "dolls"]},
            },
        },
        {
            "name": "unit_price",
            "type": "float",
            "by": "category",
            "min": 1,
            "max": 100,
            "decimals": 2,
            "params": {"books": {"min": 5, "max": 30}, "tech": {"min": 50, "max": 900}},
        },
        {"name": "quantity", "type": "integer", "min": 1, "max": 5},
        {
            "name": "total",
            "type": "sql",
            "expr": "round(quantity * unit_price, 2)",
            "as": "decimal(12,2)",
        },
        {"name": "discount", "type": "float", "min": 0, "max": 40, "decimals": 2},
        {"name": "ordered_at", "type": "datetime", "start": "2024-01-01", "end": "2024-12-31"},
        {
            "name": "shipped_at",
            "type": "datetime",
            "after": "ordered_at",
            "offset": {"min": "1h", "max": "5d"},
        },
        {
            "name": "renewal_on",
            "type": "date",
            "after": "ordered_at",
            "offset": {"min": "1mo", "max": "1y"},
        },
        {"name": "gift", "type": "boolean", "by": "category", "params": {"toys": {"p": 0.9}}},
    ],
    # On columns no distribution check reads: a constraint reshapes the columns it filters on.
    "constraints": [
        "discount <= 8 * quantity",
        {"name": "before_december", "check": "ordered_at < TIMESTAMP '2024-12-01'"},
    ],
}


def test_every_declared_relation_holds_on_a_20k_row_build(tmp_path: Path) -> None:
    data = {**SHOP, "output": {"dir": str(tmp_path / "out")}}
    config = load_config(write_config(tmp_path / "shop.yaml", data))
    manifest = Build(config, ThreadExecutor(config)).run()
    assert manifest.rows.delivered == 20_000
    assert manifest.dropped.unique_value == 0  # repeated emails were numbered, not redrawn
    assert set(manifest.dropped.constraint) == {"discount <= 8 * quantity", "before_december"}
    rows = manifest.rows  # the counts add up: every generated row delivered, dropped or unused
    assert rows.generated == rows.delivered + manifest.dropped.total + rows.unused
    assert rows.generated > rows.delivered + sum(manifest.dropped.constraint.values())

    checks = declared(config)
    covered = {c.column for c in checks}
    assert {"email", "income", "subcategory", "unit_price", "total", "shipped_at"} <= covered
    assert {"renewal_on", "gift", "order_ref", ""} <= covered  # "": the constraints
    with duckdb.connect(str(tmp_path / "out" / "shop.duckdb"), read_only=True) as con:
        con.execute("CREATE TEMP VIEW data AS FROM shop")
        for check in checks:
            failed, observed = check.run(con)
            assert failed == 0, (check.relation, observed)
        # The same facts in plain SQL, independent of the declared checks' SQL.
        [row] = con.execute(
            """
            SELECT count(*),
                   count(*) FILTER (WHERE total <> round(quantity * unit_price, 2)),
                   count(*) FILTER (WHERE shipped_at < ordered_at + INTERVAL 1 HOUR
                                       OR shipped_at > ordered_at + INTERVAL 5 DAY),
                   count(*) FILTER (WHERE discount > 8 * quantity OR ordered_at >= '2024-12-01'),
                   count(*) FILTER (WHERE category = 'books'
                                       AND subcategory NOT IN ('fiction', 'science')),
                   count(*) FILTER (WHERE category = 'tech' AND unit_price < 50),
                   count(DISTINCT email), count(DISTINCT order_ref),
                   count(*) FILTER (WHERE NOT starts_with(email,
                       regexp_replace(lower(strip_accents(first_name)), '[^a-z0-9]', '', 'g'))),
                   corr(age, income)
            FROM shop
            """
        ).fetchall()
    total, bad_total, bad_ship, broken, bad_sub, bad_price, emails, refs, bad_mail, rho = row
    assert total == emails == refs == 20_000
    assert bad_total == bad_ship == broken == bad_sub == bad_price == bad_mail == 0
    assert 0.45 < rho < 0.75


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_every_example_config_is_valid(path: Path) -> None:
    load_config(path)


def test_the_report_passes_every_check_of_a_coherent_build_and_lists_its_relations(
    tmp_path: Path,
) -> None:
    data = {**SHOP, "rows": 5_000, "output": {"dir": str(tmp_path / "out")}}
    config = load_config(write_config(tmp_path / "shop.yaml", data))
    Build(config, ThreadExecutor(config)).run()
    output = tmp_path / "out"
    checks = run_checks(config, profile_dataset(output)) + verify(config, parts_of(output))
    failed = [(c.column, c.name, c.expected, c.observed) for c in checks if not c.passed]
    assert not failed
    relations = [c for c in checks if c.name == "relation"]
    assert len(relations) == len(declared(config)) >= 11
    html = write_report(output).read_text()
    assert "discount &lt;= 8 * quantity" in html or "discount <= 8 * quantity" in html
    assert read_manifest(output).dropped.constraint


def test_the_report_reads_number_and_boolean_keys_back_as_they_were_declared(
    tmp_path: Path,
) -> None:
    columns = [
        {"name": "level", "type": "category", "values": {1: 0.5, 2: 0.3, 3: 0.2}},
        {"name": "bonus", "type": "integer", "by": "level", "min": 0, "max": 10,
         "params": {3: {"min": 50, "max": 60}}},
        {"name": "remote", "type": "boolean", "p": 0.3},
        {"name": "desk", "type": "float", "by": "remote", "min": 1, "max": 2,
         "params": {True: {"min": 0, "max": 0.5}}},
    ]  # fmt: skip
    data = {"name": "staff", "rows": 4000, "columns": columns}
    config = load_config(
        write_config(tmp_path / "staff.yaml", data | {"output": {"dir": str(tmp_path / "out")}})
    )
    Build(config, ThreadExecutor(config)).run()
    output = tmp_path / "out"
    assert read_manifest(output).dataset_config() == config
    checks = run_checks(config, profile_dataset(output)) + verify(config, parts_of(output))
    assert not [c for c in checks if not c.passed]
    write_report(output)


def test_a_preview_shows_the_first_rows_of_the_build_for_every_construct(tmp_path: Path) -> None:
    import pyarrow.dataset as ds

    from synthaix.build.preview import preview_rows

    data = {**SHOP, "rows": 6_000, "output": {"dir": str(tmp_path / "out")}}
    config = load_config(write_config(tmp_path / "shop.yaml", data))
    Build(config, ThreadExecutor(config)).run()
    built = ds.dataset(tmp_path / "out" / "data").to_table().slice(0, 20)
    shown = preview_rows(config, 20)
    assert shown.equals(built.cast(shown.schema))


def test_the_report_profiles_a_column_named_like_its_own_aliases(tmp_path: Path) -> None:
    columns = [{"name": "b", "type": "integer", "min": 0, "max": 10**6}]
    data = {"name": "letters", "rows": 500, "columns": columns}
    config = load_config(
        write_config(tmp_path / "l.yaml", data | {"output": {"dir": str(tmp_path / "o")}})
    )
    Build(config, ThreadExecutor(config)).run()
    assert "<svg" in write_report(tmp_path / "o").read_text()


@pytest.mark.parametrize("name", ["orders", "support_tickets"])
def test_the_example_configs_build_and_pass_every_report_check(tmp_path: Path, name: str) -> None:
    config = load_config(CONFIGS / f"{name}.yaml").with_overrides(
        rows=3_000, out=tmp_path / "out", seed=None, mode=None, runner=None
    )
    Build(config, ThreadExecutor(config)).run()
    output = tmp_path / "out"
    checks = run_checks(config, profile_dataset(output)) + verify(config, parts_of(output))
    assert [c for c in checks if not c.passed] == []
    assert sum(c.name == "relation" for c in checks) >= 4
