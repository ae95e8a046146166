"""Same config + seed gives the same rows, whatever order chunks finish in."""

from __future__ import annotations

import random

import pyarrow as pa
import pytest

from conftest import make_config
from synthaix.assemble import Assembler, RoundPlanner, UniqueFilter, tracked_unique_columns
from synthaix.config import DatasetConfig
from synthaix.errors import CapacityError
from synthaix.generate import Chunk, generate_chunk

COLUMNS = [
    {"name": "id", "type": "uuid"},
    {"name": "first", "type": "person.first_name"},
    {"name": "last", "type": "person.last_name"},
    {
        "name": "email",
        "type": "expression",
        "template": "{{ first|lower }}.{{ last|lower }}@x.io",
        "unique": True,
    },
    {
        "name": "age",
        "type": "integer",
        "min": 18,
        "max": 90,
        "distribution": "normal",
        "mean": 40,
        "std": 10,
    },
    {"name": "city", "type": "address.city"},
    {"name": "joined", "type": "date", "start": "2020-01-01", "end": "2020-12-31", "nullable": 0.1},
]


def build_in_memory(config: DatasetConfig, order_seed: int | None = None) -> pa.Table:
    """The flow's logic without Prefect: rounds of chunks, delivered in a shuffled order."""
    parts: list[pa.Table] = []
    unique = UniqueFilter(tracked_unique_columns(config))
    assembler = Assembler(config.rows, unique, parts.append)
    planner = RoundPlanner(config, first_row=0)
    while chunks := planner.next_round(assembler):
        if order_seed is not None:
            random.Random(order_seed).shuffle(chunks)
        for chunk in chunks:
            result = generate_chunk(config, chunk)
            assembler.add(chunk.index, result.table, result.row_ids)
    return pa.concat_tables(parts)


def test_same_seed_same_rows_in_any_chunk_order() -> None:
    config = make_config(COLUMNS, rows=3000, chunk_size=200, seed=5)
    in_order = build_in_memory(config)
    assert in_order.num_rows == 3000
    assert len(set(in_order["email"].to_pylist())) == 3000
    for order_seed in (1, 2):
        assert build_in_memory(config, order_seed).equals(in_order)


def test_other_seed_other_rows() -> None:
    a = build_in_memory(make_config(COLUMNS, rows=500, seed=1))
    b = build_in_memory(make_config(COLUMNS, rows=500, seed=2))
    assert a["id"].to_pylist() != b["id"].to_pylist()


def test_editing_one_column_leaves_the_others_unchanged() -> None:
    base = build_in_memory(make_config(COLUMNS[:3], rows=400))
    edited = [*COLUMNS[:2], {"name": "last", "type": "person.last_name", "locale": "de_DE"}]
    changed = build_in_memory(make_config(edited, rows=400))
    assert changed["id"].equals(base["id"]) and changed["first"].equals(base["first"])
    assert not changed["last"].equals(base["last"])


def test_fill_up_delivers_exactly_n_unique_rows_near_capacity() -> None:
    columns = [{"name": "n", "type": "integer", "min": 1, "max": 1000, "unique": True}]
    table = build_in_memory(make_config(columns, rows=950, chunk_size=100))
    assert table.num_rows == 950
    assert len(set(table["n"].to_pylist())) == 950


def test_unique_nulls_are_exempt() -> None:
    columns = [
        {"name": "n", "type": "integer", "min": 1, "max": 10_000, "unique": True, "nullable": 0.5}
    ]
    table = build_in_memory(make_config(columns, rows=2000))
    values = [v for v in table["n"].to_pylist() if v is not None]
    assert len(values) == len(set(values)) and table["n"].null_count > 500


def test_impossible_uniqueness_found_at_run_time_fails_clearly() -> None:
    # Faker's country list has ~250 entries; its size is not known before generating.
    columns = [{"name": "country", "type": "address.country", "unique": True}]
    with pytest.raises(CapacityError, match=r"could only produce \d+ of 1,000 rows"):
        build_in_memory(make_config(columns, rows=1000, chunk_size=500))


def test_first_rows_do_not_depend_on_the_chunk_length() -> None:
    columns = [
        *COLUMNS,
        {"name": "code", "type": "category", "values": ["A", "B"], "nullable": 0.5},
    ]
    short = generate_chunk(make_config(columns, rows=8), Chunk(0, 0, 8)).table
    long = generate_chunk(make_config(columns, rows=2000), Chunk(0, 0, 2000)).table
    assert long.slice(0, 8).equals(short)  # what `synthaix preview` shows is what build makes
