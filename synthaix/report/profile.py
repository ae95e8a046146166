"""Per-column profile of a built dataset, computed by DuckDB straight from the Parquet parts."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

BINS = 20
TOP = 10


@dataclass
class ColumnProfile:
    name: str
    sql_type: str
    rows: int
    nulls: int
    distinct: int
    minimum: Any = None
    maximum: Any = None
    mean: float | None = None
    std: float | None = None
    max_length: int | None = None
    top: list[tuple[Any, int]] = field(default_factory=list)
    histogram: list[tuple[float, float, int]] = field(default_factory=list)  # (from, to, count)
    histogram_of: str = "values"  # or "length", for text where almost every value is distinct

    @property
    def null_rate(self) -> float:
        return self.nulls / self.rows if self.rows else 0.0

    @property
    def numeric(self) -> bool:
        return self.mean is not None


@dataclass
class DatasetProfile:
    rows: int
    columns: list[ColumnProfile]
    duplicate_rows: int
    sample: list[dict[str, Any]]
    sample_columns: list[str]
    parts: list[str] = field(default_factory=list)  # the Parquet files profiled

    def column(self, name: str) -> ColumnProfile:
        return next(c for c in self.columns if c.name == name)


def parts_of(output_dir: Path) -> list[str]:
    """The current build's Parquet parts (also kept for DuckDB-only outputs)."""
    return [str(p) for p in sorted((output_dir / ".current").resolve().glob("part-*.parquet"))]


def sandboxed(folders: set[str]) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB that may read files in `folders` and nothing else, for good."""
    con = duckdb.connect()
    con.execute("SET allowed_directories = ?", [sorted(f"{f.rstrip('/')}/" for f in folders)])
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")
    return con


def parts_view(parts: list[str]) -> duckdb.DuckDBPyConnection:
    """A sandboxed DuckDB whose temp view `data` is the rows of these Parquet parts."""
    con = sandboxed({str(Path(p).parent) for p in parts})
    con.execute(f"CREATE TEMP VIEW data AS SELECT * FROM {parquet_source(parts)}")
    return con


def sql_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def parquet_source(parts: list[str]) -> str:
    """`read_parquet([...])` over the parts, as SQL (views and COPY take no parameters)."""
    return f"read_parquet([{', '.join(sql_literal(p) for p in parts)}])"


def profile_dataset(output_dir: Path, sample_rows: int = 10) -> DatasetProfile:
    parts = parts_of(output_dir)
    if not parts:
        raise FileNotFoundError(f"{output_dir} has no built dataset (no Parquet parts)")
    return profile_parts(parts, sample_rows)


def profile_parts(parts: list[str], sample_rows: int = 10) -> DatasetProfile:
    with duckdb.connect() as con:
        con.execute(f"CREATE VIEW data AS SELECT * FROM {parquet_source(parts)}")
        rows = con.execute("SELECT count(*) FROM data").fetchone()[0]
        described = con.execute("DESCRIBE data").fetchall()
        columns = [_profile_column(con, name, sql_type, rows) for name, sql_type, *_ in described]
        distinct = con.execute("SELECT count(*) FROM (SELECT DISTINCT * FROM data)").fetchone()[0]
        cursor = con.execute(f"SELECT * FROM data LIMIT {int(sample_rows)}")
        names = [d[0] for d in cursor.description]
        sample = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    return DatasetProfile(rows, columns, rows - distinct, sample, names, parts)


def _profile_column(
    con: duckdb.DuckDBPyConnection, name: str, sql_type: str, rows: int
) -> ColumnProfile:
    col, kind = f'"{name}"', sql_type.upper()
    numeric = any(k in kind for k in ("INT", "DOUBLE", "FLOAT", "DECIMAL", "REAL"))
    text = not numeric and "VARCHAR" in kind
    if numeric:
        spread = f"{col}::DOUBLE"  # what the histogram bins
    elif kind == "DATE" or kind.startswith("TIMESTAMP"):
        spread = f"epoch({col})"
    else:
        spread = f"length({col})::DOUBLE" if text else "NULL::DOUBLE"
    stats = con.execute(
        f"SELECT count(*) - count({col}), count(DISTINCT {col}), min({col}), max({col}), "
        + (f"avg({col}), stddev_samp({col}), " if numeric else "NULL, NULL, ")
        + (f"max(length({col})), " if text else "NULL, ")
        + f"min({spread}), max({spread}) FROM data"
    ).fetchone()
    profile = ColumnProfile(name, sql_type, rows, *stats[:7])
    nulls, distinct, first, last = stats[0], stats[1], stats[7], stats[8]
    many = distinct > 0.5 * (rows - nulls)  # top values of text would all be 1s: show lengths
    if first is not None and (many or not text):
        profile.histogram = _histogram(con, col, spread, first, last, rows - nulls)
        if text:
            profile.histogram_of = "length"
            return profile
    if not profile.histogram or distinct <= BINS:
        profile.top = con.execute(
            f"SELECT {col}, count(*) AS n FROM data WHERE {col} IS NOT NULL "
            f"GROUP BY 1 ORDER BY n DESC, 1 LIMIT {TOP}"
        ).fetchall()
    return profile


def _histogram(
    con: duckdb.DuckDBPyConnection, col: str, expr: str, first: Any, last: Any, count: int
) -> list[tuple[float, float, int]]:
    first, last = float(first), float(last)
    if first == last:  # one value: one bar
        return [(first, last, count)]
    width = (last - first) / BINS or 1.0
    counts = dict(
        con.execute(
            f"SELECT least(floor(({expr} - ?) / ?)::INT, {BINS - 1}) AS b, count(*) "
            f"FROM data WHERE {col} IS NOT NULL GROUP BY 1",
            [first, width],
        ).fetchall()
    )
    return [(first + i * width, first + (i + 1) * width, counts.get(i, 0)) for i in range(BINS)]
