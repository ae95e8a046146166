"""The Prefect flow end to end, on a temporary Prefect server: exact N rows, read back."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow.dataset as ds
import pytest
from test_determinism import COLUMNS, build_in_memory

from conftest import write_config
from synthaix.errors import CapacityError, ConfigError

pytestmark = pytest.mark.usefixtures("prefect_server")


def _config_file(tmp_path: Path, **overrides) -> Path:
    data = {
        "name": "people",
        "rows": 2500,
        "seed": 21,
        "chunk_size": 300,
        "runner": {"workers": 3},
        "columns": COLUMNS,
        "output": {"dir": str(tmp_path / "out")},
    }
    data.update(overrides)
    return write_config(tmp_path / "people.yaml", data)


def test_flow_builds_exactly_n_rows_into_parquet_and_duckdb(tmp_path: Path) -> None:
    from flows.build_dataset import build_dataset
    from synthaix.config import load_config

    path = _config_file(tmp_path)
    summary = build_dataset(config_path=str(path))
    assert summary.rows.delivered == summary.rows.total == 2500
    assert summary.chunks >= 9

    parquet = ds.dataset(tmp_path / "out" / "data", format="parquet").to_table()
    with duckdb.connect(str(tmp_path / "out" / "people.duckdb"), read_only=True) as con:
        table = con.sql("SELECT * FROM people").to_arrow_table()
        distinct = con.execute("SELECT count(DISTINCT email) FROM people").fetchone()[0]
    assert parquet.num_rows == table.num_rows == 2500 and distinct == 2500
    assert parquet.equals(table)
    # The threaded flow, with chunks finishing in any order, matches the in-order reference.
    assert parquet.equals(build_in_memory(load_config(path)))


def test_flow_overrides_and_append(tmp_path: Path) -> None:
    from flows.build_dataset import build_dataset

    path = _config_file(tmp_path)
    build_dataset(config_path=str(path), rows=200)
    summary = build_dataset(config_path=str(path), rows=300, mode="append")
    assert summary.rows.delivered == 300 and summary.rows.total == 500
    with duckdb.connect(str(tmp_path / "out" / "people.duckdb"), read_only=True) as con:
        rows, emails = con.execute("SELECT count(*), count(DISTINCT email) FROM people").fetchone()
    assert rows == emails == 500  # unique across both builds


def test_flow_with_inline_config_and_other_output(tmp_path: Path) -> None:
    from flows.build_dataset import build_dataset
    from synthaix.config import load_config

    config = load_config(_config_file(tmp_path))
    summary = build_dataset(config=config, rows=50, out=str(tmp_path / "elsewhere"))
    assert summary.rows.delivered == 50
    assert (tmp_path / "elsewhere" / "people.duckdb").exists()


def test_failed_flow_keeps_previous_output(tmp_path: Path) -> None:
    from flows.build_dataset import build_dataset

    path = _config_file(tmp_path, rows=100)
    build_dataset(config_path=str(path))
    before = ds.dataset(tmp_path / "out" / "data", format="parquet").to_table()
    impossible = [*COLUMNS[:1], {"name": "country", "type": "address.country", "unique": True}]
    bad = _config_file(tmp_path, rows=2000, chunk_size=1000, columns=impossible)
    with pytest.raises(CapacityError):
        build_dataset(config_path=str(bad))
    assert ds.dataset(tmp_path / "out" / "data", format="parquet").to_table().equals(before)


def test_invalid_config_writes_nothing(tmp_path: Path) -> None:
    from flows.build_dataset import build_dataset

    path = _config_file(tmp_path, rows=-1)
    with pytest.raises(ConfigError, match="rows"):
        build_dataset(config_path=str(path))
    assert not (tmp_path / "out").exists()


def test_flow_publishes_a_summary_artifact(tmp_path: Path) -> None:
    from prefect.artifacts import Artifact

    from flows.build_dataset import build_dataset

    manifest = build_dataset(config_path=str(_config_file(tmp_path, rows=300)))
    artifact = Artifact.get("people-summary")
    assert artifact is not None and artifact.type == "markdown"
    assert "# people: 300 rows" in artifact.data
    assert f"| dropped | {manifest.dropped.causes()} |" in artifact.data


def test_the_summary_artifact_names_outputs_by_absolute_paths(tmp_path: Path, monkeypatch) -> None:
    """A UI reader does not know the worker's working directory: `out/data` said nothing."""
    from prefect.artifacts import Artifact

    from flows.build_dataset import build_dataset

    monkeypatch.chdir(tmp_path)
    manifest = build_dataset(config_path=str(_config_file(tmp_path, rows=30)), out="relative")
    assert manifest.outputs["parquet"] == "relative/data"  # the manifest keeps what was set
    artifact = Artifact.get("people-summary")
    assert artifact is not None and f"`{tmp_path / 'relative' / 'data'}`" in artifact.data


def test_rebuilding_with_overwrite_gives_the_same_data(tmp_path: Path) -> None:
    from flows.build_dataset import build_dataset

    path = _config_file(tmp_path, rows=600)
    build_dataset(config_path=str(path))
    first = ds.dataset(tmp_path / "out" / "data", format="parquet").to_table()
    build_dataset(config_path=str(path))  # same config and seed, over the first build
    again = ds.dataset(tmp_path / "out" / "data", format="parquet").to_table()
    assert again.equals(first)
