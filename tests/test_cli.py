"""The command line as a user meets it: one-line errors, a summary, nothing written on bad input."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import threading
import time
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


def test_validate_checks_the_config_a_build_with_the_same_set_makes(tmp_path: Path) -> None:
    good = write_config(tmp_path / "good.yaml", CONFIG)
    result = runner.invoke(app, ["validate", str(good), "--set", "rows=77"])
    assert result.exit_code == 0 and "77 rows" in result.output, result.output
    result = runner.invoke(app, ["validate", str(good), "--set", "columns.total.min=900"])
    assert result.exit_code == 2 and "min" in result.output and "max" in result.output


def test_schema_exports_json_schema(tmp_path: Path) -> None:
    target = tmp_path / "schema.json"
    assert runner.invoke(app, ["schema", "-o", str(target)]).exit_code == 0
    schema = json.loads(target.read_text())
    single, tables = (schema["$defs"][ref["$ref"].split("/")[-1]] for ref in schema["anyOf"])
    assert "columns" in single["properties"] and "rows" in single["required"]
    assert "tables" in tables["properties"] and "tables" in tables["required"]
    assert runner.invoke(app, ["schema", "-o", str(target)]).exit_code == 0  # its own: again
    config = tmp_path / "mine.yaml"  # `schema -o mine.yaml` replaced a config with the schema
    config.write_text("name: mine\n")
    refused = runner.invoke(app, ["schema", "-o", str(config)])
    assert refused.exit_code == 2 and "exists" in refused.output
    assert config.read_text() == "name: mine\n"
    assert runner.invoke(app, ["schema", "-o", str(config), "--force"]).exit_code == 0


def test_validate_notes_what_the_embedder_needs_or_ignores(tmp_path: Path) -> None:
    """A near check over a category of 3 values caps the rows (the build failed after its
    rounds); a missing optional package and a price the embedder ignores get a note."""
    dedupe = {"text": ["name"], "embedder": "sentence-transformers", "price_per_million": 0.02}
    config = write_config(tmp_path / "shop.yaml", {**CONFIG, "dedupe": dedupe})
    result = runner.invoke(app, ["validate", str(config)])
    assert result.exit_code == 0, result.output
    assert "note: dedupe.price_per_million prices the openai embedder only" in result.output
    if importlib.util.find_spec("sentence_transformers") is None:
        assert "pip install 'synthaix[st]'" in result.output
    columns = [*CONFIG["columns"], {"name": "tier", "type": "category", "values": ["a", "b"]}]
    capped = {**CONFIG, "columns": columns, "dedupe": {"text": ["tier"]}}
    result = runner.invoke(app, ["validate", str(write_config(tmp_path / "tier.yaml", capped))])
    assert result.exit_code == 2
    assert "tier.yaml:" in result.output
    capped_at = "the near-duplicate check reads tier, which can take only 2 distinct texts"
    assert f"dedupe.text: {capped_at} but 1,200 rows are asked for" in result.output


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


@pytest.mark.usefixtures("prefect_server")
def test_a_build_without_a_terminal_prints_progress_lines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No bar without a terminal (CI logs, nohup): a plain progress line every PLAIN_EVERY
    seconds instead, counting up to the rows asked for, then one when publishing starts."""
    import synthaix.cli.build as build_command

    monkeypatch.setattr(build_command, "PLAIN_EVERY", 0.0)
    config = write_config(tmp_path / "shop.yaml", CONFIG)
    result = runner.invoke(app, ["build", str(config), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("shop: ")]
    counts = [line for line in lines if " rows" in line]
    done = [int(line.split(" of ")[0][len("shop: ") :].replace(",", "")) for line in counts]
    assert done and done == sorted(done)
    assert counts[-1].startswith("shop: 1,200 of 1,200 rows (100%), ")
    assert lines[-1] == "shop: publishing"
    assert "built shop: 1,200 rows" in result.output


@pytest.mark.usefixtures("prefect_server")
def test_plain_progress_lines_keep_coming_while_one_chunk_waits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A table of llm columns is often one chunk: lines came only as chunks finished, so a
    build of one slow chunk said nothing until its end."""
    from llm_helpers import provider, simulator

    import synthaix.cli.build as build_command

    monkeypatch.setattr(build_command, "PLAIN_EVERY", 0.3)
    with simulator(latency=2.0) as sim:
        columns = [{"name": "id", "type": "sequence"}, {"name": "note", "type": "llm"}]
        data = {"name": "notes", "rows": 10, "columns": columns, "provider": provider(sim.url)}
        config = write_config(tmp_path / "notes.yaml", data)
        result = runner.invoke(app, ["build", str(config), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "notes: 0 of 10 rows (0%), " in result.output


@pytest.mark.usefixtures("prefect_server")
def test_a_build_sends_its_runs_heartbeats_and_none_after_it(tmp_path: Path) -> None:
    """With a running server, the CLI sends the flow run's heartbeats itself (Prefect's thread,
    which the engine joins when the flow ends, held every build up by up to 1 s): one at the
    start, at the configured frequency, and none once the run has ended."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.sorting import FlowRunSort
    from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter
    from prefect.settings import temporary_settings

    config = write_config(tmp_path / "shop.yaml", CONFIG)
    command = ["build", str(config), "--rows", "100", "--out", str(tmp_path / "out")]
    with temporary_settings(updates={"flows.heartbeat_frequency": 30}):
        result = runner.invoke(app, command)
    assert result.exit_code == 0, result.output
    deadline = time.monotonic() + 5
    while any(t.name == "synthaix-heartbeat" for t in threading.enumerate()):
        assert time.monotonic() < deadline, "the heartbeat thread outlived the build"
        time.sleep(0.05)
    with get_client(sync_client=True) as client:
        run = client.read_flow_runs(sort=FlowRunSort.START_TIME_DESC, limit=1)[0]
        assert run.state is not None and run.state.is_completed()
        beats = EventFilter(
            event=EventNameFilter(name=["prefect.flow-run.heartbeat"]),
            resource=EventResourceFilter(id=[f"prefect.flow-run.{run.id}"]),
        )
        deadline = time.monotonic() + 30  # events reach the server's store in the background
        while not (events := client.read_events(filter=beats, limit=10).events):
            assert time.monotonic() < deadline, "no heartbeat reached the server"
            time.sleep(0.5)
    assert len(events) == 1
    assert run.start_time is not None and run.end_time is not None
    assert run.start_time <= events[0].occurred <= run.end_time
    assert [r.role for r in events[0].related] == ["flow"]


def test_prefects_own_heartbeat_thread_is_off_while_the_cli_sends_them() -> None:
    from prefect.settings import get_current_settings, temporary_settings

    from flows.heartbeat import Heartbeats

    with temporary_settings(updates={"flows.heartbeat_frequency": 45}):
        with Heartbeats() as beats:
            assert beats.every == 45 and get_current_settings().flows.heartbeat_frequency is None
        assert get_current_settings().flows.heartbeat_frequency == 45


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


def test_preview_takes_set_as_build_does(tmp_path: Path) -> None:
    config = write_config(tmp_path / "shop.yaml", CONFIG)
    command = ["preview", str(config), "--rows", "50", "--format", "jsonl"]
    result = runner.invoke(app, [*command, "--set", "columns.total.max=2", "--set", "seed=7"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.output.splitlines()]
    assert len(rows) == 50 and all(1 <= row["total"] <= 2 for row in rows)
    wrong = runner.invoke(app, [*command, "--set", "columns.totl.max=2"])
    assert wrong.exit_code == 2 and "no item named 'totl'" in wrong.output


def test_a_wide_preview_is_split_into_tables_that_fit_the_terminal(tmp_path: Path) -> None:
    """22 columns squeezed into 80 characters printed their names a letter a line."""
    columns = [{"name": "customer_id", "type": "uuid"}]
    columns += [
        {"name": f"amount_{i}", "type": "integer", "min": 1, "max": 10**6} for i in range(21)
    ]
    config = write_config(tmp_path / "wide.yaml", {"name": "wide", "rows": 5, "columns": columns})
    result = runner.invoke(app, ["preview", str(config), "--rows", "3"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert max(map(len, lines)) <= 80 and "wide: first 3 rows (seed 0), columns 1-" in lines[0]
    headers = "".join(lines)
    assert all(f" {c['name']} " in headers for c in columns)  # each name whole, on one line


def test_preview_of_an_llm_config_whose_endpoint_is_down_shows_rows_at_once(
    tmp_path: Path,
) -> None:
    """One quick check of the endpoint (no retries for the whole timeout), then the rows with
    llm columns empty: a dedupe key with an llm column is off, as the build's rows may repeat
    the other columns (10 rows of 4 cities; it made only 4, or 1 before)."""
    columns = [
        {"name": "id", "type": "sequence"},
        {"name": "city", "type": "category", "values": ["Oslo", "Lima", "Pune", "Kyiv"]},
        {"name": "bio", "type": "llm", "prompt": "A one-line bio of someone from {{ city }}"},
    ]
    provider = {"base_url": "http://127.0.0.1:9/v1", "model": "sim-small", "timeout": 60}
    config = write_config(
        tmp_path / "bios.yaml",
        {"name": "bios", "rows": 100, "seed": 1, "columns": columns, "provider": provider},
    )
    started = time.monotonic()
    result = runner.invoke(app, ["preview", str(config), "--rows", "10", "--format", "jsonl"])
    assert result.exit_code == 0, result.output
    assert time.monotonic() - started < 30  # not the 60 s timeout, retried
    lines = result.output.splitlines()
    assert "llm columns left empty: cannot reach" in lines[0]
    rows = [json.loads(line) for line in lines[1:]]
    assert [row["id"] for row in rows] == list(range(1, 11))
    assert all(row["bio"] is None for row in rows)


def test_a_tables_summary_says_why_rows_were_redrawn() -> None:
    """A table's line said `25,922 redrawn` with no cause, where one table's summary names it."""
    from synthaix.build.manifest import Dropped
    from synthaix.cli.build import _redrawn

    dropped = Dropped(
        exact_duplicate=25922, invalid=3, constraint={"after_signup": 7}, in_chunks=10
    )
    assert _redrawn(dropped) == (
        "3 with no valid LLM value, 25,922 exact duplicates, 7 breaking after_signup"
    )
    # A row breaking both constraints is one row redrawn (the line read as 10,253 + 16,010).
    both = Dropped(constraint={"a": 10253, "b": 16010}, in_chunks=24286)
    assert _redrawn(both) == (
        "24,286 breaking constraints (a 10,253, b 16,010; a row may break several)"
    )
    assert _redrawn(Dropped()) == ""
    # Resumed chunks bring rows left out without their causes: with no constraint, those
    # rows had no valid LLM value (summaries said "broke a constraint 7").
    resumed = Dropped(invalid=5, in_chunks=12)
    assert _redrawn(resumed) == "12 with no valid LLM value"
    assert resumed.causes() == "12: invalid 12"


def test_sim_on_a_taken_port_says_so_with_a_fix() -> None:
    """It printed a traceback ending in OSError: Address already in use."""
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        command = [sys.executable, "-m", "synthaix.cli", "sim", "--port", str(port)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert f"error: sim: cannot listen on 127.0.0.1:{port}: Address already in use" in done.stderr
    assert "--port 0: a free one" in done.stderr and "Traceback" not in done.stderr
