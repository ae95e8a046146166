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


def test_serve_builds_a_deployment_per_entry_with_its_schedules() -> None:
    import pytest

    from flows.serve import deployments_from
    from synthaix.errors import ConfigError

    spec = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    deployments = {d.name: d for d in deployments_from(ROOT / "prefect.yaml")}
    assert set(deployments) == {d["name"] for d in spec["deployments"]}
    nightly = deployments["customers-nightly"]
    assert [s.schedule.cron for s in nightly.schedules] == ["0 2 * * *"]
    assert Path(nightly.parameters["config_path"]) == ROOT / "configs" / "customers.yaml"
    assert deployments["orders-hourly-append"].parameters["mode"] == "append"
    assert deployments_from(ROOT / "prefect.yaml", only=["employees-on-demand"])[0].schedules == []
    with pytest.raises(ConfigError, match="no deployment named nope"):
        deployments_from(ROOT / "prefect.yaml", only=["nope"])
