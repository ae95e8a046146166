"""Dedupe inside real builds: across append builds, against the simulator's repeated rows,
with the provider's embeddings endpoint, and when the schema cannot yield N distinct rows."""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pytest
from llm_helpers import provider, simulator

from conftest import write_config
from synthaix.dedupe.embedders import HashingEmbedder, normalise_text
from synthaix.errors import CapacityError, ConfigError
from synthaix.sim.faults import FaultRates

pytestmark = pytest.mark.usefixtures("prefect_server")

SMALL = [  # 3 x 2 = 6 distinct rows at most
    {"name": "color", "type": "category", "values": ["red", "green", "blue"]},
    {"name": "flag", "type": "boolean"},
]


def _small(tmp_path: Path, rows: int) -> Path:
    data = {"name": "small", "rows": rows, "chunk_size": 4, "columns": SMALL}
    data["output"] = {"dir": str(tmp_path / "out")}
    return write_config(tmp_path / "small.yaml", data)


def _rows(tmp_path: Path, name: str) -> list[dict]:
    with duckdb.connect(str(tmp_path / "out" / f"{name}.duckdb"), read_only=True) as con:
        return con.sql(f"SELECT * FROM {name}").to_arrow_table().to_pylist()


def test_append_builds_never_repeat_a_row_of_an_earlier_build(tmp_path: Path) -> None:
    from flows.build_dataset import build_dataset

    path = _small(tmp_path, rows=4)
    build_dataset(config_path=str(path))
    summary = build_dataset(config_path=str(path), rows=2, mode="append")
    rows = _rows(tmp_path, "small")
    assert len(rows) == 6 and len({(r["color"], r["flag"]) for r in rows}) == 6
    assert (
        summary.dropped.exact_duplicate > 0
    )  # the second build's draws hit the first build's rows

    # All six combinations are taken: one more row is impossible, and the data stays intact.
    # (Found as it builds: the rows of two builds are there, and only the last one's are
    # known to be made by these columns; one build's rows are refused before, see test_engine.)
    with pytest.raises(CapacityError, match=r"could only produce 0 of 1 rows.*color, flag"):
        build_dataset(config_path=str(path), rows=1, mode="append")
    assert len(_rows(tmp_path, "small")) == 6

    # overwrite starts a new dataset, and a new dedupe table with it
    assert build_dataset(config_path=str(path), rows=6).rows.total == 6


def test_impossible_uniqueness_fails_with_how_many_were_possible(tmp_path: Path) -> None:
    """The key's 6 values are known before generating: the config is refused; an append past
    what the rows of several builds hold finds it out as it builds (above)."""
    from flows.build_dataset import build_dataset

    with pytest.raises(ConfigError, match=r"key \(color, flag\) can take only 6 distinct rows"):
        build_dataset(config_path=str(_small(tmp_path, rows=100)))
    assert not (tmp_path / "out").exists()  # nothing written


@pytest.mark.parametrize("embedder", ["hashing", "openai"])
def test_llm_rows_repeated_by_the_model_are_replaced(tmp_path: Path, embedder: str) -> None:
    from flows.build_dataset import build_dataset

    with simulator(FaultRates(duplicates=0.6), seed=5) as sim:
        path = write_config(
            tmp_path / "reviews.yaml",
            {
                "name": "reviews",
                "description": "Reviews of an online shop",
                "rows": 400,
                "chunk_size": 100,
                "columns": [
                    {"name": "city", "type": "category", "values": ["Berlin", "Paris"]},
                    {"name": "review", "type": "llm", "prompt": "A review from {{ city }}"},
                ],
                "provider": provider(sim.url, rows_per_request=10),
                "dedupe": {"embedder": embedder, "price_per_million": 0.02},
                "output": {"dir": str(tmp_path / "out")},
            },
        )
        summary = build_dataset(config_path=str(path))
        embeddings = sim.state.stats()["counts"].get("embeddings", 0)

    assert summary.rows.delivered == 400
    assert summary.dropped.exact_duplicate + summary.dropped.near_duplicate > 0
    assert (embeddings > 0) == (embedder == "openai")
    # What the embeddings cost is counted as the endpoint saw it (hashing: nothing spent).
    spent = summary.embeddings
    assert spent.requests == embeddings and (spent.prompt_tokens > 0) == (embeddings > 0)
    assert spent.cost_usd == pytest.approx(spent.prompt_tokens * 0.02 / 1e6)
    reviews = [normalise_text(r["review"]) for r in _rows(tmp_path, "reviews")]
    assert len(set(reviews)) == 400
    vectors = HashingEmbedder().embed(reviews)
    similarity = vectors @ vectors.T
    np.fill_diagonal(similarity, 0)
    if embedder == "hashing":
        assert similarity.max() < 0.8
