"""Plain words -> a dataset config file, as a Prefect flow (for the UI and scheduled use)."""

from __future__ import annotations

from pathlib import Path

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

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
    path = Path(output_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text, encoding="utf-8")
    temporary.replace(path)
    return str(path)
