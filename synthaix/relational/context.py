"""The related rows a chunk of a child or lookup-reading table reads, on the chunk's worker.

A `TableRelations` (picklable: paths and small settings, no data) goes with each chunk task.
From it the worker loads the committed rows of the related tables (once per process), and
builds, for each row of the chunk, the fields of its parent, of the rows its references look
up, and of the rows those point at, as Arrow arrays named `<alias>.<field>`.
"""

from __future__ import annotations

import threading
import zlib
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from synthaix.errors import ConfigError

Weights = tuple[Literal["uniform"]] | tuple[Literal["zipf"], float] | tuple[Literal["column"], str]


@dataclass(frozen=True)
class Stored:
    """The committed rows of a table (older builds' parts first), and the columns read."""

    paths: tuple[str, ...]
    columns: tuple[str, ...]

    def load(self) -> pa.Table:
        return _load(self.paths, self.columns)


@dataclass(frozen=True)
class RelatedRows:
    """How a chunk's rows find the rows of one alias (see relational.config.Alias)."""

    name: str
    kind: Literal["parent", "lookup", "through"]
    stored: Stored
    column: str = ""  # lookup: the reference column (its random stream)
    weights: Weights = ("uniform",)
    via: str | None = None  # through: the alias whose row points at this one
    map_path: str | None = None  # through: row of `via`'s table -> row of this table
    offset: int = 0  # parent: rows of older builds (a chunk numbers the new parents from 0)
    nullable: float = 0.0  # lookup: the reference column's share of nulls (no row looked up)


@dataclass(frozen=True)
class SiblingRows:
    """A list per parent row (aligned with the parent's stored rows), read as `name`."""

    name: str
    path: str
    offset: int = 0


@dataclass(frozen=True)
class TableRelations:
    aliases: tuple[RelatedRows, ...]
    siblings: tuple[SiblingRows, ...] = ()
    fingerprint: str = ""  # what the related rows depend on, for the chunk ledger's key
    fields: dict[str, tuple[str, ...]] = field(default_factory=dict)  # alias -> fields read

    def context(
        self, seed: int, first_row: int, rows: int, parents: np.ndarray | None
    ) -> dict[str, pa.Array]:
        """The related fields of each row of a chunk: `parents` are the rows' parent rows
        (among this build's new parents), `first_row` seeds the lookups."""
        from synthaix.generate import column_rng

        index: dict[str, np.ndarray] = {}
        values: dict[str, pa.Array] = {}
        for alias in self.aliases:
            if alias.kind == "parent":
                assert parents is not None
                index[alias.name] = parents + alias.offset
            elif alias.kind == "lookup":
                rng = column_rng(seed, first_row, alias.column)
                drawn = _draw(alias, rng, rows)
                if alias.nullable > 0:
                    # The reference column's own null stream (see generate_chunk): a row
                    # whose key is null reads no looked-up row either.
                    nulls = column_rng(seed, first_row, f"{alias.column}\0nulls")
                    drawn[nulls.random(rows) < alias.nullable] = -1
                index[alias.name] = drawn
            else:
                assert alias.via is not None and alias.map_path is not None
                via = index[alias.via]
                found = _map(alias.map_path)[np.maximum(via, 0)]
                index[alias.name] = np.where(via >= 0, found, -1)
            table = alias.stored.load()
            rows_of = index[alias.name]
            take = pa.array(rows_of, pa.int64(), mask=rows_of < 0)  # -1: a null key
            for name in self.fields.get(alias.name, ()):
                values[f"{alias.name}.{name}"] = table[name].take(take).combine_chunks()
        for siblings in self.siblings:
            assert parents is not None
            table = _load((siblings.path,), ("value",))
            take = pa.array(parents + siblings.offset, pa.int64())
            values[siblings.name] = table["value"].take(take).combine_chunks()
        return values


def _draw(alias: RelatedRows, rng: np.random.Generator, rows: int) -> np.ndarray:
    size = alias.stored.load().num_rows
    if size == 0:
        raise ValueError(f"'{alias.name}' has no rows to look up")
    if alias.weights[0] == "uniform":
        return rng.integers(0, size, rows)
    try:
        cdf = _cdf(alias.stored, alias.weights)
    except ValueError:
        raise ConfigError(
            f"the lookup of '{alias.name}' weighs its rows by the column {alias.weights[1]}, "
            "and no row has a weight above 0: there is no row to draw",
            hint=f"give rows of {alias.weights[1]} a positive weight (e.g. min: 1), or use "
            "weights: uniform",
        ) from None
    return np.minimum(np.searchsorted(cdf, rng.random(rows) * cdf[-1], side="right"), size - 1)


@lru_cache(maxsize=16)
def _cdf(stored: Stored, weights: Weights) -> np.ndarray:
    size = stored.load().num_rows
    if weights[0] == "zipf":
        weight = 1.0 / np.power(np.arange(1, size + 1, dtype=np.float64), float(weights[1]))
    else:
        column = stored.load()[str(weights[1])]
        weight = pc.fill_null(column.cast(pa.float64()), 0.0).to_numpy()
        weight = np.clip(np.nan_to_num(weight, nan=0.0), 0.0, None)
        if not weight.sum() > 0:
            raise ValueError(f"the weights column {weights[1]} has no positive value")
    return np.cumsum(weight)


_lock = threading.Lock()


@lru_cache(maxsize=16)
def _load_unlocked(paths: tuple[str, ...], columns: tuple[str, ...]) -> pa.Table:
    if not paths:
        return pa.table({})
    tables = [pq.read_table(p, columns=list(columns)) for p in paths]
    return pa.concat_tables(tables).combine_chunks()


def _load(paths: tuple[str, ...], columns: tuple[str, ...]) -> pa.Table:
    with _lock:  # chunks of one table start together: read the rows once, not once per thread
        return _load_unlocked(paths, columns)


@lru_cache(maxsize=16)
def _map(path: str) -> np.ndarray:
    return np.load(path)


def clear_cache() -> None:
    """Forget loaded rows (at the end of a build, so a long-lived process does not keep them)."""
    _load_unlocked.cache_clear()
    _cdf.cache_clear()
    _map.cache_clear()


def crc(text: str) -> int:
    return zlib.crc32(text.encode())
