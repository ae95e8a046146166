"""A build never loses the user's data: it writes only where it may, replaces only what it made,
and checks every precondition before its first write."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq
import pytest
from safety_helpers import file_sums, table_counts
from typer.testing import CliRunner

from conftest import NoteListener, make_config, write_config
from synthaix import duckdb_sink, progress, sink
from synthaix.build.manifest import new_manifest
from synthaix.cli import app
from synthaix.errors import OutputError
from synthaix.generate import dataset_schema, generate_chunk, plan_chunks
from synthaix.sink import DatasetWriter

runner = CliRunner()
COLUMNS = [
    {"name": "id", "type": "sequence"},
    {"name": "name", "type": "person.full_name"},
    {"name": "v", "type": "integer", "min": 1, "max": 1_000_000},
]


def _config(tmp_path: Path, **output: Any) -> Path:
    data = {"name": "shop", "rows": 300, "seed": 1, "chunk_size": 100, "columns": COLUMNS}
    data["output"] = {"dir": str(tmp_path / "out"), **output}
    return write_config(tmp_path / "shop.yaml", data)


def _build(config: Path, *args: str):
    return runner.invoke(app, ["build", str(config), *args])


def _user_database(path: Path, table: str = "precious", rows: int = 7) -> None:
    with duckdb.connect(str(path)) as con:
        con.execute(f"CREATE TABLE {table} AS SELECT range AS x FROM range({rows})")
        con.execute(f"CREATE VIEW {table}_view AS SELECT x * 2 AS y FROM {table}")


def _rows(path: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(path), read_only=True) as con:
        return con.execute(sql).fetchall()


@pytest.mark.usefixtures("prefect_server")
def test_publishing_into_a_users_database_keeps_its_other_tables(tmp_path: Path) -> None:
    warehouse = tmp_path / "warehouse.duckdb"
    _user_database(warehouse)
    before = _rows(warehouse, "SELECT * FROM precious ORDER BY x")
    config = _config(tmp_path, duckdb=str(warehouse), table="newtable")

    result = _build(config)
    assert result.exit_code == 0, result.output
    assert table_counts(warehouse) == {"precious": 7, "newtable": 300}
    result = _build(config, "--rows", "120")  # a rebuild swaps our table, nothing else
    assert result.exit_code == 0, result.output
    assert table_counts(warehouse) == {"precious": 7, "newtable": 120}
    assert _rows(warehouse, "SELECT * FROM precious ORDER BY x") == before
    assert _rows(warehouse, "SELECT count(*) FROM precious_view") == [(7,)]
    comment = _rows(warehouse, "SELECT comment FROM duckdb_tables() WHERE table_name='newtable'")
    assert comment[0][0].startswith("synthaix:shop:")


@pytest.mark.usefixtures("prefect_server")
def test_a_users_table_of_the_same_name_is_never_replaced(tmp_path: Path) -> None:
    warehouse = tmp_path / "warehouse.duckdb"
    _user_database(warehouse)
    sums = file_sums(tmp_path)
    result = _build(_config(tmp_path, duckdb=str(warehouse), table="precious"))
    assert result.exit_code == 2
    assert "table 'precious'" in result.output and "not made by SynthAIx" in result.output
    assert file_sums(tmp_path) == {**sums, "shop.yaml": file_sums(tmp_path)["shop.yaml"]}
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("content", [b"", b"name,age\nada,36\n", b"\0" * 64])
def test_a_file_that_is_not_a_duckdb_database_is_refused(tmp_path: Path, content: bytes) -> None:
    target = tmp_path / "notes.duckdb"
    target.write_bytes(content)
    config = _config(tmp_path, duckdb=str(target))
    sums = file_sums(tmp_path)
    for command in ("validate", "build"):
        result = runner.invoke(app, [command, str(config)])
        assert result.exit_code == 2, result.output
        assert "is not a DuckDB database" in result.output
        assert "Traceback" not in result.output
    assert file_sums(tmp_path) == sums  # nothing written, not even the output folder


def _hold_database(path: Path, seconds: float) -> subprocess.Popen[str]:
    code = (
        "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); print('ready', flush=True); "
        "time.sleep(float(sys.argv[2])); c.close()"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", code, str(path), str(seconds)], stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
    return holder


def test_a_database_open_in_another_program_is_refused_before_any_write(tmp_path: Path) -> None:
    warehouse = tmp_path / "warehouse.duckdb"
    _user_database(warehouse)
    config = _config(tmp_path, duckdb=str(warehouse))
    holder = _hold_database(warehouse, 30)
    try:
        result = runner.invoke(app, ["validate", str(config)])
    finally:
        holder.kill()
        holder.wait()
    assert result.exit_code == 2
    assert "is open in another program" in result.output
    assert not (tmp_path / "out").exists()


@pytest.mark.usefixtures("prefect_server")
def test_a_build_during_another_builds_publish_says_so(tmp_path: Path) -> None:
    """The other build holds the output's lock and, publishing, its database: the second
    build said the database was open in another program."""
    config = _config(tmp_path)
    out = tmp_path / "out"
    assert _build(config).exit_code == 0
    code = (
        "import duckdb, fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDWR); "
        "fcntl.flock(fd, fcntl.LOCK_EX); c = duckdb.connect(sys.argv[2]); "
        "print('ready', flush=True); time.sleep(30)"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", code, str(out / ".lock"), str(out / "shop.duckdb")],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        result = _build(config, "--rows", "10")
        validated = runner.invoke(app, ["validate", str(config)])
    finally:
        holder.kill()
        holder.wait()
    assert result.exit_code == 2
    assert f"{out} is being written by another build" in result.output, result.output
    # The config is valid: validate says so, and that the output's checks wait for the build.
    assert validated.exit_code == 0, validated.output
    assert "being written by another build: its output was not checked" in validated.output


def test_a_publish_waits_for_another_writer_of_the_database(tmp_path: Path) -> None:
    """The file is locked: a second writer (process or thread) waits its turn, then swaps."""
    warehouse = tmp_path / "warehouse.duckdb"
    _user_database(warehouse)
    parts = _parts(tmp_path)
    holder = _hold_database(warehouse, 1.5)
    started = time.monotonic()
    errors: list[BaseException] = []

    def publish(table: str) -> None:
        try:
            duckdb_sink.publish(warehouse, table, "shop", "20260101T000000-abcdef", parts, False)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=publish, args=(t,)) for t in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    holder.wait()
    assert not errors
    assert time.monotonic() - started >= 1.0  # it waited for the other process
    assert table_counts(warehouse) == {"precious": 7, "a": 300, "b": 300}


def _parts(tmp_path: Path) -> list[Path]:
    config = make_config(COLUMNS, rows=300, chunk_size=100)
    paths = []
    for chunk in plan_chunks(config.rows, config.chunk_size):
        path = tmp_path / f"part-{chunk.index}.parquet"
        pq.write_table(generate_chunk(config, chunk).table, path)
        paths.append(path)
    return paths


def test_a_folder_synthaix_did_not_make_is_refused_untouched(tmp_path: Path) -> None:
    out = tmp_path / "out"
    for name, text in {
        ".staging/mine.txt": "mine",
        ".versions/old/keep.txt": "keep",
        "manifest.json": '{"mine": true}',
    }.items():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text(text)
    _user_database(out / "shop.duckdb")
    sums, counts = file_sums(out), table_counts(out / "shop.duckdb")

    for command in ("validate", "build"):
        result = runner.invoke(app, [command, str(_config(tmp_path))])
        assert result.exit_code == 2, result.output
        assert "is not empty and was not created by SynthAIx" in result.output
    assert file_sums(out) == sums
    assert table_counts(out / "shop.duckdb") == counts


@pytest.mark.usefixtures("prefect_server")
def test_files_a_user_adds_to_an_output_folder_survive_every_build(tmp_path: Path) -> None:
    config = _config(tmp_path)
    out = tmp_path / "out"
    assert _build(config).exit_code == 0
    mine = {
        ".staging/mine.txt": "mine",
        ".staging/20260101T000000-abcdef/notes.txt": "shaped like a build folder",
        ".versions/old/keep.txt": "keep",
        ".ledger/mine.txt": "ledger notes",
        "notes.txt": "notes",
    }
    for name, text in mine.items():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text(text)
    with duckdb.connect(str(out / "shop.duckdb")) as con:
        con.execute("CREATE TABLE mine AS SELECT 42 AS answer")
    sums = {name: file_sums(out)[name] for name in mine}

    for args in ([], ["--mode", "append", "--rows", "50"], ["--rows", "80"]):
        result = _build(config, *args)
        assert result.exit_code == 0, result.output
    assert {name: file_sums(out)[name] for name in mine} == sums
    assert table_counts(out / "shop.duckdb") == {"shop": 80, "mine": 1}


@pytest.mark.usefixtures("prefect_server")
def test_a_failed_precondition_writes_nothing(tmp_path: Path) -> None:
    config = _config(tmp_path)
    out = tmp_path / "out"
    assert _build(config).exit_code == 0
    (out / "data").unlink()
    (out / "data").mkdir()
    (out / "data" / "mine.csv").write_text("a,b\n")
    sums = file_sums(out)

    result = _build(config, "--rows", "10")
    assert result.exit_code == 2
    assert "is not the link SynthAIx makes" in result.output
    assert file_sums(out) == sums  # no DuckDB swap, no .current, no dedupe tag, no staging
    assert table_counts(out / "shop.duckdb") == {"shop": 300}


@pytest.mark.usefixtures("prefect_server")
@pytest.mark.parametrize("folder", [".versions", ".dedupe"])
def test_a_subfolder_it_cannot_write_is_refused_before_generating(
    tmp_path: Path, folder: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found only after every row was generated: 'cannot publish to .versions/...', and for
    .dedupe a raw PermissionError with exit code 1."""
    config = _config(tmp_path)
    out = tmp_path / "out"
    assert _build(config).exit_code == 0
    sums = file_sums(out)
    denied = out / folder
    access = os.access
    monkeypatch.setattr(
        "synthaix.ownership.os.access",
        lambda path, mode: access(path, mode) and Path(path) != denied,  # as chmod a-w does
    )
    result = _build(config, "--rows", "10")
    assert result.exit_code == 2, result.output
    assert f"cannot write to {denied}: permission denied" in result.output
    assert file_sums(out) == sums


@pytest.mark.parametrize(
    ("folder", "message"),
    [("/", "is the root folder"), ("~", "is the home folder")],
)
def test_root_and_home_are_never_output_folders(tmp_path: Path, folder: str, message: str) -> None:
    result = runner.invoke(app, ["validate", str(_config(tmp_path, dir=folder))])
    assert result.exit_code == 2
    assert message in result.output and "shop.yaml:" in result.output


def test_an_output_folder_that_is_a_file_is_caught_by_validate(tmp_path: Path) -> None:
    (tmp_path / "out").write_text("a file")
    result = runner.invoke(app, ["validate", str(_config(tmp_path))])
    assert result.exit_code == 2
    assert "exists and is a file, not a folder" in result.output


@pytest.fixture
def read_only_folder(tmp_path: Path):
    folder = tmp_path / "ro"
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro", "tmpfs", str(folder)])
    if mounted.returncode != 0:
        pytest.skip("root, and cannot mount a read-only file system here")
    yield folder
    subprocess.run(["umount", str(folder)], check=True)


def test_a_read_only_output_is_one_clear_line(tmp_path: Path, read_only_folder: Path) -> None:
    config = _config(tmp_path, dir=str(read_only_folder / "out"))
    for command in ("validate", "build"):
        result = runner.invoke(app, [command, str(config)])
        assert result.exit_code == 2, result.output
        assert f"cannot write to {read_only_folder}" in result.output
        assert "Traceback" not in result.output and "Error:" not in result.output


def test_an_interrupted_publish_is_rolled_forward(tmp_path: Path, monkeypatch) -> None:
    """Killed between the DuckDB commit and the link swap: the next build finishes the swap,
    so Parquet, DuckDB and manifest.json agree again."""
    config = make_config(COLUMNS, rows=100, chunk_size=50, output={"dir": str(tmp_path / "o")})
    with DatasetWriter(config, dataset_schema(config)) as writer:
        writer.write(generate_chunk(config, plan_chunks(100, 50)[0]).table)
        writer.commit(_manifest(config, writer.build_id))
    real_swap = sink._replace_symlink

    def killed(link: Path, target: Path) -> None:
        raise KeyboardInterrupt

    second = config.with_overrides(rows=30)
    monkeypatch.setattr(sink, "_replace_symlink", killed)
    with pytest.raises(KeyboardInterrupt), DatasetWriter(second, dataset_schema(second)) as w:
        w.write(generate_chunk(second, plan_chunks(30, 50)[0]).table)
        new_build = w.build_id
        w.commit(_manifest(second, new_build))
    monkeypatch.setattr(sink, "_replace_symlink", real_swap)
    assert table_counts(config.duckdb_path) == {"t": 30}  # DuckDB committed the new build

    listener = NoteListener()
    with progress.listening(listener), DatasetWriter(second, dataset_schema(second)) as writer:
        assert writer.current_parts()[0].parent.name == new_build
        assert writer.previous_manifest().build_id == new_build
    assert '"build_id": "' + new_build in (config.output_dir / "manifest.json").read_text()
    assert sorted(p.name for p in (config.output_dir / ".versions").iterdir()) == [new_build]
    # Said, not silent: the publish completed, and what the builds left removed.
    completed, removed = listener.notes
    assert (
        completed == f"completed the publish of build {new_build}, interrupted: the output shows it"
    )
    assert removed.startswith("removed what earlier builds left (0 MiB freed): .versions/")


def test_a_failed_first_build_leaves_no_folder_behind(tmp_path: Path) -> None:
    """It left a folder holding only `.lock` and `.synthaix-output`; a folder the user made
    stays (empty), and a failed later build keeps the output as it was."""
    from synthaix.build.engine import Build
    from synthaix.build.executor import ThreadExecutor

    def fail(table: Any) -> None:
        raise RuntimeError("a failure while building")

    for out, made in ((tmp_path / "new" / "out", True), (tmp_path / "mine", False)):
        if not made:
            out.mkdir()
        config = make_config(COLUMNS, rows=100, chunk_size=50, output={"dir": str(out)})
        with pytest.raises(RuntimeError):
            Build(config, ThreadExecutor(config), on_rows=fail).run()
        assert out.exists() is not made and (made or not any(out.iterdir()))
    Build(config, ThreadExecutor(config)).run()
    sums = file_sums(out)
    with pytest.raises(RuntimeError):
        Build(config, ThreadExecutor(config), on_rows=fail).run()
    assert file_sums(out) == sums


def test_a_lock_file_removed_while_taken_is_taken_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failed first build removes its `.lock` as it ends: a build that opened that file
    before must not hold a lock on a file no other build can see (review)."""
    config = make_config(COLUMNS, rows=10, output={"dir": str(tmp_path / "o")})
    real, replaced = sink.fcntl.flock, []

    def flock_then_replaced(fd: int, operation: int) -> None:
        real(fd, operation)
        if not replaced and operation & sink.fcntl.LOCK_EX:
            lock = tmp_path / "o" / ".lock"
            lock.unlink()
            lock.touch()  # another build's, new
            replaced.append(lock)

    monkeypatch.setattr(sink.fcntl, "flock", flock_then_replaced)
    with DatasetWriter(config, dataset_schema(config)) as writer:
        held = os.fstat(writer._lock_file).st_ino  # type: ignore[arg-type]
        assert replaced and held == (tmp_path / "o" / ".lock").stat().st_ino
        assert (tmp_path / "o" / ".synthaix-output").is_file()


def test_a_marker_of_another_dataset_is_refused(tmp_path: Path) -> None:
    config = make_config(COLUMNS, rows=10, output={"dir": str(tmp_path / "o")})
    with DatasetWriter(config, dataset_schema(config)) as writer:
        writer.write(generate_chunk(config, plan_chunks(10, 10)[0]).table)
        writer.commit()
    other = make_config(COLUMNS, name="other", rows=10, output={"dir": str(tmp_path / "o")})
    with pytest.raises(OutputError, match="holds the SynthAIx dataset 't'"):
        DatasetWriter(other, dataset_schema(other)).__enter__()


def test_export_and_report_never_overwrite_a_file_without_force(tmp_path: Path) -> None:
    config = make_config(COLUMNS, rows=10, output={"dir": str(tmp_path / "o")})
    with DatasetWriter(config, dataset_schema(config)) as writer:
        writer.write(generate_chunk(config, plan_chunks(10, 10)[0]).table)
        writer.commit()
    mine = tmp_path / "mine.csv"
    mine.write_text("precious\n")
    for command in (["export", str(config.output_dir)], ["report", str(config.output_dir)]):
        result = runner.invoke(app, [*command, "-o", str(mine)])
        assert result.exit_code == 2 and "mine.csv exists" in result.output
        assert mine.read_text() == "precious\n"
    result = runner.invoke(app, ["export", str(config.output_dir), "-o", str(mine), "--force"])
    assert result.exit_code == 0, result.output
    assert mine.read_text().splitlines()[0] == "id,name,v"


def test_a_report_or_export_of_the_users_in_the_output_folder_is_never_replaced(
    tmp_path: Path,
) -> None:
    """report.html and <dataset>.csv in the output folder are SynthAIx's names, but a user's
    file of that name is not SynthAIx's: a build dropped a user's report.html, and `report` and
    `export` without -o wrote over them. Only what SynthAIx wrote there is replaced."""
    config = make_config(COLUMNS, rows=10, output={"dir": str(tmp_path / "o")})
    out = config.output_dir

    def build() -> None:
        with DatasetWriter(config, dataset_schema(config)) as writer:
            writer.write(generate_chunk(config, plan_chunks(10, 10)[0]).table)
            writer.commit(_manifest(config, writer.build_id))

    build()
    report, csv = out / "report.html", out / f"{config.name}.csv"
    report.write_text("<p>my notes</p>")
    csv.write_text("precious\n")
    build()
    assert report.read_text() == "<p>my notes</p>"
    for command in (["report", str(out)], ["export", str(out)]):
        result = runner.invoke(app, command)
        assert result.exit_code == 2 and "exists" in result.output, result.output
    assert report.read_text() == "<p>my notes</p>" and csv.read_text() == "precious\n"

    report.unlink()
    csv.unlink()
    for _ in range(2):  # its own files: written again
        for command in (["report", str(out)], ["export", str(out)]):
            result = runner.invoke(app, command)
            assert result.exit_code in (0, 1), result.output  # 1: a failing check
    assert csv.read_text().splitlines()[0] == "id,name,v"
    build()
    assert not report.exists()  # its own report of the earlier data: dropped
    os.utime(csv, (0, 0))  # a copy of the folder that kept no times: still its own
    assert runner.invoke(app, ["export", str(out)]).exit_code == 0
    (out / ".exports.json").unlink()  # no record: a user's file of the dataset's columns (a
    assert runner.invoke(app, ["export", str(out)]).exit_code == 2  # COPY of it) was replaced
    assert runner.invoke(app, ["export", str(out), "-o", str(out), "--force"]).exit_code == 0
    assert runner.invoke(app, ["export", str(out)]).exit_code == 0
    csv.write_text(csv.read_text() + "1,edited by hand,2\n")  # no longer what export wrote
    assert runner.invoke(app, ["export", str(out)]).exit_code == 2
    assert runner.invoke(app, ["export", str(out), "--force"]).exit_code == 0


def _manifest(config, build_id: str):
    return new_manifest(config, build_id, rows={"delivered": 1, "total": 1, "generated": 1})


def _write_rows(config, rows: int) -> None:
    with DatasetWriter(config, dataset_schema(config)) as writer:
        first = writer.existing.rows
        for chunk in plan_chunks(rows, 50, first_row=first):
            writer.write(generate_chunk(config, chunk).table)
        writer.commit(_manifest(config, writer.build_id))


@pytest.mark.parametrize("linked", [False, True])
def test_relative_and_linked_output_folders_keep_their_data(
    tmp_path: Path, monkeypatch, linked: bool
) -> None:
    """The folder as the README writes it (out/<name>, relative), or reached by a link: an
    append keeps the earlier rows, and a failed build leaves the previous output readable."""
    monkeypatch.chdir(tmp_path)
    folder = "out/t"
    if linked:
        (tmp_path / "real").mkdir()
        (tmp_path / "out").symlink_to(tmp_path / "real")
    config = make_config(COLUMNS, rows=100, chunk_size=50, output={"dir": folder})
    _write_rows(config, 100)
    _write_rows(config.with_overrides(mode="append", rows=30), 30)
    assert table_counts(config.duckdb_path) == {"t": 130}
    with pytest.raises(RuntimeError), DatasetWriter(config, dataset_schema(config)):
        raise RuntimeError("a build that failed")
    assert len(list(Path(folder, "data").glob("*.parquet"))) == 3
    assert pq.read_table(Path(folder, "data")).num_rows == 130


def test_a_users_table_differing_only_in_case_is_never_replaced(tmp_path: Path) -> None:
    warehouse = tmp_path / "warehouse.duckdb"
    with duckdb.connect(str(warehouse)) as con:
        con.execute('CREATE TABLE "Shop" AS SELECT 1 AS x')
        con.execute('CREATE VIEW "NewView" AS SELECT 1 AS x')
    for table, message in (("shop", "table 'Shop'"), ("newview", "view named 'NewView'")):
        config = _config(tmp_path, duckdb=str(warehouse), table=table)
        result = runner.invoke(app, ["validate", str(config)])
        assert result.exit_code == 2 and message in result.output, result.output
    assert table_counts(warehouse) == {"Shop": 1}


def test_a_data_link_of_the_users_is_refused(tmp_path: Path) -> None:
    config = make_config(COLUMNS, rows=10, output={"dir": str(tmp_path / "o")})
    _write_rows(config, 10)
    photos = tmp_path / "photos"
    photos.mkdir()
    (tmp_path / "o" / "data").unlink()
    (tmp_path / "o" / "data").symlink_to(photos)
    with pytest.raises(OutputError, match="is not the link SynthAIx makes"):
        DatasetWriter(config, dataset_schema(config)).__enter__()


def test_a_manifest_that_is_not_a_file_is_refused_before_writing(tmp_path: Path) -> None:
    config = make_config(COLUMNS, rows=10, output={"dir": str(tmp_path / "o")})
    _write_rows(config, 10)
    (tmp_path / "o" / "manifest.json").unlink()
    (tmp_path / "o" / "manifest.json").mkdir()
    sums = file_sums(tmp_path / "o")
    with pytest.raises(OutputError, match="is not the file SynthAIx writes"):
        DatasetWriter(config, dataset_schema(config)).__enter__()
    assert file_sums(tmp_path / "o") == sums


def test_a_users_lancedb_table_at_dedupe_uri_is_refused(tmp_path: Path) -> None:
    import lancedb

    lancedb.connect(str(tmp_path / "lance")).create_table("shop", data=[{"note": "mine"}])
    config = _config(tmp_path)
    data = {"name": "shop", "rows": 30, "columns": COLUMNS}
    data["output"] = {"dir": str(tmp_path / "out")}
    data["dedupe"] = {"uri": str(tmp_path / "lance")}
    config = write_config(tmp_path / "shop.yaml", data)
    result = runner.invoke(app, ["validate", str(config)])
    assert result.exit_code == 2 and "was not made by SynthAIx" in result.output
    assert lancedb.connect(str(tmp_path / "lance")).open_table("shop").count_rows() == 1


def test_a_dedupe_table_of_another_dataset_at_a_shared_uri_is_refused(tmp_path: Path) -> None:
    """Two datasets of one name sharing a dedupe.uri: each build restored the table to its own
    tag, undoing the other's rows. The second is refused before it writes, unless the first's
    output is gone (its table is then adopted)."""
    import lancedb

    from synthaix.build.engine import Build
    from synthaix.build.executor import ThreadExecutor
    from synthaix.config import load_config

    lance = str(tmp_path / "lance")

    def dataset(folder: str) -> Any:
        data = {"name": "shop", "rows": 30, "columns": COLUMNS}
        data["output"] = {"dir": str(tmp_path / folder)}
        data["dedupe"] = {"uri": lance}
        config = load_config(write_config(tmp_path / f"{folder}.yaml", data))
        return Build(config, ThreadExecutor(config))

    dataset("a").run()
    versions = lancedb.connect(lance).open_table("shop").version
    with pytest.raises(OutputError, match=f"belongs to the dataset built in {tmp_path / 'a'}"):
        dataset("b").run()
    assert lancedb.connect(lance).open_table("shop").version == versions
    assert not (tmp_path / "b" / "data").exists()
    dataset("a").run()  # its own: rebuilt as before
    (tmp_path / "a" / "manifest.json").unlink()  # the first dataset is gone
    assert dataset("b").run().rows.delivered == 30


def test_a_users_lancedb_table_named_as_a_table_of_a_multi_table_dataset_is_refused(
    tmp_path: Path,
) -> None:
    """Each table of a multi-table dataset keeps its dedupe table under its own name."""
    import lancedb

    lance = str(tmp_path / "lance")
    lancedb.connect(lance).create_table("customers", data=[{"note": "mine"}])
    customers = {
        "name": "customers",
        "rows": 5,
        "columns": [{"name": "customer_id", "type": "sequence", "primary_key": True}, COLUMNS[1]],
    }
    customers["dedupe"] = {"uri": lance}  # a table's exact check is off unless asked for
    data = {"name": "shop", "tables": [customers], "output": {"dir": str(tmp_path / "out")}}
    config = write_config(tmp_path / "shop.yaml", data)
    assert runner.invoke(app, ["validate", str(config)]).exit_code == 0  # it writes no table
    customers["dedupe"] = {"uri": lance, "exact": True}
    config = write_config(tmp_path / "shop.yaml", data)
    result = runner.invoke(app, ["validate", str(config)])
    assert result.exit_code == 2 and "table 'customers' at dedupe.uri" in result.output
    assert "was not made by SynthAIx" in result.output
    assert lancedb.connect(lance).open_table("customers").count_rows() == 1


def test_a_view_named_as_a_table_of_a_multi_table_dataset_says_how_to_rename_it(
    tmp_path: Path,
) -> None:
    """The hint names what the config can change: a table of `tables:` has no output.table."""
    warehouse = tmp_path / "warehouse.duckdb"
    with duckdb.connect(str(warehouse)) as con:
        con.execute("CREATE VIEW customers AS SELECT 1 AS mine")
    customers = {
        "name": "customers",
        "rows": 5,
        "columns": [{"name": "customer_id", "type": "sequence", "primary_key": True}, COLUMNS[1]],
    }
    output = {"dir": str(tmp_path / "out"), "duckdb": str(warehouse)}
    config = write_config(
        tmp_path / "shop.yaml", {"name": "shop", "tables": [customers], "output": output}
    )
    result = runner.invoke(app, ["validate", str(config)])
    assert result.exit_code == 2 and "has a view named 'customers'" in result.output
    assert "give table 'customers' another name under tables:" in result.output
    assert "output.table" not in result.output


def test_a_0_1_output_adopts_only_its_own_default_database(tmp_path: Path) -> None:
    """A folder as 0.1 left it is taken over, but a table without SynthAIx's comment in any
    other database is still the user's."""
    out = tmp_path / "out"
    (out / ".versions" / "20250101T000000-abcdef").mkdir(parents=True)
    (out / ".current").symlink_to(".versions/20250101T000000-abcdef")
    (out / "data").symlink_to(".current")
    (out / "manifest.json").write_text('{"build_id": "20250101T000000-abcdef"}')
    _user_database(out / "shop.duckdb", table="shop")  # what 0.1 wrote: no comment
    assert runner.invoke(app, ["validate", str(_config(tmp_path))]).exit_code == 0
    elsewhere = tmp_path / "warehouse.duckdb"
    _user_database(elsewhere, table="shop")
    result = runner.invoke(app, ["validate", str(_config(tmp_path, duckdb=str(elsewhere)))])
    assert result.exit_code == 2 and "not made by SynthAIx" in result.output


def test_out_moves_a_database_kept_inside_the_output_folder(tmp_path: Path) -> None:
    config = make_config(COLUMNS, output={"dir": "out/a", "duckdb": "out/a/db/a.duckdb"})
    moved = config.with_overrides(out=Path("out/b"))
    assert moved.duckdb_path == Path("out/b/db/a.duckdb")
    kept = make_config(COLUMNS, output={"dir": "out/a", "duckdb": "warehouse.duckdb"})
    assert kept.with_overrides(out=Path("out/b")).duckdb_path == Path("warehouse.duckdb")


def test_export_into_a_folder_never_overwrites_a_file_there(tmp_path: Path) -> None:
    config = make_config(COLUMNS, rows=10, output={"dir": str(tmp_path / "o")})
    _write_rows(config, 10)
    exports = tmp_path / "exports"
    exports.mkdir()
    (exports / "t.csv").write_text("precious\n")
    result = runner.invoke(app, ["export", str(config.output_dir), "-o", str(exports)])
    assert result.exit_code == 2 and "t.csv exists" in result.output
    assert (exports / "t.csv").read_text() == "precious\n"


def test_export_reads_its_target_as_a_user_means_it(tmp_path: Path) -> None:
    """`-o new/` is a folder (it became a file named `new`); `-o x.parquet` without --format is
    Parquet (it was CSV in a .parquet file); JSON Lines into `o.csv` is refused."""
    config = make_config(COLUMNS, rows=10, output={"dir": str(tmp_path / "o")})
    _write_rows(config, 10)
    source = str(config.output_dir)
    result = runner.invoke(app, ["export", source, "-o", f"{tmp_path / 'new'}/"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "new" / "t.csv").read_text().count("\n") == 11
    result = runner.invoke(app, ["export", source, "-o", str(tmp_path / "x.parquet")])
    assert result.exit_code == 0, result.output
    assert pq.read_table(tmp_path / "x.parquet").num_rows == 10
    result = runner.invoke(
        app, ["export", source, "--format", "jsonl", "-o", str(tmp_path / "o.csv")]
    )
    assert result.exit_code == 2 and "names a csv file, but --format is jsonl" in result.output
    assert "name it o.jsonl, or pass --format csv" in result.output
    assert not (tmp_path / "o.csv").exists()
    result = runner.invoke(app, ["export", source, "-o", str(tmp_path / "rows.json")])
    assert result.exit_code == 2 and "not one JSON document" in result.output
    assert "name it rows.jsonl" in result.output and not (tmp_path / "rows.json").exists()


def test_a_users_foreign_key_to_a_synthaix_table_is_refused_before_generating(
    tmp_path: Path,
) -> None:
    """DuckDB cannot drop a table another one references: the build failed at publish with
    DuckDB's catalog error. It is refused before anything is generated, by validate too."""
    from synthaix.build.engine import Build
    from synthaix.build.executor import ThreadExecutor
    from synthaix.config import load_config

    warehouse = tmp_path / "warehouse.duckdb"
    path = _config(tmp_path, duckdb=str(warehouse))
    Build(load_config(path), ThreadExecutor(load_config(path))).run()
    with duckdb.connect(str(warehouse)) as con:
        con.execute("ALTER TABLE shop ADD PRIMARY KEY (id)")  # what a user might add
        con.execute("CREATE TABLE favourites (id BIGINT REFERENCES shop (id))")
        con.execute("INSERT INTO favourites VALUES (3)")
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 2
    assert "table 'favourites' in" in result.output and "has a foreign key to 'shop'" in (
        result.output
    )
    sums = file_sums(tmp_path)
    with pytest.raises(OutputError, match="has a foreign key to 'shop'") as caught:
        Build(load_config(path), ThreadExecutor(load_config(path))).run()
    assert "create 'favourites' without REFERENCES shop" in (caught.value.hint or "")
    assert file_sums(tmp_path) == sums


def test_an_append_never_drops_what_the_user_changed_in_its_duckdb_table(tmp_path: Path) -> None:
    """An append loads the table anew from the Parquet: a row and a column the user had added
    to it were dropped without a word. The append is refused, nothing written, and goes
    through once the user has moved the changes away (DROP TABLE: loaded anew)."""
    config = make_config(COLUMNS, rows=50, output={"dir": str(tmp_path / "o")})
    database = config.duckdb_path
    _write_rows(config, 50)
    appending = config.with_overrides(mode="append")
    _write_rows(appending, 20)  # unchanged: appends
    with duckdb.connect(str(database)) as con:
        con.execute("INSERT INTO t VALUES (999, 'mine', 1)")
        con.execute("ALTER TABLE t ADD COLUMN note VARCHAR")
    sums = file_sums(tmp_path)
    with pytest.raises(OutputError, match=r"changed since .* \(other columns \(note\)\)"):
        _write_rows(appending, 20)
    assert file_sums(tmp_path) == sums
    assert _rows(database, "SELECT count(*), count(note) FROM t WHERE name = 'mine'") == [(1, 0)]
    with duckdb.connect(str(database)) as con:
        con.execute("ALTER TABLE t DROP COLUMN note")
    with pytest.raises(OutputError, match=r"\(71 rows where its Parquet holds 70\)"):
        _write_rows(appending, 20)
    with duckdb.connect(str(database)) as con:
        con.execute("DELETE FROM t WHERE name = 'mine'")
        con.execute("UPDATE t SET v = v + 1 WHERE id = 3")  # same rows, a value changed
    with pytest.raises(OutputError, match=r"\(values changed\)"):
        _write_rows(appending, 20)
    with duckdb.connect(str(database)) as con:
        con.execute("DROP TABLE t")
    _write_rows(appending, 20)
    assert _rows(database, "SELECT count(*) FROM t") == [(90,)]


@pytest.mark.usefixtures("prefect_server")
def test_an_error_after_the_publish_says_published_and_exits_0(tmp_path: Path, monkeypatch) -> None:
    """The Prefect server went away as the run ended: the build had published (250,000 rows
    where 200,000 were), said `error: ConnectError` and exited 1, so a retry appended the
    rows again. An error before the publish says nothing was."""
    from synthaix.cli import build as cli_build

    real = cli_build._flow

    def failing_after(**kwargs: Any) -> Any:
        real()(**kwargs)
        raise ConnectionError("[Errno 111] Connection refused")

    monkeypatch.setattr(cli_build, "_flow", lambda: failing_after)
    config = _config(tmp_path)
    result = _build(config)
    assert result.exit_code == 0, result.output
    assert "published:" in result.output and "Connection refused" in result.output
    assert table_counts(tmp_path / "out" / "shop.duckdb") == {"shop": 300}

    def failing_before(**kwargs: Any) -> Any:
        progress.started("shop", 300)  # generating, then the error
        raise ConnectionError("[Errno 111] Connection refused")

    monkeypatch.setattr(cli_build, "_flow", lambda: failing_before)
    result = _build(config, "--mode", "append")
    assert result.exit_code == 1 and "Connection refused" in result.output
    assert "nothing published:" in result.output
    assert table_counts(tmp_path / "out" / "shop.duckdb") == {"shop": 300}

    def failing_in_the_publish(**kwargs: Any) -> Any:  # its rollback said not published,
        progress.started("shop", 300)  # which cleared what the CLI told it had started by
        progress.publishing()
        progress.not_published()
        raise IndexError("list index out of range")

    monkeypatch.setattr(cli_build, "_flow", lambda: failing_in_the_publish)
    result = _build(config, "--mode", "append")
    assert result.exit_code == 1 and "IndexError" in result.output
    assert "nothing published:" in result.output


def test_a_database_named_as_synthaix_keeps_its_files_and_a_dedupe_uri_at_home_are_refused(
    tmp_path: Path,
) -> None:
    """output.duckdb at out/manifest.json replaced the manifest with the database (and `data`
    failed after the commit); dedupe.uri at / or ~ passed validate as output.dir does not."""
    for name in ("manifest.json", "data", ".lock", ".synthaix-output", "data/x.duckdb"):
        config = _config(tmp_path, duckdb=str(tmp_path / "out" / name))
        result = runner.invoke(app, ["validate", str(config)])
        assert result.exit_code == 2 and "which SynthAIx keeps" in result.output, name
    assert not (tmp_path / "out").exists()
    for uri, where in (("/", "root"), (str(Path.home()), "home")):  # (~ in YAML is null)
        result = runner.invoke(
            app, ["validate", str(_config(tmp_path)), "--set", f"dedupe.uri={uri}"]
        )
        assert result.exit_code == 2 and f"is the {where} folder" in result.output, result.output


def test_a_folder_a_killed_first_build_left_is_not_claimed(tmp_path: Path) -> None:
    """`kill -9` of a first build leaves its marker and lock: another dataset's build there
    was refused (`holds the SynthAIx dataset 'customers'`), though nothing was ever in it."""
    out = tmp_path / "out"
    (out / ".staging").mkdir(parents=True)
    (out / ".synthaix-output").write_text('{"owner": "synthaix", "dataset": "customers"}\n')
    (out / ".lock").touch()
    config = make_config(COLUMNS, rows=10, output={"dir": str(out)})
    _write_rows(config, 10)
    assert _rows(config.duckdb_path, "SELECT count(*) FROM t") == [(10,)]
    (out / "mine.txt").write_text("a file of the user's: the folder is someone's again")
    other = make_config(COLUMNS, name="other", rows=10, output={"dir": str(out)})
    with pytest.raises(OutputError, match="holds the SynthAIx dataset 't'"):
        sink.check_output(other)


def test_two_outputs_sharing_a_database_do_not_replace_each_others_table(tmp_path: Path) -> None:
    """Ownership was by dataset name alone: out/b's build replaced out/a's 300 rows in the
    shared database with its 3, while out/a's manifest still said 300."""
    shared = tmp_path / "shared.duckdb"
    first = make_config(
        COLUMNS, rows=30, output={"dir": str(tmp_path / "a"), "duckdb": str(shared)}
    )
    _write_rows(first, 30)
    _write_rows(first.with_overrides(mode="append"), 5)  # its own output: goes on
    other = first.with_overrides(out=tmp_path / "b")
    with pytest.raises(OutputError, match="holds the dataset t of another output"):
        sink.check_output(other)
    assert _rows(shared, "SELECT count(*) FROM t") == [(35,)]


def test_an_export_removes_what_a_killed_export_of_that_file_left(tmp_path: Path) -> None:
    """A killed export left its hidden temporary (6 MB) beside the target for good. The next
    export of that file removes those untouched for an hour; a younger one (another export
    writing now) and files of other names stay."""
    config = make_config(COLUMNS, rows=10, output={"dir": str(tmp_path / "o")})
    _write_rows(config, 10)
    out = config.output_dir
    old, young = out / ".t.csv.0123abcd.tmp", out / ".t.csv.89abcdef.tmp"
    other, mine = out / ".u.csv.0123abcd.tmp", out / ".t.csv.notes.tmp"
    for path in (old, young, other, mine):
        path.write_text("partial")
    for path in (old, other, mine):
        os.utime(path, (time.time() - 7200, time.time() - 7200))
    assert runner.invoke(app, ["export", str(out)]).exit_code == 0
    assert not old.exists() and young.exists() and other.exists() and mine.exists()
