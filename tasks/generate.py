"""Chunk generation as a Prefect task: the only task that runs on the chunk runner (threads,
Dask or Ray workers). Each worker process keeps one LLM client per provider and shared limit,
built with that limit's gate, so every chunk task of the process shares its request slots."""

from __future__ import annotations

import threading

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import State
from prefect.states import Cancelled
from prefect.tasks import exponential_backoff

from synthaix import generate
from synthaix.columns.llm import LlmColumn
from synthaix.config import DatasetConfig
from synthaix.dedupe.keys import key_columns
from synthaix.generate import Chunk, ChunkResult
from synthaix.llm.client import LlmClient
from synthaix.stopping import BuildStopped
from tasks.limits import limit_gate, limit_names
from tasks.retry import retry_only_transient

_clients: dict[str, LlmClient] = {}
_clients_lock = threading.Lock()


def _client(config: DatasetConfig) -> LlmClient | None:
    if not any(isinstance(c, LlmColumn) for c in config.columns):
        return None
    key = config.provider.model_dump_json() + repr(limit_names(config))
    with _clients_lock:
        if key not in _clients:
            _clients[key] = LlmClient(config.provider, gate=limit_gate(config))
        return _clients[key]


@task(
    name="generate-chunk",
    task_run_name="chunk-{chunk.index:06d}",
    retries=3,
    retry_delay_seconds=exponential_backoff(backoff_factor=2),  # 2, 4, 8 s
    retry_jitter_factor=0.5,
    retry_condition_fn=retry_only_transient,
    cache_policy=NO_CACHE,
    # No tags: with any tag, Prefect checks tag concurrency limits on the API before each run,
    # which delayed every chunk after the first ones by ~2 s (measured on the local server).
)
def generate_chunk(config: DatasetConfig, chunk: Chunk) -> ChunkResult | State:
    try:
        return generate.generate_chunk(config, chunk, _client(config), key_columns(config))
    except BuildStopped as stopped:  # the build is stopping: nothing failed here
        return Cancelled(message=str(stopped), data=stopped)  # raised again, with its spend
