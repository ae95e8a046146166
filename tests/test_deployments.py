"""prefect.yaml points at the real flow and at configs that validate."""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

import yaml

from synthaix.config import load_config

ROOT = Path(__file__).resolve().parents[1]


def test_every_deployment_is_runnable() -> None:
    spec = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    assert len(spec["deployments"]) >= 4
    for deployment in spec["deployments"]:
        module_path, function = deployment["entrypoint"].split(":")
        module = importlib.import_module(module_path.removesuffix(".py").replace("/", "."))
        flow = getattr(module, function)
        accepted = set(inspect.signature(flow.fn).parameters)
        parameters = deployment["parameters"]
        assert set(parameters) <= accepted, deployment["name"]
        load_config(ROOT / parameters["config_path"]).with_overrides(
            rows=parameters.get("rows"), mode=parameters.get("mode")
        )
        for schedule in deployment.get("schedules", []):
            assert len(schedule["cron"].split()) == 5
