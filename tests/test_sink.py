"""Outputs change atomically: overwrite replaces, append adds, a failed build changes nothing."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
import pytest

from conftest import make_config
from synthaix.config import DatasetConfig
from synthaix.errors import OutputError
from synthaix.files import REPORT_MARK
from synthaix.generate import dataset_schema, generate_chunk, plan_chunks
from synthaix.sink import DatasetWriter

COLUMNS = [{"name": "id", "type": "sequence"}, {"name": "v", "type": "float", "min": 0, "max": 1}]


def _config(tmp_path: Path, **overrides) -> DatasetConfig:
    return make_config(
        COLUMNS, rows=100, chunk_size=40, output={"dir": str(tmp_path / "out")}, **overrides
    )


def _write(config: DatasetConfig, fail_after: int | None = None) -> dict[str, Path]:
    with DatasetWriter(config, dataset_schema(config)) as writer:
        first = writer.existing.rows
        for n, chunk in enumerate(plan_chunks(config.rows, config.chunk_size, first_row=first)):
            if fail_after is not None and n == fail_after:
                raise RuntimeError("boom")
            writer.write(generate_chunk(config, chunk).table)
        return writer.commit()


def _parquet(config: DatasetConfig) -> pa.Table:
    return ds.dataset(config.output_dir / "data", format="parquet").to_table()


def _duckdb(config: DatasetConfig) -> pa.Table:
    with duckdb.connect(str(config.duckdb_path), read_only=True) as con:
        return con.sql(f"SELECT * FROM {config.table}").to_arrow_table()


def test_overwrite_writes_parquet_and_duckdb(tmp_path: Path) -> None:
    config = _config(tmp_path)
    outputs = _write(config)
    assert outputs == {"duckdb": config.duckdb_path, "parquet": config.output_dir / "data"}
    assert _parquet(config)["id"].to_pylist() == list(range(1, 101))
    assert _duckdb(config)["id"].to_pylist() == list(range(1, 101))
    _write(config.with_overrides(rows=10, seed=2))
    assert _parquet(config).num_rows == 10 and _duckdb(config).num_rows == 10
    assert len(list((config.output_dir / ".versions").iterdir())) == 1


def test_append_adds_rows_and_continues_sequences(tmp_path: Path) -> None:
    config = _config(tmp_path)
    _write(config)
    _write(config.with_overrides(rows=30, mode="append"))
    for table in (_parquet(config), _duckdb(config)):
        assert table["id"].to_pylist() == list(range(1, 131))


def test_failed_build_leaves_previous_output_intact(tmp_path: Path) -> None:
    config = _config(tmp_path)
    _write(config)
    before_parquet, before_duckdb = _parquet(config), _duckdb(config)
    for mode in ("overwrite", "append"):
        with pytest.raises(RuntimeError, match="boom"):
            _write(config.with_overrides(seed=3, mode=mode), fail_after=2)
        assert _parquet(config).equals(before_parquet)
        assert _duckdb(config).equals(before_duckdb)
    assert not (config.output_dir / ".staging").exists()


def test_a_load_into_duckdb_that_fails_leaves_no_version_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cancelled flow run interrupts the DuckDB load: rolled back, but its version folder
    (a full copy of the parts, nothing pointing to it) stayed until the next build."""
    from synthaix import duckdb_sink

    config = _config(tmp_path)
    _write(config)
    versions = sorted((config.output_dir / ".versions").iterdir())
    before = _duckdb(config)

    def interrupted(*args: object) -> None:
        raise RuntimeError("Query interrupted")  # inside the transaction, after the load

    monkeypatch.setattr(duckdb_sink, "comment_table", interrupted)
    for mode in ("overwrite", "append"):
        with pytest.raises(RuntimeError, match="Query interrupted"):
            _write(config.with_overrides(seed=3, mode=mode))
        assert sorted((config.output_dir / ".versions").iterdir()) == versions
        assert _duckdb(config).equals(before) and _parquet(config).equals(before)
    monkeypatch.undo()

    # A failure after the commit (a signal just then): the table is that build's, so its
    # version stays, and the next build rolls the Parquet side forward to it.
    publish = duckdb_sink.publish

    def committed_then_interrupted(*args: object, **kwargs: object) -> None:
        publish(*args, **kwargs)  # type: ignore[arg-type]
        raise KeyboardInterrupt

    monkeypatch.setattr(duckdb_sink, "publish", committed_then_interrupted)
    with pytest.raises(KeyboardInterrupt):
        _write(config.with_overrides(seed=4))
    monkeypatch.undo()
    after = _duckdb(config)
    assert not after.equals(before) and len(list((config.output_dir / ".versions").iterdir())) == 2
    with DatasetWriter(config, dataset_schema(config)):  # opening tidies: rolls forward
        pass
    assert _parquet(config).equals(after)


def test_append_with_other_columns_is_refused(tmp_path: Path) -> None:
    _write(_config(tmp_path))
    other = make_config(
        [{"name": "id", "type": "uuid"}],
        rows=5,
        mode="append",
        output={"dir": str(tmp_path / "out")},
    )
    with pytest.raises(OutputError, match="columns differ"):
        _write(other)


def test_one_build_at_a_time_per_output(tmp_path: Path) -> None:
    config = _config(tmp_path)
    with DatasetWriter(config, dataset_schema(config)), pytest.raises(OutputError, match="another"):
        _write(config)


def test_duckdb_only_output_can_still_be_appended(tmp_path: Path) -> None:
    output = {"dir": str(tmp_path / "db"), "formats": ["duckdb"], "table": "facts"}
    only_db = make_config(COLUMNS, rows=20, output=output)
    assert set(_write(only_db)) == {"duckdb"}
    assert not (only_db.output_dir / "data").exists()
    _write(only_db.with_overrides(mode="append", rows=5))
    assert _duckdb(only_db)["id"].to_pylist() == list(range(1, 26))


def test_append_accepts_changed_descriptions(tmp_path: Path) -> None:
    _write(_config(tmp_path))
    described = [{**COLUMNS[0], "description": "row number"}, COLUMNS[1]]
    config = make_config(described, rows=5, mode="append", output={"dir": str(tmp_path / "out")})
    _write(config)
    assert _parquet(config).num_rows == 105


def test_append_with_datetime_columns(tmp_path: Path) -> None:
    columns = [
        *COLUMNS,
        {
            "name": "at",
            "type": "datetime",
            "start": "2024-01-01 00:00:00",
            "end": "2024-12-31 23:59:59",
        },
    ]
    config = make_config(columns, rows=50, output={"dir": str(tmp_path / "out")})
    _write(config)
    _write(config.with_overrides(rows=20, mode="append"))
    assert _duckdb(config).num_rows == 70 and _parquet(config)["at"].null_count == 0


def test_the_duckdb_table_keeps_the_rows_in_the_parts_order(tmp_path: Path) -> None:
    """DuckDB keeps insertion order only while told to: loaded in parallel without it, these
    rows came out of order (checked). An ORDER BY load kept it but needed twice the memory."""
    import numpy as np
    import pyarrow.parquet as pq

    from synthaix import duckdb_sink

    parts = []
    for i in reversed(range(6)):  # the list's order, not the names', is the order
        values = np.arange(i * 20_000, (i + 1) * 20_000)
        table = pa.table({"v": values, "s": pa.array(values.astype(str))})
        parts.insert(0, tmp_path / f"part-{5 - i}.parquet")
        pq.write_table(table, parts[0], row_group_size=5_000)
    path = tmp_path / "out.duckdb"
    duckdb_sink.publish(path, "t", "ds", "b1", parts, legacy=False)
    with duckdb.connect(str(path), read_only=True) as con:
        got = con.execute("SELECT v, s FROM t").fetchnumpy()
    assert (got["v"] == np.arange(120_000)).all()
    assert (got["s"] == np.arange(120_000).astype(str)).all()


def test_a_published_build_removes_the_report_of_the_one_before(tmp_path: Path) -> None:
    """report.html describes the data beside it: a later build, published, removes the one of
    the build before (it would show 100 rows beside 50); a failed build leaves it."""
    config = _config(tmp_path)
    _write(config)
    report = config.output_dir / "report.html"
    report.write_text(f"<head>{REPORT_MARK}</head><p>100 rows</p>")  # one SynthAIx wrote
    with pytest.raises(RuntimeError, match="boom"):
        _write(config, fail_after=1)
    assert report.read_text().endswith("<p>100 rows</p>")
    _write(config.with_overrides(rows=50))
    assert not report.exists() and _parquet(config).num_rows == 50
