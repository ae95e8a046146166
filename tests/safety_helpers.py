"""Fingerprints of a user's files and databases, to prove a build left them exactly as they were."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import duckdb


def file_sums(root: Path) -> dict[str, str]:
    """sha256 of every file below `root` (links by their target), keyed by relative path."""
    sums: dict[str, str] = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder) / name
            key = str(path.relative_to(root))
            if path.is_symlink():
                sums[key] = "-> " + os.readlink(path)
            elif path.is_file():
                sums[key] = hashlib.sha256(path.read_bytes()).hexdigest()
    return sums


def table_counts(database: Path) -> dict[str, int]:
    """Rows of every table of a DuckDB database, read as a user would."""
    with duckdb.connect(str(database), read_only=True) as con:
        names = [r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()]
        return {n: con.execute(f'SELECT count(*) FROM "{n}"').fetchone()[0] for n in names}


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 300):
    return subprocess.run(
        [sys.executable, "-m", "synthaix.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=timeout,
    )
