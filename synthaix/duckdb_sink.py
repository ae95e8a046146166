"""Publishing a dataset's table into a DuckDB database, which may be the user's own.

The file is never replaced: the table is loaded under a temporary name and swapped in by rename,
in one transaction, so readers see the old table or the new one and every other table of the
database is left as it was. A table SynthAIx made carries the comment `synthaix:<dataset>:<build>`;
a table of the same name without it belongs to someone else and is never dropped.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from synthaix import progress
from synthaix.errors import OutputError
from synthaix.ownership import check_creatable, check_writable
from synthaix.sqlexpr import quote as _quote

if TYPE_CHECKING:  # imported where a database is opened: `validate` and `preview` never do
    import duckdb

MAGIC = b"DUCK"  # bytes 8-11 of every DuckDB database file
LOCK_WAIT = 60.0  # seconds to wait for another build's publish into the same file
_process_locks: dict[Path, threading.Lock] = {}
_process_locks_guard = threading.Lock()


def table_comment(dataset: str, build_id: str) -> str:
    return f"synthaix:{dataset}:{build_id}"


def check_target(
    path: Path,
    table: str,
    dataset: str,
    legacy: bool,
    in_tables: bool = False,
    builds: set[str] | None = None,
) -> None:
    """Refuse, before anything is written, a target SynthAIx may not publish into.
    `in_tables`: the table is one of a multi-table dataset's (named under tables:). `builds`:
    the builds the output folder holds; a table of this dataset made by none of them is
    another output's (two outputs sharing one database replaced each other's table)."""
    if not path.exists() and not path.is_symlink():
        check_creatable(path)
        return
    if not path.is_file():
        raise OutputError(f"output.duckdb {path} is not a file", hint="point it at a .duckdb file")
    if not is_duckdb_file(path):
        raise OutputError(
            f"output.duckdb {path} is not a DuckDB database; SynthAIx publishes into DuckDB "
            "databases only and never replaces another file",
            hint="choose another output.duckdb path",
        )
    import duckdb

    try:
        con = duckdb.connect(str(path), read_only=True)
    except duckdb.Error as exc:
        raise _open_error(path, exc) from exc
    with con:
        _check_owner(con, path, table, dataset, legacy, in_tables)
        found = _find_table(con, table)
    prefix = f"synthaix:{dataset}:"
    comment = (found[1] or "") if found else ""
    if builds is not None and comment.startswith(prefix) and comment[len(prefix) :] not in builds:
        raise OutputError(
            f"table '{table}' in {path} holds the dataset {dataset} of another output (build "
            f"{comment[len(prefix) :]}, not one of this output's); two outputs sharing a "
            "database would replace each other's table, so nothing was written",
            hint="give each output its own output.duckdb, or drop that table yourself if it may go",
        )
    check_writable(path.parent)  # DuckDB writes a .wal file beside the database


def publish(
    path: Path,
    table: str,
    dataset: str,
    build_id: str,
    parts: list[Path],
    legacy: bool,
    loaded: list[Path] | None = None,
) -> None:
    """Load `parts` as `table` and swap it in, in one transaction. `loaded`: the parts the
    table now holds (an append's earlier ones), to refuse replacing a table changed since."""
    stage = f"__synthaix_stage_{build_id.replace('-', '_')}"
    with publishing(path, [table], dataset, legacy) as con:
        if loaded:
            check_unchanged(con, path, table, loaded)
        con.execute(
            f"CREATE TABLE {_quote(stage)} AS SELECT * FROM read_parquet(?)",
            [[str(p) for p in parts]],
        )
        con.execute(f"DROP TABLE IF EXISTS {_quote(table)}")
        con.execute(f"ALTER TABLE {_quote(stage)} RENAME TO {_quote(table)}")
        comment_table(con, table, dataset, build_id)


@contextlib.contextmanager
def publishing(
    path: Path, tables: list[str], dataset: str, legacy: bool, in_tables: bool = False
) -> Iterator[duckdb.DuckDBPyConnection]:
    """A connection inside one transaction, committed when the block ends: nothing of
    SynthAIx's is published if it fails. `tables` must be ours (or new) first."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with _process_lock(path):
        con = _connect_waiting(path)
        try:
            for table in tables:
                _check_owner(con, path, table, dataset, legacy, in_tables)
            progress.publishing()  # from here until the sink says published, an interrupt waits
            con.execute("BEGIN TRANSACTION")
            yield con
            con.execute("COMMIT")
        except BaseException:
            _rollback(con)
            progress.not_published()
            raise
        finally:
            con.close()


def fingerprint(con: duckdb.DuckDBPyConnection, rows: str) -> tuple[int, int]:
    """The row count and the sum of the row hashes of the SQL `rows`: equal for the same rows
    in any order, computed streaming (a full compare held whole rows in memory)."""
    ((count, summed),) = con.execute(
        f"SELECT count(*), coalesce(sum(hash(r)::HUGEINT), 0) FROM (SELECT * FROM {rows}) r"
    ).fetchall()
    return int(count), int(summed)


def check_unchanged(
    con: duckdb.DuckDBPyConnection, path: Path, table: str, loaded: list[Path]
) -> None:
    """Refuse to replace our `table` when it no longer holds what it was loaded from (the
    Parquet parts `loaded`): rows added, deleted or updated, columns added, dropped or
    retyped. An append loads the table anew from the Parquet: those changes would be lost."""
    from synthaix.report.profile import parquet_source  # as duckdb: when a database opens

    if _find_table(con, table) is None:
        return  # dropped by the user: loaded anew
    parquet = parquet_source([str(p) for p in loaded])
    columns = con.execute(f"DESCRIBE {_quote(table)}").fetchall()
    expected = con.execute(f"DESCRIBE SELECT * FROM {parquet}").fetchall()
    changed = []
    if [c[:2] for c in columns] != [c[:2] for c in expected]:
        names = {c[0] for c in columns} ^ {c[0] for c in expected}
        changed.append(f"other columns ({', '.join(sorted(names)) or 'types changed'})")
    else:
        (rows, mine), (stored, theirs) = fingerprint(con, _quote(table)), fingerprint(con, parquet)
        if rows != stored:
            changed.append(f"{rows:,} rows where its Parquet holds {stored:,}")
        elif mine != theirs:
            changed.append("values changed")
    if changed:
        raise OutputError(
            f"table '{table}' in {path} was changed since SynthAIx published it "
            f"({'; '.join(changed)}); an append loads the table anew from the Parquet and "
            "would lose those changes, so nothing was written",
            hint=f"keep your changes in a table of your own (CREATE TABLE mine AS SELECT * "
            f"FROM {table}), then DROP TABLE {table} and build again (the dataset's rows come "
            "back from the Parquet)",
        )


def comment_table(con: duckdb.DuckDBPyConnection, table: str, dataset: str, build: str) -> None:
    """Mark `table` as this dataset's, made by `build` (what _check_owner reads)."""
    comment = table_comment(dataset, build).replace("'", "''")
    con.execute(f"COMMENT ON TABLE {_quote(table)} IS '{comment}'")


def published_build(path: Path, table: str, dataset: str, strict: bool = False) -> str | None:
    """The build whose table the database holds now (None: no table of ours). `strict`: a
    database that cannot be read raises (OutputError) instead of reading as None."""
    if not path.is_file() or not is_duckdb_file(path):
        return None
    try:
        with _connect_waiting(path, read_only=True) as con:
            found = _find_table(con, table)
    except OutputError:
        if strict:
            raise
        return None
    comment = found[1] if found else None
    prefix = f"synthaix:{dataset}:"
    return comment[len(prefix) :] if comment and comment.startswith(prefix) else None


def is_duckdb_file(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            return handle.read(12)[8:12] == MAGIC
    except OSError:
        return False


def _check_owner(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    table: str,
    dataset: str,
    legacy: bool,
    in_tables: bool,
) -> None:
    rename = (
        f"give table '{table}' another name under tables:"
        if in_tables
        else "set output.table to another name"
    )
    views = con.execute(  # lower(): names are case-insensitive (see _find_table)
        "SELECT view_name FROM duckdb_views() WHERE schema_name = 'main' "
        "AND lower(view_name) = lower(?)",
        [table],
    ).fetchall()
    if views:
        raise OutputError(
            f"{path} has a view named '{views[0][0]}'; SynthAIx never replaces it",
            hint=f"{rename}, or set output.duckdb to another file",
        )
    found = _find_table(con, table)
    if found is None:
        return
    table, comment = found[0], found[1] or ""
    if comment.startswith(f"synthaix:{dataset}:") or (legacy and not comment):
        _check_not_referenced(con, path, table, dataset)
        return  # ours (a 0.1 build made its database file whole and left no comment)
    owner = "made by another SynthAIx dataset" if comment else "not made by SynthAIx"
    raise OutputError(
        f"table '{table}' in {path} was {owner}; SynthAIx replaces only its own tables, and "
        "nothing was written",
        hint=f"{rename}, or set output.duckdb to another file, or drop that table yourself if "
        "it may go",
    )


def _check_not_referenced(
    con: duckdb.DuckDBPyConnection, path: Path, table: str, dataset: str
) -> None:
    """A table of the user's with a foreign key to ours: DuckDB cannot drop ours to publish
    the new rows (the build failed at its very end with DuckDB's catalog error)."""
    referencing = con.execute(
        "SELECT DISTINCT table_name FROM duckdb_constraints() WHERE schema_name = 'main' "
        "AND constraint_type = 'FOREIGN KEY' AND lower(referenced_table) = lower(?)",
        [table],
    ).fetchall()
    for (name,) in referencing:
        found = _find_table(con, name)
        if found is not None and (found[1] or "").startswith(f"synthaix:{dataset}:"):
            continue  # a table of this dataset: published with it
        raise OutputError(
            f"table '{name}' in {path} has a foreign key to '{table}', which each build "
            "replaces; DuckDB cannot replace a table another one references, and nothing "
            "was written",
            hint=f"create '{name}' without REFERENCES {table}, or set output.duckdb to "
            "another file",
        )


def _find_table(con: duckdb.DuckDBPyConnection, table: str) -> tuple[str, str | None] | None:
    """The table's name as stored, and its comment. DuckDB names are case-insensitive, even
    quoted: "People" and "people" are one table."""
    found = con.execute(
        "SELECT table_name, comment FROM duckdb_tables() WHERE schema_name = 'main' "
        "AND lower(table_name) = lower(?)",
        [table],
    ).fetchall()
    return found[0] if found else None


def _connect_waiting(path: Path, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """DuckDB lets one process write a file at a time; wait while another build publishes."""
    import duckdb

    deadline = time.monotonic() + LOCK_WAIT
    while True:
        try:
            return duckdb.connect(str(path), read_only=read_only)
        except duckdb.IOException as exc:
            # DuckDB has no error class of its own for a held file lock; its message says so.
            if "lock" not in str(exc).lower() or time.monotonic() > deadline:
                raise _open_error(path, exc) from exc
            time.sleep(0.2)
        except duckdb.Error as exc:
            raise _open_error(path, exc) from exc


def _open_error(path: Path, exc: duckdb.Error) -> OutputError:
    if "lock" in str(exc).lower():
        return OutputError(
            f"{path} is open in another program (DuckDB allows one writer at a time)",
            hint="close the program that has it open, then build again",
        )
    return OutputError(f"cannot open the DuckDB database {path}: {exc}")


def _process_lock(path: Path) -> threading.Lock:
    with _process_locks_guard:
        return _process_locks.setdefault(path.resolve(), threading.Lock())


def _rollback(con: duckdb.DuckDBPyConnection) -> None:
    import duckdb

    with contextlib.suppress(duckdb.Error):  # no transaction was open
        con.execute("ROLLBACK")
