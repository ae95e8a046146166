"""Same config + seed gives the same rows, whatever order chunks finish in."""

from __future__ import annotations

import random

import pyarrow as pa
import pytest

from conftest import make_config
from synthaix.build.engine import Build
from synthaix.build.preview import MemorySink
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


class ShuffledExecutor:
    """Chunks generated in this thread, finishing in a shuffled order."""

    def __init__(self, config: DatasetConfig, order_seed: int | None) -> None:
        self.config = config
        self.rng = random.Random(order_seed) if order_seed is not None else None

    def __enter__(self) -> ShuffledExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def submit(self, chunk: Chunk) -> Chunk:
        return chunk

    def first_done(self, handles: list[Chunk]) -> Chunk:
        return self.rng.choice(handles) if self.rng else handles[0]

    def result(self, chunk: Chunk):
        return generate_chunk(self.config, chunk)


def build_in_memory(config: DatasetConfig, order_seed: int | None = None) -> pa.Table:
    """The build engine, with chunks finishing in a shuffled order, nothing written."""
    sinks: list[MemorySink] = []

    def sink(config: DatasetConfig, schema: pa.Schema) -> MemorySink:
        sinks.append(MemorySink(config, schema))
        return sinks[-1]

    Build(config, ShuffledExecutor(config, order_seed), sink=sink, persistent=False).run()
    return sinks[0].table()


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
    # Exact dedupe off: with one column, two null rows would be the same row.
    table = build_in_memory(make_config(columns, rows=2000, dedupe={"exact": False}))
    values = [v for v in table["n"].to_pylist() if v is not None]
    assert len(values) == len(set(values)) and table["n"].null_count > 500


def test_impossible_uniqueness_found_at_run_time_fails_clearly() -> None:
    # Faker's country list has ~250 entries; its size is not known before generating.
    columns = [{"name": "country", "type": "address.country", "unique": True}]
    with pytest.raises(CapacityError, match=r"could only produce \d+ of 1,000 rows"):
        build_in_memory(make_config(columns, rows=1000, chunk_size=500))


def test_a_shortfall_names_what_the_rows_were_lost_to_biggest_first() -> None:
    """61 even codes in 0-120: the constraint and the unique column both drop rows, and the
    message names both (it named only the unique column). The unique column drops every row
    that reaches it once the codes are taken: it comes first, with its hint, though the
    constraint drops about as many rows (half of all)."""
    columns = [{"name": "code", "type": "integer", "min": 0, "max": 120, "unique": True}]
    config = make_config(columns, rows=100, constraints=[{"name": "even", "check": "code % 2 = 0"}])
    with pytest.raises(CapacityError, match=r"could only produce 61 of 100 rows") as error:
        build_in_memory(config)
    message = str(error.value)
    assert "repeating a value of the unique columns (code): " in message
    assert "(100% of the rows it saw); breaking the constraint 'even': " in message
    assert error.value.hint.endswith("or drop unique")

    # The default exact key, its size unknown before generating (Faker's ~250 countries):
    # the hint says how to turn the check off.
    columns = [
        {"name": "id", "type": "uuid"},
        {"name": "sex", "type": "category", "values": ["F", "M"]},
        {"name": "country", "type": "address.country"},
    ]
    with pytest.raises(CapacityError, match=r"a row over the dedupe key \(sex, country\)") as error:
        build_in_memory(make_config(columns, rows=1000, dedupe={"exact": True}))
    assert "dedupe: {exact: false}" in error.value.hint


def test_first_rows_do_not_depend_on_the_chunk_length() -> None:
    columns = [
        *COLUMNS,
        {"name": "code", "type": "category", "values": ["A", "B"], "nullable": 0.5},
    ]
    short = generate_chunk(make_config(columns, rows=8), Chunk(0, 0, 8)).table
    long = generate_chunk(make_config(columns, rows=2000), Chunk(0, 0, 2000)).table
    assert long.slice(0, 8).equals(short)  # what `synthaix preview` shows is what build makes
