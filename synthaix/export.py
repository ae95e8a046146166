"""Export a built dataset to CSV, JSON Lines or a single Parquet file, atomically."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import duckdb

from synthaix.errors import OutputError
from synthaix.report.profile import parquet_source, parts_of, sql_literal

Format = Literal["csv", "jsonl", "parquet"]
_COPY = {"csv": "FORMAT csv, HEADER true", "jsonl": "FORMAT json", "parquet": "FORMAT parquet"}


def export_dataset(
    output_dir: Path, fmt: Format, target: Path | None = None, overwrite: bool = False
) -> Path:
    parts = parts_of(output_dir)
    if not parts:
        raise OutputError(f"{output_dir} has no built dataset", hint="run synthaix build first")
    name = _dataset_name(output_dir)
    chosen = target is not None
    if target is None or target.is_dir():
        target = (target or output_dir) / f"{name}.{fmt}"
    if chosen and target.exists() and not overwrite:  # a file of the user's, maybe
        raise OutputError(f"{target} exists", hint="choose another -o path, or add --force")
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.tmp")
    try:
        with duckdb.connect() as con:
            con.execute(
                f"COPY (SELECT * FROM {parquet_source(parts)}) "
                f"TO {sql_literal(str(temporary))} ({_COPY[fmt]})"
            )
        temporary.replace(target)
    finally:
        temporary.unlink(missing_ok=True)
    return target


def _dataset_name(output_dir: Path) -> str:
    manifest = output_dir / "manifest.json"
    if manifest.is_file():
        return str(json.loads(manifest.read_text(encoding="utf-8"))["dataset"])
    return output_dir.name
