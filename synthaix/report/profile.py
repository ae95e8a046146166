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

    def column(self, name: str) -> ColumnProfile:
        return next(c for c in self.columns if c.name == name)


def parts_of(output_dir: Path) -> list[str]:
    """The current build's Parquet parts (also kept for DuckDB-only outputs)."""
    return [str(p) for p in sorted((output_dir / ".current").resolve().glob("part-*.parquet"))]


def sql_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def parquet_source(parts: list[str]) -> str:
    """`read_parquet([...])` over the parts, as SQL (views and COPY take no parameters)."""
    return f"read_parquet([{', '.join(sql_literal(p) for p in parts)}])"


def profile_dataset(output_dir: Path, sample_rows: int = 10) -> DatasetProfile:
    parts = parts_of(output_dir)
    if not parts:
        raise FileNotFoundError(f"{output_dir} has no built dataset (no Parquet parts)")
    with duckdb.connect() as con:
        con.execute(f"CREATE VIEW data AS SELECT * FROM {parquet_source(parts)}")
        rows = con.execute("SELECT count(*) FROM data").fetchone()[0]
        described = con.execute("DESCRIBE data").fetchall()
        columns = [_profile_column(con, name, sql_type, rows) for name, sql_type, *_ in described]
        distinct = con.execute("SELECT count(*) FROM (SELECT DISTINCT * FROM data)").fetchone()[0]
        cursor = con.execute(f"SELECT * FROM data LIMIT {int(sample_rows)}")
        names = [d[0] for d in cursor.description]
        sample = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    return DatasetProfile(rows, columns, rows - distinct, sample, names)


def _profile_column(
    con: duckdb.DuckDBPyConnection, name: str, sql_type: str, rows: int
) -> ColumnProfile:
    col = f'"{name}"'
    nulls, distinct, low, high = con.execute(
        f"SELECT count(*) - count({col}), count(DISTINCT {col}), min({col}), max({col}) FROM data"
    ).fetchone()
    profile = ColumnProfile(name, sql_type, rows, nulls, distinct, low, high)
    kind = sql_type.upper()
    if any(k in kind for k in ("INT", "DOUBLE", "FLOAT", "DECIMAL", "REAL")):
        profile.mean, profile.std = con.execute(
            f"SELECT avg({col}), stddev_samp({col}) FROM data"
        ).fetchone()
        profile.histogram = _histogram(con, col, f"{col}::DOUBLE")
    elif kind in ("DATE", "TIMESTAMP", "TIMESTAMP_S") or kind.startswith("TIMESTAMP"):
        profile.histogram = _histogram(con, col, f"epoch({col})")
    if "VARCHAR" in kind:
        profile.max_length = con.execute(f"SELECT max(length({col})) FROM data").fetchone()[0]
        if distinct > 0.5 * (rows - nulls):  # top values would all be 1s: show lengths instead
            profile.histogram = _histogram(con, col, f"length({col})::DOUBLE")
            profile.histogram_of = "length"
            return profile
    if not profile.histogram or distinct <= BINS:
        profile.top = con.execute(
            f"SELECT {col}, count(*) AS n FROM data WHERE {col} IS NOT NULL "
            f"GROUP BY 1 ORDER BY n DESC, 1 LIMIT {TOP}"
        ).fetchall()
    return profile


def _histogram(
    con: duckdb.DuckDBPyConnection, col: str, expr: str
) -> list[tuple[float, float, int]]:
    first, last = con.execute(f"SELECT min({expr}), max({expr}) FROM data").fetchone()
    if first is None:
        return []
    if first == last:  # one value: one bar
        count = con.execute(f"SELECT count({col}) FROM data").fetchone()[0]
        return [(float(first), float(last), count)]
    width = (float(last) - float(first)) / BINS or 1.0
    counts = dict(
        con.execute(
            f"SELECT least(floor(({expr} - ?) / ?)::INT, {BINS - 1}) AS b, count(*) "
            f"FROM data WHERE {col} IS NOT NULL GROUP BY b",
            [float(first), width],
        ).fetchall()
    )
    return [
        (float(first) + i * width, float(first) + (i + 1) * width, counts.get(i, 0))
        for i in range(BINS)
    ]
