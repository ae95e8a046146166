"""Plain words -> a dataset config file, as a Prefect flow (for the UI and scheduled use)."""

from __future__ import annotations

from pathlib import Path

from prefect import flow

from synthaix.files import write_text_atomic
from synthaix.llm.provider import ProviderConfig
from tasks.plan import translate_description


@flow(name="translate-schema")
def translate_schema(
    description: str,
    output_path: str,
    rows: int = 1000,
    provider: ProviderConfig | None = None,
) -> str:
    """Write a config for `description` to `output_path`; returns the path."""
    _, text = translate_description(description, provider or ProviderConfig(), rows)
    return str(write_text_atomic(Path(output_path), text))
