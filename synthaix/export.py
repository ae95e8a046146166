"""Export a built dataset to CSV, JSON Lines or a single Parquet file, atomically.

A multi-table dataset (`tables:`) is exported one table at a time: `table` names it (it may
be left out when the dataset has a single table). Without a target the file goes into the
build's output folder, `<dataset>.<fmt>` (one table) or `<table>.<fmt>` (a table of a
multi-table dataset), and may replace only an export SynthAIx wrote there (`.exports.json`
fingerprints each: a file of the user's of that name, or an export edited since, is not one);
a target of the user's (a file, or a file in a folder they name) that exists is never
overwritten unless `overwrite`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import duckdb
import pyarrow as pa

from synthaix.columns.refs import table_hint
from synthaix.errors import OutputError
from synthaix.files import hidden_temporary, recorded_export, remember_export
from synthaix.relational.manifest import DatasetManifest, is_dataset_manifest
from synthaix.report.profile import parquet_source, parts_of, sql_literal

Format = Literal["csv", "jsonl", "parquet"]
_COPY = {"csv": "FORMAT csv, HEADER true", "jsonl": "FORMAT json", "parquet": "FORMAT parquet"}


def export_dataset(
    output_dir: Path,
    fmt: Format,
    target: Path | None = None,
    overwrite: bool = False,
    table: str | None = None,
    folder: bool = False,
) -> Path:
    """`target`: the file, or (`folder`, or an existing folder) the folder to write into."""
    name, parts = _parts(output_dir, table)
    chosen = target is not None
    if target is None or folder or target.is_dir():
        target = (target or output_dir) / f"{name}.{fmt}"
    ours = not chosen and bool(recorded_export(target))
    if target.exists() and not overwrite and not ours:
        hint = "choose another -o path, or add --force"
        if not chosen:  # a file of the user's in the output folder, or one edited since
            hint = "it is not an export SynthAIx wrote there (or was edited): move it away, " + hint
        raise OutputError(f"{target} exists", hint=hint)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = hidden_temporary(target)
    try:
        with duckdb.connect() as con:
            con.execute("SET TimeZone = 'UTC'")  # as built: no machine's offset on a value
            con.execute(
                f"COPY (SELECT * FROM {parquet_source(parts)}) "
                f"TO {sql_literal(str(temporary))} ({_COPY[fmt]})"
            )
        temporary.replace(target)
    finally:
        temporary.unlink(missing_ok=True)
    if target.parent.resolve() == output_dir.resolve():
        remember_export(target)
    return target


def write_rows(table: pa.Table, fmt: Format, target: Path) -> None:
    """Rows in the export's format (DuckDB's writers: `preview --format` prints what an export
    of the built rows holds, numbers and timestamps alike)."""
    with duckdb.connect() as con:
        con.execute("SET TimeZone = 'UTC'")
        con.register("preview_rows", table)
        con.execute(f"COPY preview_rows TO {sql_literal(str(target))} ({_COPY[fmt]})")


def _parts(output_dir: Path, table: str | None) -> tuple[str, list[str]]:
    """The name to export under (the dataset's, or the table's) and its current parts."""
    path = output_dir / "manifest.json"
    text = path.read_text(encoding="utf-8") if path.is_file() else ""
    if is_dataset_manifest(text):
        return _table_parts(output_dir, DatasetManifest.parse(text, str(path)).order, table)
    parts = parts_of(output_dir)
    if not parts:
        raise OutputError(f"{output_dir} has no built dataset", hint="run synthaix build first")
    name = _dataset_name(text) or output_dir.name
    if table is not None and table != name:
        raise OutputError(
            f"{output_dir} holds one table, {name}, not {table}",
            hint=f"leave out --table (or pass --table {name})",
        )
    return name, parts


def _dataset_name(manifest_text: str) -> str | None:
    """The dataset's name, read leniently: a manifest of another SynthAIx version still
    names it, and exporting needs nothing else of it."""
    try:
        data = json.loads(manifest_text)
    except ValueError:
        return None
    return str(data["dataset"]) if isinstance(data, dict) and data.get("dataset") else None


def _table_parts(output_dir: Path, names: list[str], table: str | None) -> tuple[str, list[str]]:
    """The chosen table of a multi-table dataset, and its current Parquet parts."""
    listed = ", ".join(names)
    if table is None:
        if len(names) != 1:
            raise OutputError(
                f"{output_dir} holds {len(names)} tables: {listed}; export writes one",
                hint=f"choose one with --table, e.g. --table {names[0]}",
            )
        table = names[0]
    elif table not in names:
        raise OutputError(
            f"{output_dir} has no table '{table}'; its tables: {listed}",
            hint=table_hint(table, names),
        )
    folder = (output_dir / ".current" / table).resolve()
    parts = [str(p) for p in sorted(folder.glob("part-*.parquet"))]
    if not parts:
        raise OutputError(
            f"{output_dir} has no built table {table}", hint="run synthaix build first"
        )
    return table, parts
