"""Plain words -> a dataset config file, as a Prefect flow (for the UI and scheduled use)."""

from __future__ import annotations

from pathlib import Path

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from synthaix.files import write_text_atomic
from synthaix.llm.provider import ProviderConfig
from synthaix.llm.translate import to_yaml, translate


@task(name="translate-description", cache_policy=NO_CACHE)
def translate_task(description: str, provider: ProviderConfig, rows: int) -> tuple[str, list[str]]:
    config, notes = translate(description, provider, rows=rows)
    return to_yaml(config, notes), notes


@flow(name="translate-schema")
def translate_schema(
    description: str,
    output_path: str,
    rows: int = 1000,
    provider: ProviderConfig | None = None,
) -> str:
    """Write a config for `description` to `output_path`; returns the path."""
    text, _ = translate_task(description, provider or ProviderConfig(), rows)
    return str(write_text_atomic(Path(output_path), text))
