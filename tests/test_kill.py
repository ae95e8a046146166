"""A build killed at 20 random moments, across generation and publishing, by SIGKILL and
SIGTERM: after every kill the previous output (or the complete new one) reads in DuckDB with
the right row count, no process of the build is left, and the next build succeeds."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import psutil
import pytest
from prefect.settings import get_current_settings
from safety_helpers import table_counts
from typer.testing import CliRunner

from conftest import write_config
from synthaix.cli import app

runner = CliRunner()

KILLS = 20
SIZES = (20_000, 40_000)  # each build changes the row count, so old and new tell apart
COLUMNS = [
    {"name": "id", "type": "sequence"},
    {"name": "name", "type": "person.full_name"},
    {"name": "email", "type": "person.email"},
    {"name": "v", "type": "float", "min": 0, "max": 1000, "decimals": 3},
    {"name": "day", "type": "date", "start": "2024-01-01", "end": "2024-12-31"},
]


def _build(config: Path, rows: int, temporary_server: bool) -> subprocess.Popen[str]:
    api = "" if temporary_server else get_current_settings().api.url
    return subprocess.Popen(
        [sys.executable, "-m", "synthaix.cli", "build", str(config), "--rows", str(rows)],
        env={**os.environ, "PREFECT_API_URL": api or ""},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _published(out: Path) -> tuple[int, int]:
    with_rows = table_counts(out / "people.duckdb")["people"]
    with duckdb.connect(str(out / "people.duckdb"), read_only=True) as con:
        distinct = con.execute("SELECT count(DISTINCT id) FROM people").fetchone()[0]
    return with_rows, distinct


def _wait_until(moment: str, out: Path, before: set[str], build: subprocess.Popen[str]) -> None:
    """Until the build generates (its staging folder appears) or publishes (its version folder
    appears), or has exited."""
    while build.poll() is None:
        if moment == "generating" and any((out / ".staging").glob("*")):
            return
        if moment == "publishing" and {p.name for p in (out / ".versions").iterdir()} - before:
            return
        time.sleep(0.002)


@pytest.mark.usefixtures("prefect_server")
def test_kills_at_random_moments_never_break_the_output(tmp_path: Path) -> None:
    rng = random.Random(2026)
    out = tmp_path / "out"
    data = {"name": "people", "rows": SIZES[0], "chunk_size": 5000, "columns": COLUMNS}
    data["output"] = {"dir": str(out)}
    config = write_config(tmp_path / "people.yaml", data)
    first = _build(config, SIZES[0], temporary_server=False)
    started = time.monotonic()
    assert first.wait(timeout=300) == 0, first.communicate()[1]
    duration = time.monotonic() - started
    current = SIZES[0]
    outcomes: dict[str, int] = {}

    for kill in range(KILLS):
        target = SIZES[1] if current == SIZES[0] else SIZES[0]
        how = signal.SIGKILL if kill % 2 == 0 else signal.SIGTERM
        temporary = kill % 7 == 3  # some builds run their own temporary Prefect server
        moment = ("starting", "generating", "publishing", "publishing", "generating")[kill % 5]
        before = {p.name for p in (out / ".versions").iterdir()}
        build = _build(config, target, temporary)
        if moment == "starting":
            time.sleep(rng.uniform(0.2, duration / 2))
        else:
            _wait_until(moment, out, before, build)
            time.sleep(rng.uniform(0, 1.0 if moment == "generating" else 0.15))
        family = psutil.Process(build.pid).children(recursive=True) if build.poll() is None else []
        build.send_signal(how)
        _, stderr = build.communicate(timeout=30)
        _, alive = psutil.wait_procs(family, timeout=10)
        assert not alive, f"kill {kill}: left {[p.cmdline() for p in alive]}"

        rows, distinct = _published(out)
        assert rows == distinct and rows in (current, target), (kill, rows, current, target)
        if "nothing published" in stderr:
            assert rows == current, f"kill {kill}: said nothing was published, but it was"
        if "interrupted" in stderr and "published; interrupted" in stderr:
            assert rows == target, f"kill {kill}: said it published, but it had not"
        outcome = f"{how.name} {moment}: "
        outcome += "new" if rows == target and rows != current else "previous"
        outcomes[outcome] = outcomes.get(outcome, 0) + 1

        after = runner.invoke(app, ["build", str(config), "--rows", str(target)])
        assert after.exit_code == 0, f"kill {kill}: {after.output}"  # the next build succeeds
        assert _published(out) == (target, target)
        current = target
        staging = out / ".staging"
        assert not staging.exists() or not list(staging.rglob("*"))

    print(f"\n{KILLS} kills: " + ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items())))
