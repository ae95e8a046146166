"""A preview of a multi-table dataset: the first rows of every table, as a build makes them.

The tables are built into a temporary folder, read back, and the folder removed: nothing is
written where the config points. Each root table makes its whole first chunk (at least the
rows asked for), so values drawn per chunk match the build's; children come from their
counts. A child that sets `rows` (an exact total shared out between its parents) gets that
total scaled as its parents are, so each parent's children average what the build gives them;
should the scaled total not fit the parents drawn (a parent that is itself a child without
`rows`, or bounds per `by` value), the preview falls back to the children's counts alone. LLM
columns stay empty when no provider can be used, as in a single-table preview. A preview of
one table builds only the tables it reads.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from synthaix.build.executor import ThreadExecutor
from synthaix.errors import ConfigError
from synthaix.relational.build import DatasetBuild
from synthaix.relational.config import RelationalConfig, TableConfig, needed_for
from synthaix.relational.counts import total_bounds


def preview_tables(
    config: RelationalConfig, rows: int, llm: bool = True, only: str | None = None
) -> dict[str, pa.Table]:
    """The first `rows` rows of each table, in build order; with `only`, of that table, built
    with just the tables it needs (the others' LLM columns would be paid for nothing)."""
    keep = needed_for(config, only) if only is not None else config.order
    with tempfile.TemporaryDirectory(prefix="synthaix-preview-") as folder:
        out = Path(folder) / "out"
        scratch, scaled = _scratch(config, rows, out, keep)
        try:
            DatasetBuild(scratch, lambda table: ThreadExecutor(table, llm=llm)).run()
        except ConfigError:
            if not scaled:  # the build itself would stop there too
                raise
            # A scaled total that the parents drawn cannot take: the counts alone instead.
            scratch, _ = _scratch(config, rows, out, keep, totals=False)
            DatasetBuild(scratch, lambda table: ThreadExecutor(table, llm=llm)).run()
        data = out / "data"
        shown = keep if only is None else [only]
        return {name: pq.read_table(data / name).slice(0, rows).combine_chunks() for name in shown}


def _scratch(
    config: RelationalConfig,
    rows: int,
    out: Path,
    keep: list[str] | None = None,
    totals: bool = True,
) -> tuple[RelationalConfig, bool]:
    """The config the preview builds into `out` (of the tables `keep`, which hold every table
    they read), and whether a child's `rows` was scaled.

    Root tables make at most their first chunk. Each table's scale is its preview rows over
    its build rows (a child's, its parent's). A child's `rows` total is scaled with its
    parent, within what its parents' count bounds can reach (the rule the config checks);
    `totals=False` drops the scaled totals, leaving the counts (a child without `count`
    gets a Poisson count of the mean a build would share out)."""
    keep = config.order if keep is None else keep
    data = config.model_dump(mode="python", by_alias=True)
    data["tables"] = [table for table in data["tables"] if table["name"] in keep]
    tables = {table["name"]: table for table in data["tables"]}
    scale: dict[str, float] = {}
    known: dict[str, int | None] = {}  # preview rows, when fixed before the build
    scaled = False
    for name in keep:
        table, spec = tables[name], config.table(name)
        if spec.parent is None:
            chunk = spec.chunk_size or config.chunk_size
            assert spec.rows is not None  # a root table sets rows
            table["rows"] = min(spec.rows, max(rows, chunk))
            scale[name], known[name] = table["rows"] / spec.rows, table["rows"]
            continue
        scale[name] = scale[spec.parent]
        if spec.rows is None or scale[name] == 1.0:  # counts alone, or the build's total
            known[name] = spec.rows
            continue
        scaled = True
        if totals:
            table["rows"] = known[name] = _scaled_total(spec, scale[name], known[spec.parent])
            continue
        table["rows"] = known[name] = None
        if spec.count is None:
            mean = spec.rows / max(config.plan(spec.parent).estimated_rows, 1.0)
            table["count"] = {"distribution": "poisson", "mean": mean}
    for table in data["tables"]:
        table["dedupe"] = {**table["dedupe"], "uri": None}  # its table in `out`, not the user's
    data["mode"] = "overwrite"
    data["output"] = {**data["output"], "dir": out, "duckdb": None, "formats": ["parquet"]}
    return RelationalConfig.model_validate(data), scaled


def _scaled_total(spec: TableConfig, scale: float, parents: int | None) -> int:
    """`spec.rows` times `scale`, within [parents x min, parents x max] when the preview's
    parents are known (as the config's check requires of the build's total)."""
    total = max(1, round(spec.rows * scale))
    if parents is None or spec.count is None:
        return total
    low, high = total_bounds(spec.count, parents)
    total = max(total, low)
    return total if high is None else min(total, high)
