"""Dedupe throughput and memory against a LanceDB table that already holds many rows.

For each stored size (default 10k, 100k and 1M rows, hashing embedder, 256 dims), one process
stores that many distinct rows and finishes as a build would (ANN index included); a second,
fresh process opens the table as the next build would and times admit() on new batches:
exact-key dedupe alone, then exact + near-duplicate dedupe. It prints rows/s, RSS after opening
the table and peak RSS of that second process. Run:

    python benchmarks/dedupe_scale.py [--stored 10000,100000,1000000] [--batch 10000]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

BLOCK = 10_000


def _rss_mb() -> float:
    status = Path("/proc/self/status").read_text()
    return int(status.split("VmRSS:")[1].split()[0]) / 1024


def word_salad(start: int, count: int) -> list[str]:
    """Rows start..start+count of an endless list of distinct sentences of 8-16 words from
    Faker's English word list; each block of 10k rows has its own seed, so any slice can be
    made without the rest."""
    from faker.providers.lorem.en_US import Provider

    words = np.array(sorted(set(Provider.word_list)))
    out: list[str] = []
    for block in range(start // BLOCK, (start + count - 1) // BLOCK + 1):
        rng = np.random.default_rng([1, block])
        lengths = rng.integers(8, 17, BLOCK)
        picks = words[rng.integers(0, len(words), lengths.sum())]
        bounds = np.concatenate([[0], np.cumsum(lengths)])
        first = max(start, block * BLOCK) - block * BLOCK
        last = min(start + count, (block + 1) * BLOCK) - block * BLOCK
        out += [" ".join(picks[bounds[i] : bounds[i + 1]]) for i in range(first, last)]
    return out


def rows_at(positions: np.ndarray) -> list[str]:
    """Texts of the given stored rows, made block by block (so that few are held at once)."""
    out: dict[int, str] = {}
    for block in sorted({int(p) // BLOCK for p in positions}):
        texts = word_salad(block * BLOCK, BLOCK)
        out.update((int(p), texts[int(p) % BLOCK]) for p in positions if int(p) // BLOCK == block)
    return [out[int(p)] for p in positions]


def table(ids: np.ndarray, reviews: list[str]) -> pa.Table:
    return pa.table({"city": np.where(ids % 2 == 0, "Berlin", "Paris"), "review": reviews})


def rows(start: int, count: int) -> tuple[pa.Table, np.ndarray]:
    ids = np.arange(start, start + count, dtype=np.int64)
    return table(ids, word_salad(start, count)), ids


def bench_config(root: Path, stored: int, near: bool):
    from synthaix.config import parse_config

    columns = [
        {"name": "city", "type": "category", "values": ["Berlin", "Paris"]},
        {"name": "review", "type": "text.lorem"},
    ]
    return parse_config(
        {
            "name": "bench",
            "rows": max(stored, 1),
            "columns": columns,
            "output": {"dir": str(root)},
            "dedupe": {"near": near},
        }
    )


def fill(root: Path, stored: int, near: bool) -> dict:
    """Store `stored` distinct rows and finish as a build would (index included)."""
    from synthaix.dedupe.index import DedupeIndex

    index = DedupeIndex(bench_config(root, stored, near))
    index.open("fill", None, [])
    started = time.perf_counter()
    for start in range(0, stored, 100_000):
        index.store(*rows(start, min(100_000, stored - start)))
    section = index.finish()
    index.committed()
    return {"section": section, "fill_s": round(time.perf_counter() - started, 1)}


def admit(root: Path, stored: int, near: bool, section, batch: int, batches: int) -> dict:
    """A new build's dedupe against the stored rows: half of each batch repeats stored rows (a
    quarter exactly up to case, a quarter with doubled spaces and an extra letter), half is
    new, as an LLM that repeats itself would give."""
    from synthaix.dedupe.index import DedupeIndex

    base_rss = _rss_mb()
    index = DedupeIndex(bench_config(root, stored, near))
    started = time.perf_counter()
    index.open("bench", section, [Path("stored")])
    open_seconds = time.perf_counter() - started
    open_rss = _rss_mb()
    pick = np.random.default_rng(7)
    elapsed, admitted = 0.0, 0
    for i in range(batches):
        new, ids = rows(stored + i * batch, batch)
        old = np.sort(pick.choice(stored, size=min(batch // 2, stored), replace=False))
        repeated = [
            t.upper() if k % 2 else t.replace(" ", "  ", 2) + "x"
            for k, t in enumerate(rows_at(old))
        ]
        mixed = pa.concat_tables([table(old, repeated), new.slice(0, batch - len(repeated))])
        started = time.perf_counter()
        admitted += index.admit(mixed.combine_chunks(), ids, batch).num_rows
        elapsed += time.perf_counter() - started
    return {
        "rows_per_s": round(batch * batches / elapsed),
        "admitted": admitted,
        "dropped_exact": index.stats.exact,
        "dropped_near": index.stats.near,
        "open_s": round(open_seconds, 2),
        "rss_before_open_mb": round(base_rss),
        "rss_after_open_mb": round(open_rss),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }


def fresh(function, *args):
    """`function(*args)` in a new interpreter, so that its RSS figures are its own."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(function, *args).result()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stored", default="10000,100000,1000000")
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--batches", type=int, default=3)
    args = parser.parse_args()
    print(
        f"{'stored':>9} {'check':>6} {'rows/s':>8} {'exact':>6} {'near':>6} {'open s':>7} "
        f"{'RSS open':>9} {'peak RSS':>9} {'fill s':>7}   ({os.cpu_count()} cores)"
    )
    for stored in (int(s) for s in args.stored.split(",")):
        for kind in ("exact", "near"):
            near = kind == "near"
            with tempfile.TemporaryDirectory(prefix="dedupe-bench-") as tmp:
                filled = fresh(fill, Path(tmp), stored, near)
                r = fresh(
                    admit, Path(tmp), stored, near, filled["section"], args.batch, args.batches
                )
            print(
                f"{stored:>9,} {kind:>6} {r['rows_per_s']:>8,} {r['dropped_exact']:>6,} "
                f"{r['dropped_near']:>6,} {r['open_s']:>7} {r['rss_after_open_mb']:>6} MB "
                f"{r['peak_rss_mb']:>6} MB {filled['fill_s']:>7}",
                flush=True,
            )


if __name__ == "__main__":
    main()
