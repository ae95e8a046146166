"""Chunk generation as a Prefect task: the only task that runs on the chunk runner (threads,
Dask or Ray workers), so it installs the shared LLM limits in whatever process it lands."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.tasks import exponential_backoff

from synthaix import generate
from synthaix.columns.llm import LlmColumn
from synthaix.config import DatasetConfig
from synthaix.generate import Chunk, ChunkResult
from tasks.limits import install_llm_gate
from tasks.retry import retry_only_transient


@task(
    name="generate-chunk",
    task_run_name="chunk-{chunk.index}",
    retries=3,
    retry_delay_seconds=exponential_backoff(backoff_factor=2),  # 2, 4, 8 s
    retry_jitter_factor=0.5,
    retry_condition_fn=retry_only_transient,
    cache_policy=NO_CACHE,
    # No tags: with any tag, Prefect checks tag concurrency limits on the API before each run,
    # which delayed every chunk after the first ones by ~2 s (measured on the local server).
)
def generate_chunk(config: DatasetConfig, chunk: Chunk) -> ChunkResult:
    if any(isinstance(c, LlmColumn) for c in config.columns):
        install_llm_gate(config)
    return generate.generate_chunk(config, chunk)
