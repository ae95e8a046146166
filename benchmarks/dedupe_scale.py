"""Dedupe throughput and memory against a LanceDB table that already holds many rows.

For each stored size (default 10k, 100k and 1M rows, hashing embedder, 256 dims), a fresh
process stores that many distinct rows, builds the ANN index as a build's finish() would, then
times admit() on new batches: exact-key dedupe alone, then exact + near-duplicate dedupe.
Prints rows/s and peak RSS (and RSS after loading the table, to show growth). Run:

    python benchmarks/dedupe_scale.py [--stored 10000,100000,1000000] [--batch 10000]
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def word_salad(count: int, seed: int) -> list[str]:
    """Distinct sentences of 8-16 words from Faker's English word list (fast at 1M rows)."""
    import numpy as np
    from faker.providers.lorem.en_US import Provider

    words = np.array(sorted(set(Provider.word_list)))
    rng = np.random.default_rng(seed)
    lengths = rng.integers(8, 17, count)
    picks = words[rng.integers(0, len(words), lengths.sum())]
    bounds = np.concatenate([[0], np.cumsum(lengths)])
    return [" ".join(picks[bounds[i] : bounds[i + 1]]) for i in range(count)]


def one_size(stored: int, batch: int, batches: int, near: bool) -> dict:
    import numpy as np
    import pyarrow as pa

    from synthaix.config import parse_config
    from synthaix.dedupe.index import DedupeIndex

    root = Path(tempfile.mkdtemp(prefix="dedupe-bench-"))
    config = parse_config(
        {
            "name": "bench",
            "rows": stored,
            "columns": [
                {"name": "city", "type": "category", "values": ["Berlin", "Paris"]},
                {"name": "review", "type": "text.lorem"},
            ],
            "output": {"dir": str(root)},
            "dedupe": {"near": near},
        }
    )
    texts = word_salad(stored + batch * batches, seed=1)
    cities = np.where(np.arange(len(texts)) % 2 == 0, "Berlin", "Paris")

    def rows(start: int, count: int) -> tuple[pa.Table, np.ndarray]:
        table = pa.table(
            {"city": cities[start : start + count], "review": texts[start : start + count]}
        )
        return table, np.arange(start, start + count, dtype=np.int64)

    index = DedupeIndex(config)
    index.open("fill", None, [])
    started = time.perf_counter()
    for start in range(0, stored, 100_000):
        index.store(*rows(start, min(100_000, stored - start)))
    section = index.finish()
    index.committed()
    fill_seconds = time.perf_counter() - started
    del index

    base_rss = _rss_mb()
    index = DedupeIndex(config)  # a new build opens the stored table, as `append` does
    started = time.perf_counter()
    index.open("bench", section, [Path("stored")])
    open_seconds = time.perf_counter() - started
    open_rss = _rss_mb()
    started = time.perf_counter()
    admitted = 0
    for i in range(batches):
        table, ids = rows(stored + i * batch, batch)
        # Half the batch repeats stored rows (a quarter exactly, a quarter nearly), as an LLM
        # that repeats itself would; the other half is new.
        old = rng_pick(stored, batch // 2, seed=i)
        repeated = [
            texts[j].upper() if k % 2 else texts[j].replace(" ", "  ", 2) + "x"
            for k, j in enumerate(old)
        ]
        table = pa.table(
            {
                "city": list(cities[old]) + table["city"].to_pylist()[batch // 2 :],
                "review": repeated + table["review"].to_pylist()[batch // 2 :],
            }
        )
        admitted += index.admit(table, ids, batch).num_rows
    seconds = time.perf_counter() - started
    shutil.rmtree(root, ignore_errors=True)
    return {
        "stored": stored,
        "near": near,
        "rows_per_s": round(batch * batches / seconds),
        "admitted": admitted,
        "dropped_exact": index.stats.exact,
        "dropped_near": index.stats.near,
        "fill_s": round(fill_seconds, 1),
        "open_s": round(open_seconds, 2),
        "rss_before_open_mb": round(base_rss),
        "rss_after_open_mb": round(open_rss),
        "peak_rss_mb": round(_peak_mb()),
    }


def rng_pick(stored: int, count: int, seed: int):
    import numpy as np

    return np.random.default_rng(100 + seed).choice(stored, size=min(count, stored), replace=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stored", default="10000,100000,1000000")
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--batches", type=int, default=3)
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: one size in this process
    args = parser.parse_args()
    if args.one:
        stored, near = args.one.split(":")
        result = one_size(int(stored), args.batch, args.batches, near == "near")
        print(json.dumps(result))
        return
    print(
        f"{'stored':>9} {'check':>6} {'rows/s':>8} {'exact':>6} {'near':>6} "
        f"{'open s':>7} {'RSS open':>9} {'peak RSS':>9} {'fill s':>7}"
    )
    for stored in (int(s) for s in args.stored.split(",")):
        for kind in ("exact", "near"):
            out = (
                subprocess.run(
                    [
                        sys.executable,
                        __file__,
                        "--one",
                        f"{stored}:{kind}",
                        "--batch",
                        str(args.batch),
                        "--batches",
                        str(args.batches),
                    ],
                    check=True,
                    capture_output=True,
                    text=True,
                )
                .stdout.strip()
                .splitlines()[-1]
            )
            r = json.loads(out)
            print(
                f"{r['stored']:>9,} {kind:>6} {r['rows_per_s']:>8,} {r['dropped_exact']:>6,} "
                f"{r['dropped_near']:>6,} {r['open_s']:>7} {r['rss_after_open_mb']:>7} MB "
                f"{r['peak_rss_mb']:>6} MB {r['fill_s']:>7}",
                flush=True,
            )


if __name__ == "__main__":
    main()
