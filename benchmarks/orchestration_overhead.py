"""Per-chunk-task overhead of the build flow, and the speed-up concurrency buys on the LLM path.

1. 1,000 chunk tasks that do no real work (one sequence row each, dedupe off) through the flow
   on the thread runner and the local temporary server: (flow body - work) / chunks. The work
   is measured by generating and writing the same chunks without Prefect in this process.
2. An LLM build against the simulator (own process, fixed latency) with 1 worker and with 8:
   rows/s of each and the ratio. Run:

    python benchmarks/orchestration_overhead.py [--chunks 1000] [--latency 0.5]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def no_op_config(chunks: int, out: str) -> dict:
    return {
        "name": "noop",
        "rows": chunks,
        "chunk_size": 1,
        "columns": [{"name": "n", "type": "sequence"}],
        "dedupe": {"exact": False},
        "runner": {"workers": 16},
        "output": {"dir": out, "formats": ["parquet"]},
    }


def work_without_prefect(config) -> float:
    from synthaix.generate import dataset_schema, generate_chunk, plan_chunks
    from synthaix.sink import DatasetWriter

    started = time.perf_counter()
    with DatasetWriter(config, dataset_schema(config)) as writer:
        for chunk in plan_chunks(config.rows, config.chunk_size):
            writer.write(generate_chunk(config, chunk).table)
        writer.commit()
    return time.perf_counter() - started


def llm_config(url: str, rows: int, workers: int) -> dict:
    return {
        "name": "speedup",
        "rows": rows,
        "chunk_size": 20,
        "columns": [
            {"name": "topic", "type": "category", "values": ["a", "b", "c"]},
            {"name": "note", "type": "llm", "prompt": "A note about {{ topic }}"},
        ],
        "provider": dict(base_url=url, model="sim-small", rows_per_request=10, max_concurrency=16),
        "runner": {"workers": workers},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=1000)
    parser.add_argument("--latency", type=float, default=0.5)
    parser.add_argument("--rows", type=int, default=400)
    args = parser.parse_args()
    os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "CRITICAL")
    os.environ.setdefault("OPENAI_API_KEY", "sim")

    from llm_throughput import simulator

    from flows.build_dataset import build_dataset
    from synthaix.config import parse_config

    with tempfile.TemporaryDirectory() as tmp:
        build_dataset(config=parse_config(no_op_config(10, f"{tmp}/warm")))  # server start
        summary = build_dataset(config=parse_config(no_op_config(args.chunks, f"{tmp}/flow")))
        work = work_without_prefect(parse_config(no_op_config(args.chunks, f"{tmp}/plain")))
    overhead = (summary.build_seconds - work) / summary.chunks * 1000
    print(f"{os.cpu_count()} cores; {summary.chunks:,} chunk tasks of 1 row, thread runner")
    print(f"flow body {summary.build_seconds:.2f} s; same work without Prefect {work:.2f} s")
    print(f"overhead per chunk task: {overhead:.1f} ms (target < 20 ms)")

    rates = {}
    for workers in (1, 8):
        with simulator(args.latency, "") as url:
            summary = build_dataset(config=parse_config(llm_config(url, args.rows, workers)))
        rates[workers] = summary.rows_per_second
        print(
            f"LLM build, {args.latency} s latency, {workers} worker(s): "
            f"{summary.rows.delivered} rows in {summary.build_seconds:.1f} s = "
            f"{summary.rows_per_second:.0f} rows/s"
        )
    print(f"speed-up from 8 concurrent chunk tasks: {rates[8] / rates[1]:.1f}x")


if __name__ == "__main__":
    main()
