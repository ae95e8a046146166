"""Per-column profile of a built dataset, computed by DuckDB from the rows its user reads:
the Parquet parts, or the DuckDB table when the output has no Parquet."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from synthaix.config import DatasetConfig, OutputPaths
from synthaix.dedupe.keys import key_columns
from synthaix.errors import OutputError
from synthaix.sqlexpr import quote

BINS = 20
TOP = 10
DATABASE = "synthaix_output"  # the output's DuckDB database, attached read-only


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


@dataclass(frozen=True)
class Source:
    """Where a table's rows are read: Parquet parts, or a table of a DuckDB database."""

    parts: tuple[str, ...] = ()
    database: str | None = None
    table: str = ""

    @property
    def sql(self) -> str:
        """The rows as SQL, on a connection from `sandboxed`."""
        if self.database is None:
            return parquet_source(list(self.parts))
        return f"{DATABASE}.main.{quote(self.table)}"


@dataclass
class DatasetProfile:
    rows: int
    columns: list[ColumnProfile]
    duplicate_rows: int | None  # None: no key columns to compare (see `duplicate_key`)
    sample: list[dict[str, Any]]
    sample_columns: list[str]
    source: Source = field(default_factory=Source)
    duplicate_key: list[str] = field(default_factory=list)

    def column(self, name: str) -> ColumnProfile:
        return next(c for c in self.columns if c.name == name)


def parts_of(output_dir: Path) -> list[str]:
    """The current build's Parquet parts (also kept for DuckDB-only outputs)."""
    return [str(p) for p in sorted((output_dir / ".current").resolve().glob("part-*.parquet"))]


def dataset_source(config: DatasetConfig, output_dir: Path) -> Source:
    """The rows of the single-table dataset built in `output_dir`, as its user reads them."""
    if "parquet" not in config.output.formats:
        return database_source(config, output_dir, config.table)
    parts = parts_of(output_dir)
    if not parts:
        raise FileNotFoundError(f"{output_dir} has no built dataset (no Parquet parts)")
    return Source(tuple(parts))


def database_source(config: OutputPaths, output_dir: Path, table: str) -> Source:
    """`table` in the output's DuckDB database. Without Parquet output, the DuckDB table is
    what the user gets (and may have changed): the parts kept for `append` are not it."""
    # The default database is in the output folder: found there even when the folder has
    # moved, or the report runs from another directory than the build did.
    default = config.output.duckdb is None
    path = output_dir / f"{config.name}.duckdb" if default else config.duckdb_path
    if not path.is_file():
        raise FileNotFoundError(f"{output_dir} has no built dataset (no DuckDB database {path})")
    return Source(database=str(path), table=table)


def sandboxed(sources: Iterable[Source]) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB that may read these sources and nothing else, for good: the SQL
    it runs holds config expressions. A database is attached read-only before file access is
    shut, so its folder need not be opened to them."""
    sources = list(sources)
    con = duckdb.connect()
    databases = sorted({s.database for s in sources if s.database is not None})
    assert len(databases) <= 1, databases  # a dataset's tables are in one database
    for database in databases:
        try:
            con.execute(f"ATTACH {sql_literal(database)} AS {DATABASE} (READ_ONLY)")
        except duckdb.Error as exc:
            con.close()
            raise OutputError(f"cannot read the DuckDB database {database}: {exc}") from exc
    folders = {f"{str(Path(p).parent).rstrip('/')}/" for s in sources for p in s.parts}
    con.execute("SET allowed_directories = ?", [sorted(folders)])
    con.execute("SET enable_external_access = false")
    # As the build's: a time-zone-aware value reads as it was made (a template over one was
    # rendered +00:00 by the build, +02:00 by a report in Berlin).
    con.execute("SET GLOBAL TimeZone = 'UTC'")
    con.execute("SET lock_configuration = true")
    for source in sources:
        if source.database is not None and not _has_table(con, source.table):
            con.close()
            raise FileNotFoundError(f"{source.database} has no table {source.table}")
    return con


def _has_table(con: duckdb.DuckDBPyConnection, table: str) -> bool:
    found = con.execute(  # lower(): DuckDB names are case-insensitive, even quoted
        "SELECT count(*) FROM duckdb_tables() WHERE database_name = ? AND schema_name = 'main' "
        "AND lower(table_name) = lower(?)",
        [DATABASE, table],
    ).fetchall()[0]
    return bool(found and found[0])


def source_view(source: Source) -> duckdb.DuckDBPyConnection:
    """A sandboxed DuckDB whose temp view `data` is the rows of `source`."""
    con = sandboxed([source])
    con.execute(f"CREATE TEMP VIEW data AS SELECT * FROM {source.sql}")
    return con


def as_source(rows: Source | list[str]) -> Source:
    """A source, from itself or from a list of Parquet parts."""
    return rows if isinstance(rows, Source) else Source(tuple(rows))


def sql_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def parquet_source(parts: list[str]) -> str:
    """`read_parquet([...])` over the parts, as SQL (views and COPY take no parameters)."""
    return f"read_parquet([{', '.join(sql_literal(p) for p in parts)}])"


def duplicate_key(config: DatasetConfig) -> list[str]:
    """The columns whose values make two rows duplicates: the exact dedupe's key (every
    column but generated ids and late columns, or `dedupe.key`), also when the dedupe is
    off, so the report shows what it would have dropped."""
    on = config.model_copy(update={"dedupe": config.dedupe.model_copy(update={"exact": True})})
    return key_columns(on)


def profile_dataset(output_dir: Path, sample_rows: int = 10) -> DatasetProfile:
    """The profile of the single-table dataset built in `output_dir`."""
    from synthaix.build.manifest import read_manifest

    config = read_manifest(output_dir).dataset_config()
    return profile_source(dataset_source(config, output_dir), duplicate_key(config), sample_rows)


def profile_source(source: Source, key: list[str], sample_rows: int = 10) -> DatasetProfile:
    with source_view(source) as con:
        rows = con.execute("SELECT count(*) FROM data").fetchall()[0][0]
        described = con.execute("DESCRIBE data").fetchall()
        columns = [_profile_column(con, name, sql_type, rows) for name, sql_type, *_ in described]
        types = {name: sql_type for name, sql_type, *_ in described}
        key = [name for name in key if name in types]
        duplicates = _duplicates(con, key, types, rows) if key else None
        cursor = con.execute(f"SELECT * FROM data LIMIT {int(sample_rows)}")
        names = [d[0] for d in cursor.description]
        sample = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    return DatasetProfile(rows, columns, duplicates, sample, names, source, key)


# What pyarrow's utf8_trim_whitespace (the dedupe's) trims, not only spaces as trim(x) does.
_WHITESPACE = " || ".join(f"chr({c})" for c in (32, 9, 10, 11, 12, 13, 160))


def _duplicates(
    con: duckdb.DuckDBPyConnection, key: list[str], types: dict[str, str], rows: int
) -> int:
    """Rows repeating an earlier row's key, compared as the exact dedupe compares them
    (text trimmed and case-folded)."""
    terms = ", ".join(
        f"lower(trim({quote(name)}, {_WHITESPACE}))" if types[name] == "VARCHAR" else quote(name)
        for name in key
    )
    query = f"SELECT count(*) FROM (SELECT DISTINCT {terms} FROM data)"
    (distinct,) = con.execute(query).fetchall()[0]
    return rows - distinct


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
        # Over DOUBLE: a DECIMAL(38, 37)'s sum overflows DuckDB's HUGEINT (the report failed).
        + (f"avg({spread}), stddev_samp({spread}), " if numeric else "NULL, NULL, ")
        + (f"max(length({col})), " if text else "NULL, ")
        + f"min({spread}), max({spread}) FROM data"
    ).fetchall()[0]
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
