"""The first steps of a build as Prefect tasks: translate a description, plan the build."""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from synthaix.columns.llm import LlmColumn
from synthaix.config import DatasetConfig, load_config, parse_any_config
from synthaix.errors import ConfigError
from synthaix.fence import PREFECT_VARIABLE, confine, output_root, rebase
from synthaix.llm.client import LlmClient
from synthaix.llm.credentials import resolve_config
from synthaix.llm.provider import ProviderConfig
from synthaix.llm.translate import to_yaml, translate
from synthaix.overrides import apply_overrides
from synthaix.relational.config import RelationalConfig
from tasks.limits import ensure_limits


def from_description(
    description: str, config_path: str | None, config: Any, provider: ProviderConfig, rows: int
) -> DatasetConfig:
    """The config for plain words, when no other config was given (a deployment presets
    `config_path`: plain words beside it were silently ignored, and the preset rebuilt)."""
    given = [name for name, value in (("config_path", config_path), ("config", config)) if value]
    if given:
        raise ConfigError(
            "give exactly one of the parameters config_path, config or description: "
            f"{' and '.join(given)} is set too",
            hint="to build from plain words, clear config_path (deployments preset it)",
        )
    return translate_description(description, provider, rows)[0]


@task(name="translate-description", cache_policy=NO_CACHE)
def translate_description(
    description: str, provider: ProviderConfig, rows: int
) -> tuple[DatasetConfig, str]:
    """A config for plain words, and its YAML (with notes on what was repaired), which is an
    artifact of the run too: what was built, to keep as a config file."""
    from prefect.artifacts import create_markdown_artifact

    from tasks.progress import artifact_key

    config, notes = translate(description, provider, rows=rows)
    text = to_yaml(config, notes)
    create_markdown_artifact(
        f"```yaml\n{text}\n```",
        key=artifact_key(config, "config"),
        description=f"The config translated from: {description[:200]}",
    )
    return config, text


@task(name="plan-build", cache_policy=NO_CACHE)
def plan_build(
    config_path: str | None,
    config: DatasetConfig | RelationalConfig | dict[str, Any] | None,
    overrides: dict[str, Any],
    preflight: bool = True,
    translated: bool = False,
) -> DatasetConfig | RelationalConfig:
    """The config to build: read (or validated, if given inline), overrides (config path ->
    value) applied, `{{ prefect.variables.NAME }}` provider settings resolved, every output
    path inside the worker's output root (relative ones anchored at it), and the LLM endpoint
    and limits checked (`preflight=False`: the caller, e.g. the CLI, checked it already).
    `translated`: the config was written from plain words, and its name chosen by the model."""
    if (config_path is None) == (config is None):
        both = config_path is not None
        raise ConfigError(
            "give exactly one of the parameters config_path, config or description"
            + (": config_path is set too" if both else ""),
            hint="to build an inline config, clear config_path (deployments preset it): "
            '--params \'{"config_path": null, "config": {...}}\''
            if both
            else None,
        )
    if overrides.get("as_of") is not None:
        _instant(overrides["as_of"])  # not a time: said of the parameter, not the config file
    if config_path is not None:
        base = load_config(config_path, as_of=overrides.get("as_of"))
    elif isinstance(config, dict):
        at = {"as_of": overrides["as_of"]} if overrides.get("as_of") is not None else {}
        base = parse_any_config(config | at, origin="config parameter")
    else:
        base = config
    as_of = overrides.pop("as_of", None)
    if as_of is not None and (base.as_of is not None or overrides):
        overrides["as_of"] = as_of  # else the config does not use it: nothing to re-validate
    # A scheduled run's as_of is not a parameter the user set: errors do not name it.
    changed = apply_overrides(base, overrides, origin="parameters", unnamed="as_of")
    base = resolve_config(changed)
    # The Variable is the workers' setting: a flow run from the CLI honours the environment's.
    root = output_root() or (_variable(PREFECT_VARIABLE) if _deployment_run() else None)
    if root:  # a worker's data root: relative outputs go under it, and nothing outside
        base = rebase(base, Path(root))
        confine(base, Path(root))
    elif _deployment_run() is not None:
        kept_after_the_run(base)
    if translated and "output.dir" not in overrides:
        _not_replacing(base)
    if _deployment_run() is not None and as_of is not None:
        base._slot = _instant(as_of)  # a retry or rerun of this slot does not append again
    for table in llm_tables(base):
        if preflight:
            LlmClient(table.provider).check()  # wrong URL, key or model: fail before any chunk
            preflight = False  # one provider for every table
        ensure_limits(table)
    return base


def _not_replacing(config: DatasetConfig | RelationalConfig) -> None:
    """A config from plain words writes where the model's name for it points (out/customers):
    a run replaced another deployment's `customers` with two columns. It writes there only
    when nothing was built there, or when `out` says so."""
    if (config.output_dir / "manifest.json").is_file():
        raise ConfigError(
            f"the config written from the description builds '{config.name}' into "
            f"{config.output_dir}, which holds a dataset built earlier: a run from plain words "
            "does not replace it unless told to",
            hint=f"pass out: a new folder, or out: {config.output_dir} to replace that dataset",
        )


def kept_after_the_run(config: DatasetConfig | RelationalConfig) -> None:
    """Refuse outputs inside a process worker's temporary working directory (where its pull
    step clones the repository): the worker deletes it when the run ends, so a run that
    reported success had lost its data."""
    for path in (config.output_dir, config.duckdb_path):
        where = Path(path).resolve()
        temporary = next((p for p in (where, *where.parents) if _worker_temporary(p)), None)
        if temporary is not None:
            raise ConfigError(
                f"output {where} is inside the worker's temporary working directory "
                f"{temporary}, which the worker deletes when the run ends: the data would "
                "be lost",
                hint=f"set the worker's data root: prefect variable set {PREFECT_VARIABLE} "
                "/srv/synthaix (or SYNTHAIX_OUTPUT_ROOT), or give an absolute out",
            )


def _worker_temporary(path: Path) -> bool:
    """A folder Prefect's process worker makes for a run (tempfile's, suffix `prefect`)."""
    temporary = Path(tempfile.gettempdir()).resolve()
    return (
        path.parent == temporary and path.name.startswith("tmp") and path.name.endswith("prefect")
    )


def _instant(value: Any) -> datetime:
    """The slot's time as an aware UTC datetime, to the microsecond: the `overrides`
    parameter may carry it as text, and two quick runs of a deployment start a few
    milliseconds apart (each its own slot)."""
    from pydantic import TypeAdapter, ValidationError

    try:
        moment: datetime = TypeAdapter(datetime).validate_python(value)
    except ValidationError:
        raise ConfigError(
            f"parameter as_of: {value!r} is not a time",
            hint="give an ISO time such as 2026-11-27T19:00:00Z (UTC unless it has an offset)",
        ) from None
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


def _variable(name: str) -> Any:
    from prefect.variables import Variable

    return Variable.get(name, default=None)


def llm_tables(config: DatasetConfig | RelationalConfig) -> list[DatasetConfig]:
    """The single-table configs (one per table of a multi-table dataset) with llm columns."""
    tables = (
        [config.plan(name).config for name in config.order]
        if isinstance(config, RelationalConfig)
        else [config]
    )
    return [t for t in tables if any(isinstance(c, LlmColumn) for c in t.columns)]


def scheduled_as_of() -> datetime | None:
    """A deployment run's scheduled start (the slot a schedule made it for, kept by its
    retries); None for a flow called directly, whose config's as_of is the time it was read."""
    run = _deployment_run()
    return run.expected_start_time if run is not None else None


def _deployment_run() -> Any:
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    run = context.flow_run if context is not None else None
    return run if run is not None and run.deployment_id is not None else None
