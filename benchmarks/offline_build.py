"""Offline build throughput: 1,000,000 rows of a 10-column sampler config through the flow.

Prints rows/s end to end (wall clock from calling the flow, including Prefect's temporary
server start) and for the flow body alone, plus peak RSS of this process. Run:

    python benchmarks/offline_build.py [--rows 1000000] [--chunk-size 100000] [--workers 4]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CONFIG = """
name: bench_customers
rows: {rows}
seed: 7
chunk_size: {chunk_size}
runner: {{workers: {workers}}}
columns:
  - {{name: customer_id, type: uuid}}
  - {{name: first_name, type: person.first_name}}
  - {{name: last_name, type: person.last_name}}
  - name: email
    type: expression
    template: "{{{{ first_name|lower }}}}.{{{{ last_name|lower }}}}@example.com"
  - {{name: age, type: integer, min: 18, max: 90, distribution: normal, mean: 41, std: 12}}
  - {{name: city, type: category, values: {{Berlin: 0.3, Paris: 0.3, Madrid: 0.4}}}}
  - {{name: signup_date, type: date, start: 2020-01-01, end: 2025-12-31}}
  - {{name: is_active, type: boolean, p: 0.8, nullable: 0.02}}
  - {{name: lifetime_value, type: float, distribution: lognormal, mean: 250, std: 400, decimals: 2}}
  - {{name: phone, type: person.phone}}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--chunk-size", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument(
        "--no-dedupe", action="store_true", help="dedupe: {exact: false} (the exact-row check)"
    )
    parser.add_argument(
        "--server",
        action="store_true",
        help="start a Prefect server first (as with PREFECT_API_URL set): end to end then "
        "excludes the server start",
    )
    args = parser.parse_args()

    os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "CRITICAL")
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "bench.yaml"
        text = CONFIG.format(rows=args.rows, chunk_size=args.chunk_size, workers=args.workers)
        if args.no_dedupe:
            text += "dedupe: {exact: false}\n"
        config.write_text(text)
        from flows.build_dataset import build_dataset
        from flows.local_server import prefect_api

        with contextlib.ExitStack() as stack:
            if args.server:
                stack.enter_context(prefect_api())
            started = time.perf_counter()
            manifest = build_dataset(config_path=str(config), out=str(Path(tmp) / "out"))
            wall = time.perf_counter() - started
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    print(
        f"rows                 {manifest.rows.delivered:,} (10 columns, "
        f"chunk_size {args.chunk_size:,}, "
        f"{args.workers} workers, {os.cpu_count()} cores)"
    )
    print(
        f"end to end           {wall:6.1f} s   {manifest.rows.delivered / wall:>10,.0f} rows/s "
        + ("(server already running)" if args.server else "(includes Prefect server start)")
    )
    print(
        f"flow body            {manifest.build_seconds:6.1f} s   "
        f"{manifest.rows_per_second:>10,.0f} rows/s"
    )
    print(f"peak RSS             {peak_mb:,.0f} MB (this process)")


if __name__ == "__main__":
    main()
