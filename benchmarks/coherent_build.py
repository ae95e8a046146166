"""What coherence costs: 1,000,000 rows of a 12-column config with a derived sql column, two
offsets, two conditional columns and two constraints, against the same config with those
columns as plain samplers, through the flow, side by side in one process and one Prefect
server. Prints the flow body's rows/s for each and their ratio (target: coherent >= 60 %).

    python benchmarks/coherent_build.py [--rows 1000000] [--chunk-size 100000] [--workers 4]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

BASE = [
    {"name": "order_id", "type": "sequence"},
    {"name": "category", "type": "category", "values": {"books": 2, "toys": 1, "tech": 1}},
    {"name": "quantity", "type": "integer", "min": 1, "max": 5},
    {"name": "unit_price", "type": "float", "min": 1, "max": 100, "decimals": 2},
    {"name": "discount", "type": "float", "min": 0, "max": 5, "decimals": 2},
    {"name": "status", "type": "category", "values": ["new", "paid", "shipped"]},
    {"name": "ordered_at", "type": "datetime", "start": "2024-01-01", "end": "2024-12-31"},
]
PLAIN = [
    *BASE,
    {"name": "subcategory", "type": "category", "values": ["fiction", "lego", "cables"]},
    {"name": "express", "type": "boolean", "p": 0.2},
    {"name": "total", "type": "float", "min": 1, "max": 500, "decimals": 2},
    {"name": "shipped_at", "type": "datetime", "start": "2024-01-01", "end": "2024-12-31"},
    {"name": "delivered_at", "type": "datetime", "start": "2024-01-01", "end": "2024-12-31"},
]
COHERENT = [
    *BASE,
    {
        "name": "subcategory",
        "type": "category",
        "by": "category",
        "values": ["cables", "chargers"],
        "params": {"books": {"values": ["fiction", "science"]}, "toys": {"values": ["lego"]}},
    },
    {
        "name": "express",
        "type": "boolean",
        "by": "category",
        "p": 0.2,
        "params": {"tech": {"p": 0.6}},
    },
    {
        "name": "total",
        "type": "sql",
        "expr": "round(quantity * unit_price, 2)",
        "as": "decimal(10,2)",
    },
    {
        "name": "shipped_at",
        "type": "datetime",
        "after": "ordered_at",
        "offset": {"min": "1h", "max": "3d"},
    },
    {
        "name": "delivered_at",
        "type": "datetime",
        "after": "shipped_at",
        "offset": {"min": "1d", "max": "10d"},
    },
]
CONSTRAINTS = ["discount <= total", "delivered_at <= ordered_at + INTERVAL 12 DAY"]


def build(columns: list[dict], constraints: list[str], args: argparse.Namespace, tmp: Path):
    from flows.build_dataset import build_dataset

    name = "coherent" if constraints else "plain"
    config = {
        "name": name,
        "rows": args.rows,
        "seed": 3,
        "chunk_size": args.chunk_size,
        "runner": {"workers": args.workers},
        "columns": columns,
        "constraints": constraints,
    }
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return build_dataset(config_path=str(path), out=str(tmp / name))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--chunk-size", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()
    os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "CRITICAL")
    from flows.local_server import prefect_api

    with tempfile.TemporaryDirectory() as folder, prefect_api():
        tmp = Path(folder)
        warm_up = argparse.Namespace(**{**vars(args), "rows": 10_000})
        build(PLAIN, [], warm_up, tmp)  # imports and the server's first flow run, not timed
        plain = build(PLAIN, [], args, tmp)
        coherent = build(COHERENT, CONSTRAINTS, args, tmp)
    print(f"rows                 {args.rows:,} (12 columns, {os.cpu_count()} cores)")
    for label, manifest in (("plain samplers", plain), ("coherent", coherent)):
        print(
            f"{label:<20} {manifest.build_seconds:6.2f} s   "
            f"{manifest.rows_per_second:>10,.0f} rows/s (flow body)"
        )
    dropped = sum(coherent.dropped.constraint.values())
    print(f"constraint drops     {dropped:,} rows replaced ({coherent.fill_rounds} fill-up rounds)")
    ratio = coherent.rows_per_second / plain.rows_per_second
    print(f"coherent / plain     {ratio:.0%} (target >= 60 %)")


if __name__ == "__main__":
    main()
