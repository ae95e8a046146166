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
    config: DatasetConfig | None,
    rows: int | None,
    seed: int | None,
    out: str | None,
    mode: str | None,
    runner: str | None,
    preflight: bool = True,
) -> DatasetConfig:
    """The config to build, overrides applied; the LLM endpoint and limits checked first
    (`preflight=False`: the caller, e.g. the CLI, checked the endpoint already)."""
    if (config_path is None) == (config is None):
        raise ConfigError("give exactly one of config_path, config or description")
    base = config if config is not None else load_config(config_path)  # type: ignore[arg-type]
    overrides = {"rows": rows, "seed": seed, "mode": mode, "runner": runner}
    if out is not None or any(v is not None for v in overrides.values()):
        base = base.with_overrides(out=Path(out) if out else None, **overrides)  # type: ignore[arg-type]
    if any(isinstance(c, LlmColumn) for c in base.columns):
        if preflight:
            LlmClient(base.provider).check()  # wrong URL, key or model: fail before any chunk
        ensure_limits(base)
    return base
