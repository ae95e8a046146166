"""The build flow's parameters, as the Prefect UI's run form shows them: each with a
description and its constraints in the schema. Empty (None) always means "the config's value",
so a deployment's form only needs what a run changes."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field

from synthaix.config import DatasetConfig
from synthaix.llm.provider import ProviderConfig
from synthaix.relational.config import RelationalConfig

_EMPTY = " Empty: the config's value."


def _described(text: str, default: Any = None) -> Any:
    """A parameter's default with its description (Prefect reads descriptions from the
    default, in the loaded flow and in `prefect deploy`'s reading of the source alike)."""
    return Field(default, description=text)


ConfigPath = str | None
CONFIG_PATH = _described(
    "Dataset config (YAML) to build, relative to the worker's working directory (a "
    "deployment's checkout), e.g. configs/customers.yaml. Give this, config or description."
)
ConfigInline = Annotated[
    DatasetConfig | RelationalConfig | dict[str, Any] | None, Field(union_mode="left_to_right")
]
CONFIG = _described(
    "A dataset config given inline (the YAML file's content, as JSON) instead of config_path."
)
Description = str | None
DESCRIPTION = _described(
    "Plain words ('an online shop with customers, orders and reviews'): the LLM provider "
    "(model, base_url) writes the config first. Instead of config_path or config."
)
Rows = Annotated[int, Field(ge=1, le=10_000_000_000)] | None
ROWS = _described(
    "Rows to deliver (a multi-table dataset: rows of each table without a parent; children "
    "follow their counts, and a child's rows total scales with them). Append: rows to add." + _EMPTY
)
Seed = Annotated[int, Field(ge=0)] | Literal["as_of"] | None
SEED = _described(
    "Same config and seed give the same data. 'as_of': a seed derived from as_of, so each "
    "scheduled run differs yet a rerun of one slot is the same." + _EMPTY
)
# The pattern: Prefect checks a run's parameters against the schema when the run is created,
# but not `format: date-time` (its checker needs a package Prefect leaves out): without it,
# `as_of=yesterday` was accepted and failed in the worker with a traceback.
# Months, days, hours and minutes in range too: 2026-13-45 passed the shape and failed in the
# worker, with Prefect's traceback (a 30 February still does).
_ISO = (
    r"^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])"
    r"([T ]([01]\d|2[0-3]):[0-5]\d(:[0-5]\d(\.\d+)?)?)?(Z|[+-]([01]\d|2[0-3])(:?[0-5]\d)?)?$"
)
AsOf = Annotated[datetime, Field(json_schema_extra={"pattern": _ISO})] | None
AS_OF = _described(
    "The time the data stands at, ISO 8601 (2026-11-27T10:00:00Z; UTC unless an offset is "
    "given): relative times in the config (start: -1h, end: now) resolve against it. Empty: "
    "the run's scheduled start (a deployment run), else the time the config is read."
)
Mode = Literal["overwrite", "append"] | None
MODE = _described("overwrite replaces the output at once; append adds rows to it." + _EMPTY)
Out = str | None
OUT = _described("Output directory (output.dir)." + _EMPTY)
Runner = Literal["thread", "dask", "ray"] | None
RUNNER = _described("Where chunk tasks run: threads, a Dask or a Ray cluster." + _EMPTY)
Workers = Annotated[int, Field(ge=1, le=256)] | None
WORKERS = _described("Chunk tasks running at once (runner.workers)." + _EMPTY)
ChunkSize = Annotated[int, Field(ge=1, le=10_000_000)] | None
CHUNK_SIZE = _described("Rows generated per chunk task (chunk_size)." + _EMPTY)
Model = str | None
MODEL = _described("LLM model name, as the endpoint knows it (provider.model)." + _EMPTY)
BaseUrl = str | None
BASE_URL = _described(
    "OpenAI-compatible endpoint, e.g. http://vllm:8000/v1 (provider.base_url)." + _EMPTY
)
Overrides = dict[str, Any] | None
OVERRIDES = _described(
    'Any other config value, by its dotted path, as the CLI\'s --set: {"runner.workers": 8, '
    '"columns.ordered_at.start": "-1h", "tables.orders.count.mean": 5} (columns and '
    "tables by name). Applied after the typed parameters above."
)
REPORT = _described(
    "Also write the HTML report (report.html in the output directory) and link it as an "
    "artifact of the run.",
    False,
)
PREFLIGHT = _described(
    "Check the LLM endpoint, key and model with one request before any chunk runs (leave "
    "on; the CLI turns it off, having checked them already).",
    True,
)


def given(text: str | None) -> str | None:
    """A text parameter, or None when empty or blank (a form's cleared field)."""
    return text if text and text.strip() else None


def provider_for(model: str | None, base_url: str | None) -> ProviderConfig:
    """The provider that translates a description: the run's model and endpoint, if given."""
    chosen = {"model": given(model), "base_url": given(base_url)}
    return ProviderConfig(**{k: v for k, v in chosen.items() if v is not None})
