"""`synthaix build CONFIG...` as a user runs it: several configs (or a folder) checked first, then
built in one Prefect session, one line each; options applied to every config."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from conftest import write_config
from synthaix.asof import derived_seed

ROOT = Path(__file__).resolve().parents[1]
NO_SERVER = "http://127.0.0.1:9/api"  # for runs that must fail before reaching Prefect
COLUMNS = [
    {"name": "id", "type": "sequence"},
    {"name": "name", "type": "person.full_name"},
    {"name": "v", "type": "float", "min": 0, "max": 1000, "decimals": 3},
]


def _config(folder: Path, file: str, name: str, out: Path, **fields: Any) -> Path:
    data = {"name": name, "rows": 60, "seed": 3, "chunk_size": 50, "columns": COLUMNS}
    return write_config(folder / file, {**data, **fields, "output": {"dir": str(out)}})


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect-home"), **extra}
    if "PREFECT_API_URL" not in extra:
        env.pop("PREFECT_API_URL", None)  # a temporary server, as a user without one gets
    return env


def _start(tmp_path: Path, *args: str, **env: str) -> subprocess.Popen[str]:
    """The CLI in its own process, its output in files (never a full pipe)."""
    command = [sys.executable, "-m", "synthaix.cli", "build", *args]
    stdout, stderr = (open(tmp_path / name, "w") for name in ("stdout", "stderr"))  # noqa: SIM115
    with stdout, stderr:
        return subprocess.Popen(
            command, cwd=ROOT, env=_env(tmp_path, **env), stdout=stdout, stderr=stderr, text=True
        )


def _servers(build: subprocess.Popen[str]) -> set[int]:
    """The temporary Prefect servers (flows.server_process) the build runs now. A process a
    server forks shows the server's command line until it execs (CI once saw one): it is no
    second server."""
    found: dict[int, int] = {}  # pid -> parent pid
    with contextlib.suppress(psutil.Error):
        for child in psutil.Process(build.pid).children(recursive=True):
            with contextlib.suppress(psutil.Error):
                if "flows.server_process" in " ".join(child.cmdline()):
                    found[child.pid] = child.ppid()
    return {pid for pid, parent in found.items() if parent not in found}


def _finish(build: subprocess.Popen[str], timeout: float = 300) -> set[int]:
    """Wait for the build, noting every temporary server it started (each lives for seconds:
    polling 10 times a second sees them all)."""
    servers: set[int] = set()
    deadline = time.monotonic() + timeout
    while build.poll() is None:
        servers |= _servers(build)
        if time.monotonic() > deadline:
            build.kill()
            raise AssertionError("the build did not end in time")
        time.sleep(0.1)
    return servers


def _output(tmp_path: Path) -> tuple[str, str]:
    return (tmp_path / "stdout").read_text(), (tmp_path / "stderr").read_text()


def _flat(text: str) -> str:
    """Text as one line, without the frame Typer draws around usage errors."""
    return " ".join(text.replace("│", " ").split())


def test_batch_builds_the_valid_configs_in_one_prefect_session(tmp_path: Path) -> None:
    """A folder (its *.yaml and *.yml) and a file: the invalid config is reported and skipped,
    the other two build, one temporary server for both; options apply to each."""
    folder = tmp_path / "configs"
    folder.mkdir()
    _config(folder, "a.yaml", "alpha", tmp_path / "out" / "alpha")
    _config(folder, "b.yml", "beta", tmp_path / "out" / "beta", rows=40)
    (folder / "notes.txt").write_text("not a config")
    bad = _config(tmp_path, "bad.yaml", "bad", tmp_path / "out" / "bad")
    bad.write_text(bad.read_text().replace("max: 1000", "max: -1"))
    options = ["--workers", "2", "--chunk-size", "7", "--set", "locale=de_DE", "--rows", "30"]
    options += ["--seed", "as_of", "--as-of", "2025-03-01T10:00"]

    build = _start(tmp_path, str(folder), str(bad), *options)
    servers = _finish(build)
    stdout, stderr = _output(tmp_path)

    assert build.returncode == 2, stderr
    lines = stdout.splitlines()
    assert len(lines) == 4, stdout  # one a dataset, then the counts
    assert lines[0].startswith(f"failed {bad}: invalid config {bad} (1 problem): ")
    assert "min (0) is greater than max (-1)" in lines[0]
    assert lines[1].startswith("built alpha: 30 rows in ") and "rows/s" in lines[1]
    assert lines[2].startswith("built beta: 30 rows in ")
    assert lines[3] == "2 built, 1 failed"
    assert f"error: invalid config {bad}" in stderr and "Traceback" not in stderr
    assert len(servers) == 1, f"one temporary Prefect server for the batch, saw {servers}"
    for name in ("alpha", "beta"):
        manifest = json.loads((tmp_path / "out" / name / "manifest.json").read_text())
        config = manifest["config"]
        assert (config["runner"]["workers"], config["chunk_size"]) == (2, 7)
        assert (config["locale"], config["rows"]) == ("de_DE", 30)
        assert config["seed"] == "as_of"
        assert manifest["seed"] == derived_seed(dt.datetime(2025, 3, 1, 10))
    assert not (tmp_path / "out" / "bad").exists()


def test_interrupt_stops_the_batch_and_says_what_was_published(tmp_path: Path) -> None:
    """Ctrl-C during the second build: it stops at once, names the dataset it stopped, and says
    the first one is published; the third never starts."""
    first = _config(tmp_path, "1.yaml", "first", tmp_path / "out" / "first")
    big = {"rows": 3_000_000, "chunk_size": 20_000}
    second = _config(tmp_path, "2.yaml", "second", tmp_path / "out" / "second", **big)
    third = _config(tmp_path, "3.yaml", "third", tmp_path / "out" / "third")
    build = _start(tmp_path, str(first), str(second), str(third))
    deadline = time.monotonic() + 180
    while not any((tmp_path / "out" / "second").glob("**/*.parquet")):  # the second is building
        assert build.poll() is None and time.monotonic() < deadline, _output(tmp_path)
        time.sleep(0.05)
    build.send_signal(signal.SIGINT)
    build.wait(timeout=60)
    stdout, stderr = _output(tmp_path)

    assert build.returncode == 128 + signal.SIGINT, stderr
    assert stdout.splitlines()[0].startswith("built first: 60 rows")
    assert "interrupted (SIGINT) while building second: nothing of second published" in stderr
    assert "built and published: first; not built: third" in stderr
    assert f"to finish it, build only: {second} {third} (with the same options)" in stderr
    assert not (tmp_path / "out" / "second" / "manifest.json").exists()
    assert not list((tmp_path / "out" / "second").glob(".staging/*/*")), "staged parts removed"
    assert not (tmp_path / "out" / "third").exists()


def test_options_are_checked_before_anything_runs(tmp_path: Path) -> None:
    """Bad option values are refused by the option itself, with its name; nothing starts."""
    config = _config(tmp_path, "a.yaml", "alpha", tmp_path / "out")
    cases = {
        ("--seed", "soon"): "'soon' is neither an integer nor as_of",
        ("--as-of", "yesterday"): "'yesterday' is not an ISO date-time",
        ("--set", "runner.workers"): "--set 'runner.workers' is not key.path=value",
        ("--workers", "0"): "Invalid value for '--workers'",
    }
    for args, message in cases.items():
        build = _start(tmp_path, str(config), *args, PREFECT_API_URL=NO_SERVER)
        build.wait(timeout=120)
        stdout, stderr = _output(tmp_path)
        assert build.returncode == 2, (args, stderr)
        assert message in _flat(stderr), (args, stderr)
        assert "Traceback" not in stdout + stderr
    assert not (tmp_path / "out").exists()


def test_rows_zero_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    config = _config(tmp_path, "a.yaml", "alpha", tmp_path / "out")
    build = _start(tmp_path, str(config), "--rows", "0", PREFECT_API_URL=NO_SERVER)
    build.wait(timeout=120)
    _, stderr = _output(tmp_path)
    text = _flat(stderr)
    assert build.returncode == 2
    assert "Invalid value for '--rows'" in text
    assert "greater than or equal to 1" in text or "x>=1" in text
    assert not (tmp_path / "out").exists()


def test_two_configs_writing_one_output_are_refused_before_anything_is_written(
    tmp_path: Path,
) -> None:
    out = tmp_path / "out" / "shared"
    a = _config(tmp_path, "a.yaml", "alpha", out)
    b = _config(tmp_path, "b.yaml", "beta", out)
    c = _config(tmp_path, "c.yaml", "gamma", tmp_path / "out" / "gamma")
    build = _start(tmp_path, str(a), str(b), str(c), PREFECT_API_URL=NO_SERVER)
    build.wait(timeout=120)
    stdout, stderr = _output(tmp_path)
    text = _flat(stderr)

    assert build.returncode == 2, stderr
    assert f"{a} and {b} both write {out}" in text
    assert "hint: give each config its own output.dir" in text
    assert "built" not in stdout and "Traceback" not in stderr
    assert not (tmp_path / "out").exists()

    # --out applies to every config of a batch: the same refusal.
    build = _start(tmp_path, str(a), str(c), "--out", str(out), PREFECT_API_URL=NO_SERVER)
    build.wait(timeout=120)
    _, stderr = _output(tmp_path)
    assert build.returncode == 2 and f"{a} and {c} both write {out}" in _flat(stderr)
    assert not (tmp_path / "out").exists()


def test_two_configs_writing_one_dedupe_table_are_refused(tmp_path: Path) -> None:
    """A dataset's table in a shared dedupe.uri is named after the dataset: two configs of one
    name would replace each other's. Another name in the same database is fine."""
    shared = {"uri": str(tmp_path / "dedupe-db")}
    a = _config(tmp_path, "a.yaml", "alpha", tmp_path / "out" / "a", dedupe=shared)
    b = _config(tmp_path, "b.yaml", "alpha", tmp_path / "out" / "b", dedupe=shared)
    build = _start(tmp_path, str(a), str(b), PREFECT_API_URL=NO_SERVER)
    build.wait(timeout=120)
    stdout, stderr = _output(tmp_path)

    assert build.returncode == 2, stderr
    assert f"{a} and {b} both write the dedupe table alpha in {shared['uri']}" in _flat(stderr)
    assert "its own name" in _flat(stderr) and "built" not in stdout
    assert not (tmp_path / "out").exists() and not (tmp_path / "dedupe-db").exists()

    c = _config(tmp_path, "c.yaml", "gamma", tmp_path / "out" / "c", dedupe=shared)
    build = _start(tmp_path, str(a), str(c), "--rows", "5")
    _finish(build)
    stdout, stderr = _output(tmp_path)
    assert build.returncode == 0, stderr
    assert "built alpha" in stdout and "built gamma" in stdout


def test_tables_that_keep_no_dedupe_table_do_not_clash(tmp_path: Path) -> None:
    """A table of a multi-table dataset checks duplicates only when asked: with a shared
    dedupe.uri and one name, two datasets clash only if they both keep a table there."""
    from synthaix.cli.build import _distinct_outputs
    from synthaix.config import parse_any_config
    from synthaix.errors import ConfigError

    def shop(folder: str, exact: bool) -> Any:
        table = {"name": "customers", "rows": 5, "columns": COLUMNS[:2]}
        table["dedupe"] = {"uri": str(tmp_path / "lance"), "exact": exact}
        data = {"name": "shop", "tables": [table], "output": {"dir": str(tmp_path / folder)}}
        return parse_any_config(data)

    _distinct_outputs([(Path("a.yaml"), shop("a", False)), (Path("b.yaml"), shop("b", False))])
    _distinct_outputs([(Path("a.yaml"), shop("a", True)), (Path("b.yaml"), shop("b", False))])
    with pytest.raises(ConfigError, match="both write the dedupe table customers"):
        _distinct_outputs([(Path("a.yaml"), shop("a", True)), (Path("b.yaml"), shop("b", True))])
