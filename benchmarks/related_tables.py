"""Related tables at scale: 100,000 customers -> ~1,000,000 orders (poisson 10 each) ->
~3,000,000 items (poisson 3 each, a Zipf lookup into 1,000 products), samplers only, through
the flow (each table a task run holding its chunk tasks) on a temporary Prefect server.
Prints rows/s of the flow body over all tables, with and without FOREIGN KEYs declared in
DuckDB (which checks every child row on load), and the process's peak RSS.
Targets: >= 150k rows/s, peak RSS < 2 GB. The anchor: SDV's HMA takes about 3 days per 1M
rows (SDV issue #2110).

    python benchmarks/related_tables.py [--customers 100000] [--workers 4]
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def shop(customers: int, chunk: int, folder: Path, foreign_keys: bool) -> dict:
    return {
        "name": "bench_shop",
        "seed": 7,
        "chunk_size": chunk,
        "output": {"dir": str(folder), "foreign_keys": foreign_keys},
        "tables": [
            {
                "name": "customers",
                "rows": customers,
                "columns": [
                    {"name": "customer_id", "type": "sequence", "primary_key": True},
                    {"name": "tier", "type": "category", "values": {"gold": 1, "basic": 4}},
                    {
                        "name": "signup_date",
                        "type": "date",
                        "start": "2022-01-01",
                        "end": "2023-12-31",
                    },
                    {"name": "score", "type": "float", "min": 0, "max": 1, "decimals": 3},
                ],
            },
            {
                "name": "products",
                "rows": 1000,
                "columns": [
                    {"name": "product_id", "type": "sequence", "primary_key": True},
                    {"name": "price", "type": "float", "min": 1, "max": 200, "decimals": 2},
                ],
            },
            {
                "name": "orders",
                "parent": "customers",
                "count": {"distribution": "poisson", "mean": 10, "max": 40},
                "columns": [
                    {"name": "order_id", "type": "sequence", "primary_key": True},
                    {"name": "customer_id", "type": "reference", "to": "customers.customer_id"},
                    {
                        "name": "ordered_at",
                        "type": "date",
                        "after": "customers.signup_date",
                        "offset": {"min": "0d", "max": "365d"},
                    },
                    {"name": "status", "type": "category", "values": ["new", "paid", "shipped"]},
                ],
            },
            {
                "name": "items",
                "parent": "orders",
                "count": {"distribution": "poisson", "mean": 3, "min": 1, "max": 10},
                "dedupe": {"exact": False},
                "columns": [
                    {"name": "order_id", "type": "reference", "to": "orders.order_id"},
                    {
                        "name": "product_id",
                        "type": "reference",
                        "to": "products.product_id",
                        "weights": {"zipf": 1.1},
                    },
                    {"name": "qty", "type": "integer", "min": 1, "max": 5},
                    {"name": "unit_price", "type": "sql", "expr": "products.price"},
                ],
            },
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--chunk-size", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    from flows.build_dataset import build_dataset
    from flows.local_server import prefect_api
    from synthaix.config import parse_any_config

    with tempfile.TemporaryDirectory() as temp, prefect_api():
        for foreign_keys in (False, True):
            data = shop(
                args.customers, args.chunk_size, Path(temp) / str(foreign_keys), foreign_keys
            )
            data["runner"] = {"workers": args.workers}
            config = parse_any_config(yaml.safe_load(yaml.safe_dump(data)))
            started = time.perf_counter()
            manifest = build_dataset(config=config, preflight=False)
            seconds = time.perf_counter() - started
            rows = sum(manifest.rows.values())
            sizes = ", ".join(f"{name} {count:,}" for name, count in manifest.rows.items())
            keys = "FOREIGN KEYs declared" if foreign_keys else "no FOREIGN KEYs"
            print(
                f"{keys:>22}: {rows:,} rows ({sizes}) in {seconds:.1f} s = "
                f"{rows / seconds:,.0f} rows/s (tables {manifest.seconds['tables']:.1f} s)"
            )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS {peak:,.0f} MB (target < 2,048); target >= 150,000 rows/s")


if __name__ == "__main__":
    main()
