# ruff: noqa: E501  (YAML configs read best on one line per column)
"""Preview and export of multi-table datasets: a child with an exact `rows` total previews,
csv/jsonl previews print one table and nothing else, and export writes one table of a
multi-table build without touching files SynthAIx did not make."""

from __future__ import annotations

import csv
import io
import json
import textwrap
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from synthaix.build.executor import ThreadExecutor
from synthaix.cli import app
from synthaix.config import load_config
from synthaix.errors import OutputError
from synthaix.export import export_dataset
from synthaix.relational.build import DatasetBuild
from synthaix.relational.config import needed_for
from synthaix.relational.preview import _scratch, preview_tables

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]

HR = """
name: hr
seed: 7
chunk_size: 100
tables:
  - name: departments
    rows: 12
    columns:
      - {name: department_id, type: sequence, primary_key: true, start: 100, step: 10}
      - {name: budget, type: integer, min: 1, max: 100}
  - name: employees
    rows: 600
    columns:
      - {name: employee_id, type: sequence, primary_key: true}
      - {name: department_id, type: reference, to: departments.department_id, weights: {column: budget}}
      - {name: name, type: person.full_name}
  - name: reviews
    parent: employees
    rows: 800
    count: {distribution: uniform, min: 0, max: 3}
    columns:
      - {name: review_id, type: uuid, primary_key: true}
      - {name: employee_id, type: reference, to: employees.employee_id}
      - {name: score, type: integer, min: 1, max: 5}
  - name: notes
    parent: employees
    rows: 900
    columns:
      - {name: note_id, type: sequence, primary_key: true}
      - {name: employee_id, type: reference, to: employees.employee_id}
"""

# items' total is fixed, but its parents (orders) are drawn per customer: in a preview of seed 1
# the scaled total (206) is below the 221 orders drawn, each of which needs an item.
NESTED = """
name: nest
seed: 1
chunk_size: 100
tables:
  - name: customers
    rows: 5000
    columns:
      - {name: customer_id, type: sequence, primary_key: true}
  - name: orders
    parent: customers
    count: {mean: 2}
    columns:
      - {name: order_id, type: sequence, primary_key: true}
      - {name: customer_id, type: reference, to: customers.customer_id}
  - name: items
    parent: orders
    rows: 10300
    count: {distribution: uniform, min: 1, max: 2}
    columns:
      - {name: order_id, type: reference, to: orders.order_id}
      - {name: qty, type: integer, min: 1, max: 5}
"""


def write(folder: Path, text: str, name: str, out: str = "out") -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(textwrap.dedent(text) + f"output: {{dir: {folder / out}}}\n")
    return path


def build(path: Path) -> Path:
    config = load_config(path)
    DatasetBuild(config, lambda table: ThreadExecutor(table)).run()
    return config.output_dir


# -- preview: a child with an exact total ---------------------------------------------------


def test_a_child_total_scales_with_its_previewed_parents(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, HR, "hr"))
    scratch, scaled = _scratch(config, 3, tmp_path / "scratch")
    assert scaled
    # employees make their first chunk (100 of 600): each child total shrinks the same way.
    rows = {t.name: t.rows for t in scratch.tables}
    assert rows == {"departments": 12, "employees": 100, "reviews": 133, "notes": 150}


def test_preview_of_a_child_with_rows_shows_the_builds_first_rows(tmp_path: Path) -> None:
    path = write(tmp_path, HR, "hr", out="never")
    result = runner.invoke(
        app, ["preview", str(path), "--rows", "3", "--format", "csv", "--table", "reviews"]
    )
    assert result.exit_code == 0, result.output
    reviews = list(csv.DictReader(io.StringIO(result.stdout)))
    assert len(reviews) == 3 and set(reviews[0]) == {"review_id", "employee_id", "score"}
    assert not (tmp_path / "never").exists()
    tables = preview_tables(load_config(path), rows=3)
    assert {n: len(t) for n, t in tables.items()} == {
        "departments": 3,
        "employees": 3,
        "reviews": 3,
        "notes": 3,
    }
    built = build(path)
    for name in ("departments", "employees"):  # root tables: the build's first rows
        first = pq.read_table(built / "data" / name).slice(0, 3)
        assert tables[name].to_pylist() == first.to_pylist()
    # Children are made for the first parents, as in the build.
    assert all(int(r["employee_id"]) <= 100 for r in reviews)
    first_note = pq.read_table(built / "data" / "notes").slice(0, 3)
    assert tables["notes"]["employee_id"].to_pylist() == first_note["employee_id"].to_pylist()


def test_a_scaled_total_the_drawn_parents_cannot_take_falls_back_to_counts(
    tmp_path: Path,
) -> None:
    config = load_config(write(tmp_path, NESTED, "nest"))
    tables = preview_tables(config, rows=3)
    assert {n: len(t) for n, t in tables.items()} == {"customers": 3, "orders": 3, "items": 3}
    assert set(tables["items"]["order_id"].to_pylist()) <= set(range(1, 4))


# -- preview: csv and jsonl print one table ------------------------------------------------


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_machine_readable_preview_of_several_tables_needs_table(tmp_path: Path, fmt: str) -> None:
    path = write(tmp_path, HR, "hr", out="never")
    result = runner.invoke(app, ["preview", str(path), "--rows", "2", "--format", fmt])
    assert result.exit_code == 2 and result.stdout == ""
    assert "departments, employees, reviews, notes" in result.stderr
    assert "--table" in result.stderr
    result = runner.invoke(
        app, ["preview", str(path), "--rows", "2", "--format", fmt, "--table", "employees"]
    )
    assert result.exit_code == 0, result.output
    assert "#" not in result.stdout
    if fmt == "csv":
        rows = list(csv.DictReader(io.StringIO(result.stdout)))
    else:
        rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [int(r["employee_id"]) for r in rows] == [1, 2]
    unknown = runner.invoke(app, ["preview", str(path), "--format", fmt, "--table", "staff"])
    assert unknown.exit_code == 2 and "no table 'staff'" in unknown.stderr
    assert "departments, employees, reviews, notes" in unknown.stderr


def test_table_preview_shows_every_table_or_the_one_asked_for(tmp_path: Path) -> None:
    path = write(tmp_path, HR, "hr", out="never")
    every = runner.invoke(app, ["preview", str(path), "--rows", "2"])
    assert every.exit_code == 0, every.output
    assert all(f"hr.{n}: first 2 rows" in every.stdout for n in ("departments", "notes"))
    one = runner.invoke(app, ["preview", str(path), "--rows", "2", "--table", "notes"])
    assert one.exit_code == 0, one.output
    assert "hr.notes: first 2 rows" in one.stdout and "hr.employees" not in one.stdout


def test_a_preview_of_one_table_builds_only_the_tables_it_reads(tmp_path: Path) -> None:
    """Its rows are the whole preview's; the tables it does not read are not built (their LLM
    columns would be paid for nothing)."""
    config = load_config(write(tmp_path, HR, "hr", out="never"))
    assert needed_for(config, "notes") == ["departments", "employees", "notes"]
    every = preview_tables(config, 5)
    [(name, notes)] = preview_tables(config, 5, only="notes").items()
    assert name == "notes" and notes.equals(every["notes"])

    shop = load_config(ROOT / "configs" / "shop.yaml")
    # orders' total aggregates its items, which look up products; no review is read
    assert needed_for(shop, "orders") == ["products", "customers", "orders", "items"]
    result = runner.invoke(
        app, ["preview", str(ROOT / "configs" / "shop.yaml"), "--table", "customers"]
    )
    assert result.exit_code == 0, result.output
    assert "shop.customers: first 20 rows" in result.stdout
    assert "llm columns" not in result.output  # products (LLM) is not built: no endpoint asked


# -- export -----------------------------------------------------------------------------------


def test_export_writes_one_table_of_a_multi_table_build(tmp_path: Path) -> None:
    built = build(write(tmp_path, HR, "hr"))
    result = runner.invoke(app, ["export", str(built), "--format", "csv"])
    assert result.exit_code == 2, result.output
    assert "holds 4 tables: departments, employees, reviews, notes" in result.stderr
    assert "--table" in result.stderr and not list(built.glob("*.csv"))
    wrong = runner.invoke(app, ["export", str(built), "--table", "staff"])
    assert wrong.exit_code == 2 and "no table 'staff'" in wrong.stderr
    misspelt = runner.invoke(app, ["export", str(built), "--table", "employee"])
    assert "hint: did you mean --table employees?" in misspelt.stderr
    previewed = runner.invoke(app, ["preview", str(tmp_path / "hr.yaml"), "--table", "note"])
    assert "hint: did you mean --table notes?" in previewed.stderr

    result = runner.invoke(app, ["export", str(built), "--format", "csv", "--table", "reviews"])
    assert result.exit_code == 0, result.output
    with (built / "reviews.csv").open() as file:
        rows = list(csv.DictReader(file))
    assert len(rows) == 800 and set(rows[0]) == {"review_id", "employee_id", "score"}
    (tmp_path / "exports").mkdir()
    path = export_dataset(built, "jsonl", tmp_path / "exports", table="employees")
    assert path == tmp_path / "exports" / "employees.jsonl"
    assert len(path.read_text().splitlines()) == 600
    path = export_dataset(built, "parquet", tmp_path / "d.parquet", table="departments")
    assert pq.read_table(path).num_rows == 12


def test_export_of_a_table_never_overwrites_a_file_without_force(tmp_path: Path) -> None:
    built = build(write(tmp_path, HR, "hr"))
    exports = tmp_path / "exports"
    exports.mkdir()
    mine = exports / "notes.csv"
    mine.write_text("precious\n")
    for target in (exports, mine):  # a folder (file named after the table), or the file
        result = runner.invoke(app, ["export", str(built), "--table", "notes", "-o", str(target)])
        assert result.exit_code == 2 and "notes.csv exists" in result.stderr
        assert mine.read_text() == "precious\n"
    result = runner.invoke(
        app, ["export", str(built), "--table", "notes", "-o", str(mine), "--force"]
    )
    assert result.exit_code == 0, result.output
    assert mine.read_text().splitlines()[0] == "note_id,employee_id"
    assert not list(exports.glob(".*.tmp"))


def test_export_of_a_single_table_dataset_checks_a_table_name(tmp_path: Path) -> None:
    path = tmp_path / "solo.yaml"
    path.write_text(
        "name: solo\nrows: 5\ncolumns: [{name: id, type: sequence}]\n"
        f"output: {{dir: {tmp_path / 'solo'}}}\n"
    )
    config = load_config(path)
    from synthaix.build.engine import Build

    Build(config, ThreadExecutor(config)).run()
    assert export_dataset(config.output_dir, "csv") == config.output_dir / "solo.csv"
    assert export_dataset(config.output_dir, "csv", table="solo").read_text().split() == [
        "id",
        *map(str, range(1, 6)),
    ]
    with pytest.raises(OutputError, match="holds one table, solo, not other"):
        export_dataset(config.output_dir, "csv", table="other")


SHOP_LLM = """
name: shop
seed: 3
chunk_size: 400
tables:
  - name: products
    rows: 40
    columns:
      - {name: product_id, type: sequence, primary_key: true}
      - {name: category, type: category, values: [kitchen, garden, bath]}
      - {name: name, type: llm, prompt: "A product name for a {{ category }} product", max_length: 60}
  - name: customers
    rows: 300
    columns:
      - {name: customer_id, type: sequence, primary_key: true}
      - {name: tier, type: category, values: [basic, gold]}
  - name: orders
    parent: customers
    count: {distribution: poisson, mean: 2}
    columns:
      - {name: order_id, type: sequence, primary_key: true}
      - {name: customer_id, type: reference, to: customers.customer_id}
  - name: items
    parent: orders
    count: {distribution: poisson, mean: 2, min: 1, max: 4}
    columns:
      - {name: item_id, type: sequence, primary_key: true}
      - {name: order_id, type: reference, to: orders.order_id}
      - {name: product_id, type: reference, to: products.product_id}
  - name: reviews
    parent: items
    count: {distribution: poisson, mean: 0.5, max: 1}
    columns:
      - {name: review_id, type: sequence, primary_key: true}
      - {name: item_id, type: reference, to: items.item_id}
      - {name: stars, type: integer, min: 1, max: 5}
      - name: review
        type: llm
        prompt: 'A {{ stars }}-star review of "{{ products.name }}" by a {{ customers.tier }} customer'
        max_length: 200
"""


def _asked(log: list, column: str) -> list[dict]:
    """The rows the simulator was asked to fill `column` for (their inputs)."""
    rows = []
    for entry in log:
        text = entry["request"]["messages"][-1]["content"]
        if f"- {column} (" in text:
            rows += json.loads(text.split("```json")[1].split("```")[0])
    return rows


def test_a_multi_table_preview_pays_for_the_rows_shown_and_those_they_read(
    tmp_path: Path,
) -> None:
    """The reviews shown read their products' names through their items: the preview asks the
    LLM for those names and the products shown, and for the reviews shown, nothing more (it
    asked for every review and product of the first chunk, ~100 rows, before); the sampler
    values are the build's first rows."""
    from llm_helpers import provider, simulator

    with simulator(record=True) as sim:
        text = SHOP_LLM + f"provider: {json.dumps(provider(sim.url))}\n"
        config = load_config(write(tmp_path, text, "shop"))
        tables = preview_tables(config, rows=3)
        log = sim.state.requests()
        shown = runner.invoke(app, ["preview", str(tmp_path / "shop.yaml"), "--rows", "3"])
        assert shown.exit_code == 0, shown.output
        assert f"llm columns of the rows shown: {len(log)} requests, " in shown.output
        DatasetBuild(config, lambda table: ThreadExecutor(table)).run()
    built = {name: pq.read_table(tmp_path / "out" / "data" / name) for name in config.order}
    for name, table in tables.items():
        plain = [c for c in table.column_names if c not in ("name", "review")]
        assert table.select(plain) == built[name].slice(0, 3).select(plain), name
    items = built["items"].to_pylist()
    product_of_item = {row["item_id"]: row["product_id"] for row in items}
    read = {product_of_item[i] for i in tables["reviews"]["item_id"].to_pylist()}
    shown = set(tables["products"]["product_id"].to_pylist())
    asked_names = _asked(log, "name")
    assert len(asked_names) == len(shown | read) < 7
    reviews = _asked(log, "review")
    assert len(reviews) == 3 and all('""' not in row["review"] for row in reviews)
    assert all(tables["reviews"]["review"].is_valid().to_pylist())
    assert tables["products"]["name"].null_count == 0


def test_a_multi_table_preview_fills_the_rows_it_shows_whatever_was_dropped(
    tmp_path: Path,
) -> None:
    """A constraint dropped early products, so the rows shown had row numbers past the rows
    asked for, and those were left empty; reviews read their product's name through a
    sampler column of items (`label`), and got it empty."""
    from llm_helpers import provider, simulator

    text = """
    name: shop
    seed: 5
    chunk_size: 400
    tables:
      - name: products
        rows: 60
        constraints: ["price > 50"]
        columns:
          - {name: product_id, type: sequence, primary_key: true}
          - {name: price, type: integer, min: 1, max: 100}
          - {name: name, type: llm, prompt: "A product name", max_length: 40}
      - name: items
        rows: 200
        columns:
          - {name: item_id, type: sequence, primary_key: true}
          - {name: product_id, type: reference, to: products.product_id}
          - {name: label, type: expression, template: "item of {{ products.name }}"}
      - name: reviews
        parent: items
        count: {distribution: poisson, mean: 0.5, max: 1}
        columns:
          - {name: review_id, type: sequence, primary_key: true}
          - {name: item_id, type: reference, to: items.item_id}
          - {name: text, type: llm, prompt: "A review about {{ items.label }}", max_length: 80}
    """
    with simulator(record=True) as sim:
        config = load_config(
            write(tmp_path, text + f"provider: {json.dumps(provider(sim.url))}\n", "shop")
        )
        tables = preview_tables(config, rows=5)
        asked = [row["text"] for row in _asked(sim.state.requests(), "text")]
    assert tables["products"]["name"].null_count == 0
    assert tables["reviews"]["text"].null_count == 0
    assert asked and all(not prompt.endswith("item of ") for prompt in asked), asked
    labels = tables["items"]["label"].to_pylist()
    assert all(label != "item of " for label in labels), labels


def test_a_siblings_list_of_llm_values_is_filled_for_the_parents_shown(tmp_path: Path) -> None:
    """A ticket lists its customer's orders' notes: the preview filled every order's note, each
    asked for with an empty related value; a constraint over llm values left rows shown
    empty (the rows it dropped shifted unfilled ones into view): it is not applied, and said."""
    from llm_helpers import provider, simulator

    text = """
    name: desk
    seed: 2
    chunk_size: 200
    tables:
      - name: customers
        rows: 60
        columns:
          - {name: customer_id, type: sequence, primary_key: true}
          - {name: tier, type: category, values: [basic, gold]}
      - name: orders
        parent: customers
        count: {distribution: poisson, mean: 2}
        constraints: [{name: long_note, check: "length(note) > 60"}]
        columns:
          - {name: order_id, type: sequence, primary_key: true}
          - {name: customer_id, type: reference, to: customers.customer_id}
          - {name: note, type: llm, prompt: "A note for a {{ customers.tier }} customer", max_length: 80}
      - name: tickets
        parent: customers
        count: {distribution: poisson, mean: 1}
        siblings: [{name: recent, table: orders, columns: [note], limit: 2}]
        columns:
          - {name: ticket_id, type: sequence, primary_key: true}
          - {name: customer_id, type: reference, to: customers.customer_id}
          - name: body
            type: llm
            prompt: "A ticket about {% for o in recent %}[{{ o.note }}]{% endfor %}"
            max_length: 80
    """
    with simulator(record=True) as sim:
        path = write(tmp_path, text + f"provider: {json.dumps(provider(sim.url))}\n", "desk")
        shown = runner.invoke(app, ["preview", str(path), "--rows", "3"])
        log = sim.state.requests()
        tables = preview_tables(load_config(path), rows=3)
    assert shown.exit_code == 0, shown.output
    assert "constraints over llm values (long_note) are not applied" in shown.output
    customers = set(tables["tickets"]["customer_id"].to_pylist())
    notes = _asked(log, "note")
    assert 3 <= len(notes) <= 3 + 2 * 3 * len(customers) < 60, len(notes)
    bodies = [row["body"] for row in _asked(log, "body")]
    assert len(bodies) == 3 and all("[]" not in body for body in bodies), bodies
    assert tables["orders"]["note"].null_count == 0 and tables["tickets"]["body"].null_count == 0
