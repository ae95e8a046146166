"""Shared pieces of the LLM tests: the simulator with the issue's fault mix."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from synthaix.sim.faults import FaultRates
from synthaix.sim.server import SimConfig, SimServer

FAULT_MIX = FaultRates(
    malformed=0.3,
    rate_limit=0.1,
    server_error=0.05,
    dropped=0.02,
    duplicates=0.2,
    wrong_types=0.1,
    short=0.1,
)


@contextmanager
def simulator(faults: FaultRates | None = None, **options) -> Iterator[SimServer]:
    options.setdefault("retry_after_ms", 10)
    with SimServer(SimConfig(faults=faults or FaultRates(), **options)) as server:
        yield server


def provider(url: str, **options) -> dict:
    return {"base_url": url, "model": "sim-small", "max_concurrency": 8, **options}


def refuse_after(sim: SimServer, answered: int) -> threading.Thread:
    """A running watcher that makes the simulator refuse every request (401: not retried)
    once it has answered `answered` chat requests (record=True); join it after the build."""

    def watch() -> None:
        while len(sim.state.requests()) < answered:
            time.sleep(0.002)
        sim.state.config.api_key = "someone-else"

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    return watcher
