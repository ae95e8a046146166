"""`synthaix serve`: the deployments of prefect.yaml served by this one process (flow.serve),
with their schedules and parameters; no work pool or worker needed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from prefect import serve
from prefect.client.schemas.schedules import CronSchedule
from prefect.settings import get_current_settings

from flows.build_dataset import build_dataset
from synthaix.errors import ConfigError

ENTRYPOINT = "flows/build_dataset.py:build_dataset"


def deployments_from(spec_path: Path, only: list[str] | None = None) -> list[Any]:
    """RunnerDeployments for the build-dataset deployments of a prefect.yaml. Config paths are
    made absolute, so the served flow finds them whatever the working directory."""
    try:
        spec = yaml.safe_load(spec_path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read {spec_path}: {exc}") from None
    found = []
    for entry in spec.get("deployments", []):
        if entry.get("entrypoint") != ENTRYPOINT or (only and entry["name"] not in only):
            continue
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
                name=entry["name"],
                description=entry.get("description"),
                parameters=parameters,
                schedules=schedules or None,
            )
        )
    missing = set(only or []) - {d.name for d in found}
    if missing:
        raise ConfigError(f"no deployment named {', '.join(sorted(missing))} in {spec_path}")
    if not found:
        raise ConfigError(f"{spec_path} has no deployments of {ENTRYPOINT}")
    return found


def serve_deployments(spec_path: Path, only: list[str] | None = None) -> None:
    if not get_current_settings().api.url:
        # Prefect's temporary server runs no scheduler: the schedules would never fire.
        raise ConfigError(
            "synthaix serve needs a Prefect server for its schedules",
            hint="run `prefect server start` and export PREFECT_API_URL=http://127.0.0.1:4200/api",
        )
    serve(*deployments_from(spec_path, only))
