"""`synthaix serve`: the deployments of prefect.yaml served by this one process (flow.serve),
with their schedules and parameters; no work pool or worker needed.

The same prefect.yaml feeds `prefect deploy`, under the same names (build-dataset/<name>):
serving over a deployment of a work pool would rewrite it (no pool, no pull step, a local
path), after which its worker runs crash. So serve refuses such names before serving anything
(`refuse_work_pool_deployments`); `--suffix` serves them under other names beside them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from prefect import get_client, serve
from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
from prefect.client.schemas.schedules import CronSchedule
from prefect.exceptions import ObjectNotFound
from prefect.settings import get_current_settings
from prefect.types.names import BANNED_CHARACTERS

from flows.build_dataset import build_dataset
from synthaix.errors import ConfigError

ENTRYPOINT = "flows/build_dataset.py:build_dataset"
#: An append deployment runs one build at a time, the others wait (Prefect's AwaitingConcurrency
#: Slot): two appends to one dataset at once would collide on its lock, and the second fail.
APPEND_LIMIT = ConcurrencyLimitConfig(limit=1, collision_strategy=ConcurrencyLimitStrategy.ENQUEUE)


def deployments_from(spec_path: Path, only: list[str] | None = None, suffix: str = "") -> list[Any]:
    """RunnerDeployments for the build-dataset deployments of a prefect.yaml, named <name><suffix>
    (`only` filters by the names in the file). Config paths are made absolute, so the served
    flow finds them whatever the working directory."""
    if any(c in suffix for c in BANNED_CHARACTERS):
        raise ConfigError(
            f"--suffix {suffix!r} cannot be part of a deployment name",
            hint=f"leave out {' '.join(BANNED_CHARACTERS)}, e.g. --suffix -local",
        )
    try:
        spec = yaml.safe_load(spec_path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read {spec_path}: {exc}") from None
    if only:  # `--only a,b` as well as `--only a --only b`
        only = [name.strip() for names_ in only for name in names_.split(",") if name.strip()]
    found, names = [], set()
    for entry in spec.get("deployments", []):
        if entry.get("entrypoint") != ENTRYPOINT or (only and entry["name"] not in only):
            continue
        names.add(entry["name"])
        parameters = dict(entry.get("parameters") or {})
        if "config_path" in parameters:
            parameters["config_path"] = str(
                (spec_path.parent / parameters["config_path"]).resolve()
            )
        schedules = [
            CronSchedule(cron=s["cron"], timezone=s.get("timezone", "UTC"))
            for s in entry.get("schedules") or []
        ]
        found.append(
            build_dataset.to_deployment(
                name=entry["name"] + suffix,
                description=entry.get("description"),
                parameters=parameters,
                schedules=schedules or None,
                concurrency_limit=concurrency_limit_of(entry, parameters),
            )
        )
    missing = set(only or []) - names
    if missing:
        served = [
            e["name"] for e in spec.get("deployments", []) if e.get("entrypoint") == ENTRYPOINT
        ]
        raise ConfigError(
            f"no deployment named {', '.join(sorted(missing))} in {spec_path}",
            hint=f"its deployments: {', '.join(served)}",
        )
    if not found:
        raise ConfigError(f"{spec_path} has no deployments of {ENTRYPOINT}")
    return found


def concurrency_limit_of(
    entry: dict[str, Any], parameters: dict[str, Any]
) -> ConcurrencyLimitConfig | None:
    """The entry's `concurrency_limit`, read as `prefect deploy` reads it (a number, or
    {limit, collision_strategy, grace_period_seconds}); else APPEND_LIMIT for a deployment that
    appends (its parameters' mode, or else its config's), else none."""
    given = entry.get("concurrency_limit")
    if given is not None:
        try:
            return ConcurrencyLimitConfig.model_validate(
                given if isinstance(given, dict) else {"limit": given}
            )
        except ValueError as exc:
            raise ConfigError(
                f"deployment {entry.get('name')}: invalid concurrency_limit {given!r}: {exc}"
            ) from None
    mode = parameters.get("mode")
    if mode is None and parameters.get("config_path"):
        try:
            config = yaml.safe_load(Path(parameters["config_path"]).read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError):
            config = None  # the flow run reports it, with the config's own error
        mode = config.get("mode") if isinstance(config, dict) else None
    return APPEND_LIMIT if mode == "append" else None


def refuse_work_pool_deployments(deployments: list[Any]) -> None:
    """Refuse (ConfigError), before anything is served, deployments that exist on the Prefect
    server in a work pool (made by `prefect deploy`): serving would take them over. One that
    serve made before (no work pool) is served again as it was."""
    taken: list[tuple[str, str]] = []
    with get_client(sync_client=True) as client:
        for deployment in deployments:
            name = f"{build_dataset.name}/{deployment.name}"
            try:
                existing = client.read_deployment_by_name(name)
            except ObjectNotFound:
                continue
            if existing.work_pool_name:
                taken.append((name, existing.work_pool_name))
    if taken:
        names = ", ".join(name for name, _ in taken)
        pools = ", ".join(sorted({pool for _, pool in taken}))
        exists, them = ("exists", "it") if len(taken) == 1 else ("exist", "them")
        raise ConfigError(
            f"{names} already {exists} in work pool {pools} (made by `prefect deploy`); "
            f"synthaix serve will not take {them} over",
            hint=f"serve beside {them} under other names: synthaix serve --suffix -local (or "
            f"remove {them} first, e.g. prefect deployment delete {taken[0][0]})",
        )


def checked_deployments(
    spec_path: Path, only: list[str] | None = None, suffix: str = ""
) -> list[Any]:
    """The deployments `synthaix serve` would serve, after refusing any it would take over."""
    deployments = deployments_from(spec_path, only, suffix)
    refuse_work_pool_deployments(deployments)
    return deployments


def serve_deployments(spec_path: Path, only: list[str] | None = None, suffix: str = "") -> None:
    if not get_current_settings().api.url:
        # Prefect's temporary server runs no scheduler: the schedules would never fire.
        raise ConfigError(
            "synthaix serve needs a Prefect server for its schedules",
            hint="run `prefect server start` and export PREFECT_API_URL=http://127.0.0.1:4200/api",
        )
    serve(*checked_deployments(spec_path, only, suffix))
