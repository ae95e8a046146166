"""Provider-aware pacing against the simulator's rate limits, side by side in one run.

1. 1,200 RPM with a 2 s burst, latency 0.2 s, max_concurrency 32, no rpm in the config:
   the build completes; 429s as a share of requests; answered requests/s over the flow body
   as a share of the RPM bound (20/s).
2. The same with a 60 s burst (the hosted-API default), 60,000 TPM and 5 ms per output token:
   answered requests/s against min(RPM bound, TPM bound / tokens per request); and the tokens
   used as a share of all the limit allowed, its first minute's burst included.
3. No limits, latency 0.5 s, with and without the fault mix: rows/s against the latency bound
   (concurrency x rows per request / latency).

    python benchmarks/pacing.py [--rows 3000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.request import urlopen

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "CRITICAL")

FAULT_MIX = "rate_limit=0.1,server_error=0.05,dropped=0.02,malformed=0.1,short=0.1,duplicates=0.1"


def config(url: str, rows: int, concurrency: int, k: int | None) -> dict:
    prompt = "A one-sentence review by a {{ age }}-year-old from {{ city }}"
    provider = {"base_url": url, "model": "sim-small", "max_concurrency": concurrency}
    if k is not None:
        provider["rows_per_request"] = k
    return {
        "name": "bench_pacing",
        "rows": rows,
        "chunk_size": max(50, rows // 10),
        "runner": {"workers": 4},
        "columns": [
            {"name": "age", "type": "integer", "min": 18, "max": 80},
            {"name": "city", "type": "category", "values": ["Berlin", "Paris", "Madrid"]},
            {"name": "review", "type": "llm", "prompt": prompt, "max_length": 160},
        ],
        "provider": provider,
    }


@contextmanager
def simulator(*options: str) -> Iterator[str]:
    """The simulator in its own process, so its CPU use does not slow the client's."""
    command = [sys.executable, "-m", "synthaix.cli", "sim", "--port", "0", "--seed", "1"]
    process = subprocess.Popen([*command, *options], stdout=subprocess.PIPE, text=True)
    try:
        yield process.stdout.readline().split()[2]  # "simulator on URL ..."
    finally:
        process.terminate()
        process.wait(10)


def run(label: str, options: list[str], rows: int, concurrency: int, k: int | None) -> dict:
    from flows.build_dataset import build_dataset
    from synthaix.config import parse_config

    with simulator(*options) as url, tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        state = build_dataset(
            config=parse_config(config(url, rows, concurrency, k)), out=tmp, return_state=True
        )
        wall = time.perf_counter() - started
        stats = json.loads(urlopen(url.replace("/v1", "/sim/stats")).read())
    counts = stats["counts"]
    if not state.is_completed():
        print(f"{label}: FAILED after {wall:.1f} s: {state.message}")
        return {}
    manifest = state.result()
    answered = counts.get("200", 0)
    seconds = manifest.build_seconds
    return {
        "label": label,
        "rows": manifest.rows.delivered,
        "seconds": seconds,
        "requests": counts.get("requests", 0),
        "answered": answered,
        "429": counts.get("429", 0),
        "answered_per_s": answered / seconds,
        "rows_per_s": manifest.rows_per_second,
        "tokens": manifest.llm.tokens,
        "tokens_per_request": manifest.llm.tokens / max(manifest.llm.requests, 1),
        "k": manifest.llm.rows_filled / max(manifest.llm.requests, 1),
    }


def say(result: dict, bound: float, what: str) -> None:
    if not result:
        return
    share = result["429"] / max(result["requests"], 1)
    value = result["answered_per_s"] if what == "answered/s" else result["rows_per_s"]
    print(
        f"{result['label']:34} {result['rows']:,} rows in {result['seconds']:5.1f} s; "
        f"{result['answered']:,} answered of {result['requests']:,} requests, 429s {share:5.1%}; "
        f"{what} = {value:,.1f} = {value / bound:4.0%} of the bound {bound:,.1f}; "
        f"{result['k']:.1f} rows/request"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=3000)
    args = parser.parse_args()
    print(f"{os.cpu_count()} cores; bounds are per second")

    rpm = ["--rpm", "1200", "--latency", "0.2"]
    first = run("1200 RPM, 2 s burst", [*rpm, "--burst-seconds", "2"], args.rows, 32, 5)
    say(first, 1200 / 60, "answered/s")

    tokens = ["--tpm", "60000", "--latency-per-token", "0.005", "--burst-seconds", "60"]
    second = run("1200 RPM + 60k TPM, 60 s burst", [*rpm, *tokens], args.rows, 32, None)
    if second:
        tpm_bound = 60000 / 60 / second["tokens_per_request"]
        say(second, min(1200 / 60, tpm_bound), "answered/s")
        # The bound above leaves out the bucket's first minute (a full 60 s burst): the tokens
        # used as a share of all the limit allowed over the build, burst included.
        allowed = 60000 + 60000 / 60 * second["seconds"]
        print(
            f"{'':34} tokens used {second['tokens']:,} = {second['tokens'] / allowed:.0%} of the "
            f"{allowed:,.0f} the limit allowed in {second['seconds']:.1f} s (60k burst included)"
        )

    latency_bound = 16 * 20 / 0.5
    for label, faults in (("no limits, no faults", ""), ("no limits, fault mix", FAULT_MIX)):
        options = ["--latency", "0.5", *(["--faults", faults] if faults else [])]
        say(run(label, options, args.rows * 3, 16, 20), latency_bound, "rows/s")


if __name__ == "__main__":
    main()
