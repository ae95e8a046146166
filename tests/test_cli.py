"""The command line as a user meets it: one-line errors, a summary, nothing written on bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
from typer.testing import CliRunner

from conftest import write_config
from synthaix.cli import app

runner = CliRunner()
CONFIG = {
    "name": "shop",
    "rows": 1200,
    "seed": 4,
    "chunk_size": 500,
    "columns": [
        {"name": "id", "type": "sequence"},
        {"name": "name", "type": "person.full_name"},
        {"name": "total", "type": "float", "min": 1, "max": 500, "decimals": 2},
    ],
}


def test_validate_reports_ok_and_errors(tmp_path: Path) -> None:
    good = write_config(tmp_path / "good.yaml", CONFIG)
    result = runner.invoke(app, ["validate", str(good)])
    assert result.exit_code == 0, result.output
    assert "is valid" in result.output and "person.full_name" in result.output

    bad = write_config(tmp_path / "bad.yaml", {**CONFIG, "rows": "many"})
    result = runner.invoke(app, ["validate", str(bad)])
    assert result.exit_code == 2
    assert f"{bad}:2: rows: Input should be a valid integer" in result.output
    assert "Traceback" not in result.output


def test_schema_exports_json_schema(tmp_path: Path) -> None:
    target = tmp_path / "schema.json"
    assert runner.invoke(app, ["schema", "-o", str(target)]).exit_code == 0
    schema = json.loads(target.read_text())
    single, tables = (schema["$defs"][ref["$ref"].split("/")[-1]] for ref in schema["anyOf"])
    assert "columns" in single["properties"] and "rows" in single["required"]
    assert "tables" in tables["properties"] and "tables" in tables["required"]


@pytest.mark.usefixtures("prefect_server")
def test_build_prints_summary_and_writes_outputs(tmp_path: Path) -> None:
    config = write_config(tmp_path / "shop.yaml", CONFIG)
    out = tmp_path / "result"
    result = runner.invoke(
        app, ["build", str(config), "--rows", "700", "--seed", "9", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "built shop: 700 rows" in result.output
    assert str(out / "shop.duckdb") in result.output
    with duckdb.connect(str(out / "shop.duckdb"), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM shop").fetchone()[0] == 700


def test_build_with_bad_config_fails_in_one_line_and_writes_nothing(tmp_path: Path) -> None:
    data = {**CONFIG, "columns": [{"name": "n", "type": "integer", "min": 5, "max": 1}]}
    config = write_config(tmp_path / "bad.yaml", data)
    out = tmp_path / "never"
    env = {**os.environ, "PREFECT_API_URL": "http://127.0.0.1:9/api"}  # Prefect is never reached
    result = subprocess.run(
        [sys.executable, "-m", "synthaix.cli", "build", str(config), "--out", str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 2
    assert "error: invalid config" in result.stderr
    assert "min (5) is greater than max (1)" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert not out.exists()
