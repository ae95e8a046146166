"""The core library never imports Prefect, and the commands that need neither Prefect nor
LanceDB do not load them: they stay fast and usable on their own."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import write_config

CORE = Path(__file__).resolve().parents[1] / "synthaix"


def _run(code: str) -> None:
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_no_core_module_imports_prefect() -> None:
    modules = sorted(
        ".".join(path.relative_to(CORE.parent).with_suffix("").parts)
        for path in CORE.rglob("*.py")
        if "cli" not in path.relative_to(CORE).parts and path.name != "__main__.py"
    )
    modules = [m.removesuffix(".__init__") for m in modules]
    assert "synthaix.build.engine" in modules and len(modules) > 30
    _run(
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('prefect', 'flows', 'tasks'))\n"
        "assert not bad, bad\n"
    )


@pytest.mark.parametrize(
    "command",
    [
        ["validate", "{config}"],
        ["preview", "{config}", "--rows", "20"],
        ["preview", "{config}", "--rows", "5", "--format", "jsonl"],
        ["schema"],
    ],
)
def test_commands_without_prefect_lancedb_or_jinja2(tmp_path: Path, command: list[str]) -> None:
    """Jinja2 (~30 ms) loads with a config's first template: this one has none."""
    data = {
        "name": "people",
        "rows": 100,
        "columns": [
            {"name": "id", "type": "sequence"},
            {"name": "name", "type": "person.full_name"},
            {"name": "code", "type": "integer", "min": 1, "max": 10**6, "unique": True},
        ],
    }
    config = write_config(tmp_path / "people.yaml", data)
    args = [part.format(config=config) for part in command]
    _run(
        "import sys\n"
        "from synthaix.cli import app\n"
        "try:\n"
        f"    app({args!r})\n"
        "except SystemExit as exc:\n"
        "    assert not exc.code, exc.code\n"
        "heavy = ('prefect', 'lancedb', 'jinja2')\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in heavy)\n"
        "assert not bad, bad\n"
    )


def test_a_build_with_exact_dedupe_alone_does_not_load_lancedb(tmp_path: Path) -> None:
    data = {
        "name": "codes",
        "rows": 50,
        "columns": [{"name": "code", "type": "integer", "min": 1, "max": 10**6}],
        "output": {"dir": str(tmp_path / "out")},
    }
    config = write_config(tmp_path / "codes.yaml", data)
    _run(
        "import sys\n"
        "from synthaix.build.engine import Build\n"
        "from synthaix.build.executor import ThreadExecutor\n"
        "from synthaix.config import load_config\n"
        f"config = load_config({str(config)!r})\n"
        "manifest = Build(config, ThreadExecutor(config)).run()\n"
        "assert manifest.rows.delivered == 50 and manifest.dedupe.files, manifest.dedupe\n"
        "assert 'lancedb' not in sys.modules\n"
    )


def test_validate_loads_no_database_or_llm_client(tmp_path: Path) -> None:
    """`validate` is a start-up cost users wait for: DuckDB, tenacity, openai and Faker load
    only where a database is opened, a request sent or a value made (checking a shared
    `dedupe.uri` with no database there yet included)."""
    column = {"name": "n", "type": "integer", "min": 0, "max": 9}
    dedupe = {"uri": str(tmp_path / "shared-lance")}
    data = {"name": "t", "rows": 10, "columns": [column], "dedupe": dedupe}
    config = write_config(tmp_path / "t.yaml", data)
    _run(
        "import sys\n"
        "from synthaix.cli import app\n"
        "try:\n"
        f"    app(['validate', {str(config)!r}])\n"
        "except SystemExit as exc:\n"
        "    assert not exc.code, exc.code\n"
        "heavy = ('duckdb', 'tenacity', 'openai', 'faker', 'prefect', 'lancedb')\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in heavy)\n"
        "assert not bad, bad\n"
    )
    assert not (tmp_path / "shared-lance").exists()


def test_the_package_exports_load_on_first_use() -> None:
    """`import synthaix` is light (the CLI tunes Python's collector before the config models
    load); its exports are the config module's own."""
    _run(
        "import sys\n"
        "import synthaix\n"
        "assert 'synthaix.config' not in sys.modules and 'numpy' not in sys.modules\n"
        "from synthaix import DatasetConfig, SynthaixError, load_config\n"
        "from synthaix import config\n"
        "assert DatasetConfig is config.DatasetConfig and load_config is config.load_config\n"
        "try:\n"
        "    synthaix.Missing\n"
        "except AttributeError as exc:\n"
        "    assert 'Missing' in str(exc)\n"
        "else:\n"
        "    raise AssertionError('synthaix.Missing resolved')\n"
    )
