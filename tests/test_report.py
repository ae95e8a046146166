"""Manifest, quality report, preview and export: what users see of a build."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from conftest import make_config, write_config
from synthaix.build.manifest import Manifest, config_hash, new_manifest, read_manifest
from synthaix.cli import app
from synthaix.config import parse_config
from synthaix.export import export_dataset
from synthaix.generate import dataset_schema, generate_chunk, plan_chunks
from synthaix.report.checks import run_checks
from synthaix.report.html import write_report
from synthaix.report.profile import profile_dataset
from synthaix.sink import MANIFEST_KEY, DatasetWriter

SECRET = "sk-live-do-not-leak-4242"
COLUMNS = [
    {"name": "id", "type": "sequence"},
    {"name": "n", "type": "integer", "min": 1, "max": 100},
    {"name": "size", "type": "category", "values": {"S": 0.2, "M": 0.5, "L": 0.3}},
    {"name": "code", "type": "integer", "min": 1, "max": 3000, "unique": True},
    {"name": "when", "type": "date", "start": "2024-01-01", "end": "2024-03-31", "nullable": 0.1},
    {"name": "flag", "type": "boolean", "p": 0.3},
]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, prefect_server: None) -> Path:
    """One flow build with a secret in the environment and credentials in $OPENAI_BASE_URL
    (a config may not hold them: provider.base_url refuses user:password@)."""
    from flows.build_dataset import build_dataset

    tmp = tmp_path_factory.mktemp("report")
    os.environ["OPENAI_API_KEY"] = SECRET
    os.environ["OPENAI_BASE_URL"] = "https://bob:hunter2@llm.example/v1"
    try:
        config = write_config(
            tmp / "d.yaml",
            {
                "name": "items",
                "description": f"Items (the key {SECRET} must be redacted)",
                "rows": 2000,
                "chunk_size": 400,
                "columns": COLUMNS,
                "output": {"dir": str(tmp / "out")},
            },
        )
        build_dataset(config_path=str(config))
    finally:
        del os.environ["OPENAI_API_KEY"], os.environ["OPENAI_BASE_URL"]
    return tmp / "out"


def test_manifest_matches_the_data(built: Path) -> None:
    manifest = read_manifest(built)
    with duckdb.connect(str(built / "items.duckdb"), read_only=True) as con:
        count, codes = con.execute("SELECT count(*), count(DISTINCT code) FROM items").fetchone()
    assert manifest.rows.delivered == manifest.rows.total == count == codes == 2000
    generated, dropped = manifest.rows.generated, manifest.dropped
    assert dropped.unique_value > 0  # 2,000 unique codes out of 3,000 need redraws
    assert generated >= count + dropped.unique_value
    assert manifest.config_hash == config_hash(parse_config(manifest.config))
    assert set(manifest.seconds) == {"prepare", "generate"}
    assert {"pyarrow", "duckdb", "prefect"} <= set(manifest.versions)
    last = sorted((built / "data").glob("part-*.parquet"))[-1]
    assert Manifest.model_validate_json(pq.read_metadata(last).metadata[MANIFEST_KEY]) == manifest
    assert json.loads((built / "manifest.json").read_text())["manifest_version"] == 2


def test_report_profiles_and_passes_on_its_own_data(built: Path) -> None:
    path = write_report(built)
    html = path.read_text()
    assert "<svg" in html and "Constraint checks" in html and "FAIL" not in html
    dropped = read_manifest(built).dropped
    assert f"<span class=muted>dropped</span><b>{dropped.total:,}</b>" in html
    profile = profile_dataset(built)
    assert profile.rows == 2000 and profile.duplicate_rows == 0
    assert profile.column("n").histogram and dict(profile.column("size").top).keys() == {
        "S",
        "M",
        "L",
    }


def test_checks_fail_on_data_that_violates_the_config(built: Path) -> None:
    profile = profile_dataset(built)
    config = read_manifest(built).config
    strict = {c["name"]: c for c in config["columns"]}
    strict["n"]["max"] = 50  # data goes to 100
    strict["size"]["values"] = {"S": 0.6, "M": 0.2, "L": 0.2}  # data follows 0.2/0.5/0.3
    strict["when"]["nullable"] = 0.0  # data has 10% nulls
    strict["flag"]["p"] = 0.9
    failed = {(c.column, c.name) for c in run_checks(parse_config(config), profile) if not c.passed}
    assert {
        ("n", "range"),
        ("n", "mean"),
        ("size", "share of S"),
        ("when", "null rate"),
        ("flag", "share true"),
    } <= failed


def test_no_secret_anywhere(built: Path) -> None:
    write_report(built)
    for path in [built / "manifest.json", built / "report.html", *(built / "data").glob("*")]:
        data = path.read_bytes()
        assert SECRET.encode() not in data and b"hunter2" not in data, path


def test_export_formats(built: Path, tmp_path: Path) -> None:
    for fmt in ("csv", "jsonl", "parquet"):
        path = export_dataset(built, fmt, tmp_path / f"items.{fmt}")
        reader = {"csv": "read_csv_auto", "jsonl": "read_json_auto", "parquet": "read_parquet"}
        with duckdb.connect() as con:
            assert (
                con.execute(f"SELECT count(*) FROM {reader[fmt]}('{path}')").fetchone()[0] == 2000
            )


def test_preview_shows_rows_and_writes_nothing(tmp_path: Path) -> None:
    config = write_config(tmp_path / "p.yaml", {"name": "p", "rows": 2000, "columns": COLUMNS})
    before = sorted(tmp_path.rglob("*"))
    result = subprocess.run(
        [sys.executable, "-m", "synthaix.cli", "preview", str(config), "--rows", "5"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert result.returncode == 0, result.stderr
    assert "first 5 rows" in result.stdout and "size" in result.stdout
    assert sorted(tmp_path.rglob("*")) == before


def test_report_command_on_a_directory_without_a_build(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 2 and "error:" in result.output


@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs Debian's chromium")
def test_report_renders_in_headless_chromium(built: Path, tmp_path: Path) -> None:
    report = write_report(built)
    shot = tmp_path / "report.png"
    subprocess.run(
        [
            "chromium",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--window-size=1280,2000",
            f"--screenshot={shot}",
            report.as_uri(),
        ],
        capture_output=True,
        timeout=120,
        check=True,
    )
    assert shot.stat().st_size > 20_000  # a rendered page, not a blank one


def test_sink_writes_manifest_into_the_last_part(tmp_path: Path) -> None:
    config = make_config(COLUMNS[:2], rows=90, chunk_size=40, output={"dir": str(tmp_path)})
    with DatasetWriter(config, dataset_schema(config)) as writer:
        for chunk in plan_chunks(90, 40):
            writer.write(generate_chunk(config, chunk).table)
        manifest = new_manifest(
            config, writer.build_id, rows={"delivered": 90, "total": 90, "generated": 90}
        )
        writer.commit(manifest)
    parts = sorted((tmp_path / "data").glob("part-*.parquet"))
    assert len(parts) == 3
    assert MANIFEST_KEY not in (pq.read_metadata(parts[0]).metadata or {})
    assert (
        Manifest.model_validate_json(pq.read_metadata(parts[-1]).metadata[MANIFEST_KEY]) == manifest
    )


def test_report_and_export_guide_users_who_pass_the_wrong_path(built: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["report", str(built / "manifest.json")])
    assert result.exit_code == 2 and "not the output directory of a build" in result.output
    path = export_dataset(built, "csv", tmp_path)  # a directory: file named after the dataset
    assert path == tmp_path / "items.csv" and not list(tmp_path.glob(".*.tmp"))


def test_ctrl_c_stops_a_build_and_keeps_the_previous_output(built: Path, tmp_path: Path) -> None:
    import signal
    import time

    before = (built / "items.duckdb").read_bytes()
    config = write_config(
        tmp_path / "big.yaml",
        {
            "name": "items",
            "rows": 50_000_000,
            "chunk_size": 200_000,
            "columns": [{"name": "id", "type": "sequence"}, {"name": "v", "type": "uuid"}],
            "output": {"dir": str(built)},
        },
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "synthaix.cli", "build", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not list((built / ".staging").glob("*/part-*")) and time.monotonic() < deadline:
        time.sleep(0.5)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130 and "interrupted" in err and "Traceback" not in err
    assert (built / "items.duckdb").read_bytes() == before


def test_a_decimal_of_high_scale_is_profiled(tmp_path: Path) -> None:
    """avg() of a DECIMAL(38, 37) overflowed DuckDB's HUGEINT: the report failed on a valid
    dataset."""
    from synthaix.build.engine import Build
    from synthaix.build.executor import ThreadExecutor

    columns = [
        {"name": "id", "type": "sequence"},
        {"name": "third", "type": "sql", "expr": "CAST(id % 3 AS DECIMAL(38,0)) / 3"},
    ]
    columns[1]["as"] = "decimal(38,37)"
    config = make_config(columns, rows=5000, dedupe={"exact": False}, output={"dir": str(tmp_path)})
    Build(config, ThreadExecutor(config)).run()
    write_report(tmp_path)
    third = profile_dataset(tmp_path).column("third")
    assert third.mean is not None and abs(float(third.mean) - 1 / 3) < 0.01
