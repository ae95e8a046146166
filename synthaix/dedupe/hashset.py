"""A compact, growing set of int64 keys with a value each, for millions of rows.

Sorted numpy runs merged like a log-structured merge tree: 16 bytes a key instead of the ~100
of a Python dict, lookups by binary search over a handful of runs, and an insert costs
amortised O(log n) per key instead of re-sorting everything on each batch.
"""

from __future__ import annotations

import numpy as np


class SortedRuns:
    def __init__(self) -> None:
        self._runs: list[tuple[np.ndarray, np.ndarray]] = []

    def __len__(self) -> int:
        return sum(len(keys) for keys, _ in self._runs)

    def add(self, keys: np.ndarray, values: np.ndarray) -> None:
        if not len(keys):
            return
        order = np.argsort(keys, kind="stable")
        self._runs.append((keys[order], values[order]))
        # Merge while the newest run is at least half the size of the one before: O(log n) runs.
        while len(self._runs) > 1 and len(self._runs[-1][0]) * 2 >= len(self._runs[-2][0]):
            (k2, v2), (k1, v1) = self._runs.pop(), self._runs.pop()
            keys_, values_ = np.concatenate([k1, k2]), np.concatenate([v1, v2])
            order = np.argsort(keys_, kind="stable")
            self._runs.append((keys_[order], values_[order]))

    def lookup(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(found, value) per key; value is that of one stored copy of the key."""
        found = np.zeros(len(keys), dtype=bool)
        values = np.zeros(len(keys), dtype=np.int64)
        for run_keys, run_values in self._runs:
            at = np.searchsorted(run_keys, keys)
            at_ok = np.minimum(at, len(run_keys) - 1)
            hit = (at < len(run_keys)) & (run_keys[at_ok] == keys) & ~found
            values[hit] = run_values[at_ok[hit]]
            found |= hit
        return found, values

    def contains(self, keys: np.ndarray) -> np.ndarray:
        return self.lookup(keys)[0] if len(keys) else np.zeros(0, dtype=bool)
