"""LLM path throughput against the simulator at fixed latency and concurrency.

Prints rows/s of the flow next to the bound (concurrency x rows-per-request / latency) and
tokens per row, with no faults and with the fault mix of issue 3. Run:

    python benchmarks/llm_throughput.py [--rows 4000] [--latency 0.5] [--concurrency 16] [--k 20]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.request import urlopen

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "CRITICAL")

FAULT_MIX = (
    "malformed=0.3,rate_limit=0.1,server_error=0.05,dropped=0.02,duplicates=0.2,"
    "wrong_types=0.1,short=0.1"
)


def config(url: str, rows: int, concurrency: int, k: int, whole_row: bool) -> dict:
    if whole_row:
        columns = [
            {"name": "product", "type": "llm", "description": "a product name", "max_length": 60},
            {"name": "price", "type": "llm", "schema": {"type": "number", "minimum": 1}},
            {"name": "review", "type": "llm", "description": "a short review", "max_length": 160},
        ]
    else:
        prompt = "A one-sentence review by a {{ age }}-year-old from {{ city }}"
        columns = [
            {"name": "age", "type": "integer", "min": 18, "max": 80},
            {"name": "city", "type": "category", "values": ["Berlin", "Paris", "Madrid"]},
            {"name": "review", "type": "llm", "prompt": prompt, "max_length": 160},
        ]
    return {
        "name": "bench_llm",
        "description": "Reviews of an online shop",
        "rows": rows,
        # More chunks than workers: one chunk's re-ask tail overlaps the next.
        "chunk_size": max(k, rows // 10),
        "runner": {"workers": 4},
        "columns": columns,
        "provider": dict(
            base_url=url, model="sim-small", max_concurrency=concurrency, rows_per_request=k
        ),
    }


@contextmanager
def simulator(latency: float, faults: str) -> Iterator[str]:
    """The simulator in its own process, so its CPU use does not slow the client's. Its first
    line, printed once it listens, is "simulator on URL ..."."""
    command = ["-m", "synthaix.cli", "sim", "--port", "0", "--latency", str(latency), "--seed", "1"]
    process = subprocess.Popen(
        [sys.executable, *command, "--faults", faults], stdout=subprocess.PIPE, text=True
    )
    try:
        yield process.stdout.readline().split()[2]
    finally:
        process.terminate()
        process.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=4000)
    parser.add_argument("--latency", type=float, default=0.5)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--k", type=int, default=20, help="rows per request")
    args = parser.parse_args()

    from flows.build_dataset import build_dataset
    from synthaix.config import parse_config

    bound = args.concurrency * args.k / args.latency
    print(
        f"bound = {args.concurrency} x {args.k} rows / {args.latency} s = {bound:,.0f} rows/s "
        f"({os.cpu_count()} cores)"
    )
    for label, faults in (("no faults", ""), ("fault mix", FAULT_MIX)):
        for whole_row in (False, True):
            with simulator(args.latency, faults) as url, tempfile.TemporaryDirectory() as tmp:
                data = config(url, args.rows, args.concurrency, args.k, whole_row)
                summary = build_dataset(config=parse_config(data), out=tmp)
                stats = json.loads(urlopen(url.replace("/v1", "/sim/stats")).read())
            rate, rows = summary.rows_per_second, summary.rows.delivered
            mode = "whole-row" if whole_row else "per-row  "
            print(
                f"{label:9} {mode} {rows:,} rows in {summary.build_seconds:5.1f} s: "
                f"{rate:6,.0f} rows/s = {rate / bound:4.0%} of bound; "
                f"{summary.llm.tokens / rows:5.1f} tokens/row; "
                f"{summary.llm.requests} requests, peak in flight {stats['peak_in_flight']}"
            )


if __name__ == "__main__":
    main()
