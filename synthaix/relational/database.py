"""Publishing every table of a multi-table dataset into one DuckDB database, in one
transaction: readers see the old tables or the new ones, never a mix.

Tables are declared with their PRIMARY KEY and FOREIGN KEYs (DuckDB then checks every row
as it loads), created parents first; the previous build's tables of this dataset are dropped
children first. Tables of the database that are not this dataset's are never touched.
Self references are not declared: DuckDB checks a foreign key row by row against rows
already stored, and would refuse a row pointing at one loaded in the same statement.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from synthaix.duckdb_sink import _quote, check_unchanged, comment_table, publishing
from synthaix.relational.sink import TableOutput


def publish_tables(
    path: Path, dataset: str, build_id: str, tables: list[TableOutput], foreign_keys: bool
) -> None:
    with publishing(path, [t.name for t in tables], dataset, False, in_tables=True) as con:
        for table in tables:
            if table.loaded:
                check_unchanged(con, path, table.name, table.loaded)
        for name in _ours_children_first(con, dataset):
            con.execute(f"DROP TABLE {_quote(name)}")
        for table in tables:  # in build order: parents first
            con.execute(_create(con, table, foreign_keys))
            con.execute(
                f"INSERT INTO {_quote(table.name)} SELECT * FROM read_parquet(?)",
                [[str(p) for p in table.parts]],
            )
            comment_table(con, table.name, dataset, build_id)


def _create(con: duckdb.DuckDBPyConnection, table: TableOutput, foreign_keys: bool) -> str:
    described = con.execute(
        "DESCRIBE SELECT * FROM read_parquet(?)", [[str(p) for p in table.parts]]
    ).fetchall()
    lines = [f"{_quote(name)} {kind}" for name, kind, *_ in described]
    if table.primary_key:
        lines.append(f"PRIMARY KEY ({', '.join(map(_quote, table.primary_key))})")
    lines += [f"UNIQUE ({_quote(column)})" for column in table.unique]  # what references point at
    for column, target, key in table.foreign_keys if foreign_keys else []:
        if target != table.name:
            lines.append(
                f"FOREIGN KEY ({_quote(column)}) REFERENCES {_quote(target)} ({_quote(key)})"
            )
    return f"CREATE TABLE {_quote(table.name)} (\n  " + ",\n  ".join(lines) + "\n)"


def _ours_children_first(con: duckdb.DuckDBPyConnection, dataset: str) -> list[str]:
    """This dataset's tables now in the database, each before the tables it references."""
    rows = con.execute(
        "SELECT table_name FROM duckdb_tables() WHERE schema_name = 'main' AND "
        "starts_with(comment, ?)",
        [f"synthaix:{dataset}:"],
    ).fetchall()
    ours = [r[0] for r in rows]
    refs = con.execute(
        "SELECT table_name, referenced_table FROM duckdb_constraints() "
        "WHERE constraint_type = 'FOREIGN KEY' AND schema_name = 'main'"
    ).fetchall()
    needs = {name: {t for n, t in refs if n == name and t != name} for name in ours}
    order: list[str] = []
    while len(order) < len(ours):
        # A table goes once nothing left still references it.
        left = [n for n in ours if n not in order]
        free = [n for n in left if not any(n in needs[o] for o in left if o != n)]
        order.append((free or left)[0])
    return order
