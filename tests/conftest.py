from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import yaml

# Set before Prefect is imported anywhere, so test runs are quiet and offline.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "CRITICAL")

from synthaix.config import DatasetConfig, parse_config
from synthaix.generate import generate_chunk, plan_chunks


def make_config(columns: list[dict[str, Any]], **overrides: Any) -> DatasetConfig:
    """A config of these columns. Exact dedupe is off unless `dedupe` is given: columns are
    tested over more rows than their few values make distinct rows (validate refuses such an
    exact-dedupe key), and `generate_all` draws with repeats anyway."""
    data: dict[str, Any] = {"name": "t", "rows": 1000, "seed": 1, "chunk_size": 250}
    data["dedupe"] = {"exact": False}
    data.update(overrides)
    data["columns"] = columns
    return parse_config(data)


def generate_all(config: DatasetConfig) -> pa.Table:
    """All planned chunks of a config, generated directly (no Prefect, no uniqueness filter)."""
    chunks = plan_chunks(config.rows, config.chunk_size)
    return pa.concat_tables(generate_chunk(config, c).table for c in chunks)


def write_config(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[None]:
    """One temporary Prefect server (SQLite in a temp dir) for every flow test."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


class NoteListener:
    """A progress listener that keeps the build's notes (the others are not needed)."""

    def __init__(self) -> None:
        self.notes: list[str] = []

    def note(self, text: str) -> None:
        self.notes.append(text)

    def __getattr__(self, name: str) -> Any:
        return lambda *args: None  # started, advanced, published...
