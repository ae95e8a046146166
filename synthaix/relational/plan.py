"""How many children each parent row gets, and the rounds that deliver exactly those.

Counts are drawn once per table from the declared distribution (per parent value with `by`),
clipped to [min, max], then, when the table also sets `rows`, nudged one child at a time
until they add up to it (within the bounds; an impossible total is an error before anything
is generated). The first round cuts the children into chunks at parent boundaries, so a
chunk's children come from that chunk's parents. Rows dropped on the way (constraints, LLM
failures, duplicates) are made again for the same parents in fill-up rounds, several
candidates for each; a quota, applied after the duplicate checks, keeps any parent from
getting more than its count.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pyarrow as pa

from synthaix.assemble import (
    MAX_FILL_ROUNDS,
    MIN_ACCEPTANCE,
    STALLED_ROUNDS,
    Assembler,
    Shortfall,
)
from synthaix.errors import CapacityError, ConfigError
from synthaix.generate import Chunk
from synthaix.relational.config import CountConfig

_INF = np.iinfo(np.int64).max


def draw_counts(
    count: CountConfig, n: int, rng: np.random.Generator, by: pa.Array | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(counts, min, max) per parent row."""
    means, lows, highs = np.empty(n), np.empty(n, np.int64), np.empty(n, np.int64)
    mean, low, high = count.resolved(count)
    means[:], lows[:], highs[:] = mean, low, _INF if high is None else high
    if by is not None and count.params:
        keys = by.to_pylist()
        for value, params in count.params.items():
            mask = np.fromiter((k == value or str(k) == str(value) for k in keys), bool, n)
            mean, low, high = count.resolved(params)
            means[mask], lows[mask], highs[mask] = mean, low, _INF if high is None else high
    if count.distribution == "poisson":
        counts = rng.poisson(means)
    elif count.distribution == "uniform":
        counts = rng.integers(lows, np.minimum(highs, 2**62) + 1)
    else:
        counts = means.round().astype(np.int64)
    return np.clip(counts, lows, highs).astype(np.int64), lows, highs


def reconcile(
    counts: np.ndarray, total: int, lows: np.ndarray, highs: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Counts within their bounds that add up to `total`, moved as little as possible: each
    step adds (or takes) one child at parents chosen at random among those with room."""
    if not lows.sum() <= total <= highs.clip(max=total).sum():
        low, high = int(lows.sum()), int(highs.clip(max=total).sum())
        raise ConfigError(
            f"rows: {total:,} cannot be shared out between {len(counts):,} parents with "
            f"count min/max: the children can only total {low:,} to {high:,}",
            hint="change rows, or count.min / count.max",
        )
    counts = counts.copy()
    while (gap := total - int(counts.sum())) != 0:
        room = np.flatnonzero(counts < highs) if gap > 0 else np.flatnonzero(counts > lows)
        chosen = rng.choice(room, size=min(abs(gap), len(room)), replace=False)
        counts[chosen] += 1 if gap > 0 else -1
    return counts


def first_chunks(counts: np.ndarray, chunk_size: int, first_row: int) -> tuple[list[Chunk], int]:
    """Chunks of about `chunk_size` children, cut at parent boundaries."""
    ends = np.cumsum(counts)
    total = int(ends[-1]) if len(ends) else 0
    targets = np.arange(chunk_size, total, chunk_size)
    cuts = np.unique(np.searchsorted(ends, targets, side="left") + 1)
    bounds = [0, *[int(c) for c in cuts if 0 < c < len(counts)], len(counts)]
    chunks, row = [], first_row
    for start, stop in itertools.pairwise(bounds):
        parents = np.repeat(np.arange(start, stop, dtype=np.int64), counts[start:stop])
        if len(parents):
            chunks.append(Chunk(len(chunks), row, len(parents), parents))
            row += len(parents)
    return chunks, row


class ChildPlanner:
    """The RoundPlanner of a child table: rounds aligned to parents, and per-parent quotas."""

    def __init__(self, counts: np.ndarray, chunk_size: int, first_row: int) -> None:
        self.want = counts
        self.have = np.zeros(len(counts), np.int64)  # delivered (written) children
        self.chunk_size = chunk_size
        self.next_row = first_row
        self.next_index = 0
        self.rounds = 0
        self._planned = 0
        self._delivered_before = 0
        self._stalled = 0

    # -- quota (the dedupe step asks, after its checks; the engine reports) -------------------
    def fits(self, parents: np.ndarray) -> np.ndarray:
        """Which of these rows (in order), all of them admitted, fit their parent's count.
        Asked after the duplicate checks: a fill-up round makes several candidates for each
        missing child, and the first that is no duplicate takes the place (asked before them,
        a duplicate first candidate took it and the others were dropped, round after round)."""
        if len(parents) == 0:
            return np.zeros(0, bool)
        runs = _runs(parents)
        if runs is not None:  # first-round rows come in parent order: rank within runs
            starts, sizes = runs
            rank = np.arange(len(parents)) - np.repeat(starts, sizes)
        else:
            order = np.argsort(parents, kind="stable")
            starts, sizes = _runs(parents[order])  # type: ignore[misc]
            rank = np.empty(len(parents), np.int64)
            rank[order] = np.arange(len(parents)) - np.repeat(starts, sizes)
        return self.have[parents] + rank < self.want[parents]

    def delivered(self, parents: np.ndarray) -> None:
        runs = _runs(parents) if len(parents) else None
        if runs is not None:
            self.have[parents[runs[0]]] += runs[1]
        else:
            np.add.at(self.have, parents, 1)

    # -- rounds -------------------------------------------------------------------------------
    def next_round(self, assembler: Assembler, limits: Shortfall) -> list[Chunk]:
        if assembler.missing <= 0:
            return []
        if self.rounds == 0:
            chunks, self.next_row = first_chunks(self.want, self.chunk_size, self.next_row)
            self.next_index = len(chunks)
            self._planned = int(self.want.sum())
        else:
            self._check_progress(assembler, limits)
            tried = self._planned
            acceptance = (assembler.delivered - self._delivered_before) / tried if tried else 1.0
            copies = min(20, math.ceil(1.2 / max(acceptance, MIN_ACCEPTANCE)))
            short = self.want - self.have
            parents = np.repeat(np.flatnonzero(short > 0), short[short > 0] * copies)
            chunks = []
            for start in range(0, len(parents), self.chunk_size):
                part = parents[start : start + self.chunk_size]
                chunks.append(Chunk(self.next_index, self.next_row, len(part), part))
                self.next_index += 1
                self.next_row += len(part)
            self._planned = len(parents)
        self._delivered_before = assembler.delivered
        self.rounds += 1
        return chunks

    def _check_progress(self, assembler: Assembler, limits: Shortfall) -> None:
        progressed = assembler.delivered > self._delivered_before
        self._stalled = 0 if progressed else self._stalled + 1
        if self._stalled >= STALLED_ROUNDS or self.rounds > MAX_FILL_ROUNDS:
            why, hint = limits()
            raise CapacityError(
                f"could only produce {assembler.delivered:,} of {assembler.target:,} rows after "
                f"{self.rounds} rounds, each parent keeping its count: {why}",
                hint=f"{hint}; or lower the counts",
            )


def _runs(parents: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(start, length) of each run of one parent, when the parents are in order; else None."""
    if not bool(np.all(parents[1:] >= parents[:-1])):
        return None
    starts = np.flatnonzero(np.r_[True, parents[1:] != parents[:-1]])
    return starts, np.diff(np.r_[starts, len(parents)])
