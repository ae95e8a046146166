"""Chunk generation as a Prefect task."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from synthaix import generate
from synthaix.config import DatasetConfig
from synthaix.generate import Chunk, ChunkResult
from synthaix.llm.client import client_for
from synthaix.llm.provider import ProviderConfig
from tasks.retry import retry_only_transient


@task(
    name="generate-chunk",
    task_run_name="chunk-{chunk.index}",
    retries=3,
    retry_delay_seconds=[1, 5, 15],
    retry_jitter_factor=0.5,
    retry_condition_fn=retry_only_transient,
    cache_policy=NO_CACHE,
    # No tags: with any tag, Prefect checks tag concurrency limits on the API before each run,
    # which delayed every chunk after the first ones by ~2 s (measured on the local server).
)
def generate_chunk(config: DatasetConfig, chunk: Chunk) -> ChunkResult:
    return generate.generate_chunk(config, chunk)


@task(name="check-provider", cache_policy=NO_CACHE)
def check_provider(provider: ProviderConfig) -> None:
    """Fail fast on a wrong endpoint, key or model, before any chunk runs."""
    client_for(provider).check()
