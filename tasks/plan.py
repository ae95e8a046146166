"""The first steps of a build as Prefect tasks: translate a description, plan the build."""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from synthaix.columns.llm import LlmColumn
from synthaix.config import DatasetConfig, load_config
from synthaix.errors import ConfigError
from synthaix.llm.client import LlmClient
from synthaix.llm.provider import ProviderConfig
from synthaix.llm.translate import to_yaml, translate
from synthaix.relational.config import RelationalConfig
from tasks.limits import ensure_limits


@task(name="translate-description", cache_policy=NO_CACHE)
def translate_description(
    description: str, provider: ProviderConfig, rows: int
) -> tuple[DatasetConfig, str]:
    """A config for plain words, and its YAML (with notes on what was repaired)."""
    config, notes = translate(description, provider, rows=rows)
    return config, to_yaml(config, notes)


@task(name="plan-build", cache_policy=NO_CACHE)
def plan_build(
    config_path: str | None,
    config: DatasetConfig | RelationalConfig | None,
    rows: int | None,
    seed: int | None,
    out: str | None,
    mode: str | None,
    runner: str | None,
    preflight: bool = True,
) -> DatasetConfig | RelationalConfig:
    """The config to build, overrides applied; the LLM endpoint and limits checked first
    (`preflight=False`: the caller, e.g. the CLI, checked the endpoint already)."""
    if (config_path is None) == (config is None):
        raise ConfigError("give exactly one of config_path, config or description")
    base = config if config is not None else load_config(config_path)  # type: ignore[arg-type]
    overrides = {"rows": rows, "seed": seed, "mode": mode, "runner": runner}
    if out is not None or any(v is not None for v in overrides.values()):
        base = base.with_overrides(out=Path(out) if out else None, **overrides)  # type: ignore[arg-type]
    for table in llm_tables(base):
        if preflight:
            LlmClient(table.provider).check()  # wrong URL, key or model: fail before any chunk
            preflight = False  # one provider for every table
        ensure_limits(table)
    return base


def llm_tables(config: DatasetConfig | RelationalConfig) -> list[DatasetConfig]:
    """The single-table configs (one per table of a multi-table dataset) with llm columns."""
    tables = (
        [config.plan(name).config for name in config.order]
        if isinstance(config, RelationalConfig)
        else [config]
    )
    return [t for t in tables if any(isinstance(c, LlmColumn) for c in t.columns)]
