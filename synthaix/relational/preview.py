"""A preview of a multi-table dataset: the first rows of every table, as a build makes them.

The tables are built into a temporary folder, read back, and the folder removed: nothing is
written where the config points. Each root table makes its whole first chunk (at least the
rows asked for), so values drawn per chunk match the build's; children come from their
counts. LLM columns stay empty when no provider can be used, as in a single-table preview.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from synthaix.build.executor import ThreadExecutor
from synthaix.relational.build import DatasetBuild
from synthaix.relational.config import RelationalConfig


def preview_tables(config: RelationalConfig, rows: int, llm: bool = True) -> dict[str, pa.Table]:
    """The first `rows` rows of each table, in build order."""
    with tempfile.TemporaryDirectory(prefix="synthaix-preview-") as folder:
        scratch = _scratch(config, rows, Path(folder) / "out")
        DatasetBuild(scratch, lambda table: ThreadExecutor(table, llm=llm)).run()
        data = Path(folder) / "out" / "data"
        return {
            name: pq.read_table(data / name).slice(0, rows).combine_chunks()
            for name in config.order
        }


def _scratch(config: RelationalConfig, rows: int, out: Path) -> RelationalConfig:
    data = config.model_dump(mode="python", by_alias=True)
    for table in data["tables"]:
        if table["parent"] is None:
            chunk = table["chunk_size"] or config.chunk_size
            table["rows"] = min(table["rows"], max(rows, chunk))
        table["dedupe"] = {**table["dedupe"], "uri": None}  # its table in `out`, not the user's
    data["mode"] = "overwrite"
    data["output"] = {**data["output"], "dir": out, "duckdb": None, "formats": ["parquet"]}
    return RelationalConfig.model_validate(data)
