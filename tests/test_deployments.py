"""prefect.yaml points at the real flow and at configs that validate."""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

import pytest
import yaml

from synthaix.config import load_config
from synthaix.overrides import TYPED, apply_overrides, typed

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
        typed_values = {k: v for k, v in parameters.items() if k in TYPED}
        values = typed(typed_values) | parameters.get("overrides", {})
        config = apply_overrides(load_config(ROOT / parameters["config_path"]), values)
        if "overrides" in parameters:  # the schedule's window: relative to the run's slot
            assert config.as_of is not None, deployment["name"]
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
    pair = deployments_from(ROOT / "prefect.yaml", only=["employees-on-demand,customers-nightly"])
    assert {d.name for d in pair} == {"employees-on-demand", "customers-nightly"}
    with pytest.raises(ConfigError, match="no deployment named nope") as info:
        deployments_from(ROOT / "prefect.yaml", only=["nope"])
    assert "customers-nightly" in str(info.value.hint)


def test_workers_clone_the_repository_a_prefect_variable_names() -> None:
    # Not `pull: null`, which records the deploying machine's working directory.
    spec = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    (step,) = spec["pull"]
    clone = step["prefect.deployments.steps.git_clone"]
    assert clone["repository"] == "{{ prefect.variables.synthaix_repository }}"
    assert "synthaix_repository" in (ROOT / "README.md").read_text()
    assert all("pull" not in deployment for deployment in spec["deployments"])


def test_append_deployments_run_one_at_a_time_deployed_or_served(tmp_path: Path) -> None:
    from flows.serve import APPEND_LIMIT, deployments_from

    spec = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    appends = {
        d["name"]
        for d in spec["deployments"]
        if (
            d["parameters"].get("mode")
            or yaml.safe_load((ROOT / d["parameters"]["config_path"]).read_text()).get("mode")
        )
        == "append"
    }
    assert appends == {"orders-hourly-append"}  # by its parameters or its config's own mode
    for deployment in spec["deployments"]:
        limit = deployment.get("concurrency_limit")
        if deployment["name"] in appends:
            assert limit == {"limit": 1, "collision_strategy": "ENQUEUE"}
    served = {d.name: d for d in deployments_from(ROOT / "prefect.yaml")}
    assert served["orders-hourly-append"].concurrency_limit == 1
    assert served["orders-hourly-append"].concurrency_options.collision_strategy == "ENQUEUE"
    assert all(d.concurrency_limit is None for n, d in served.items() if n not in appends)

    # Served: an entry without concurrency_limit gets one when it appends, by its parameters
    # or by its config's own mode; an explicit one is kept.
    config = tmp_path / "appending.yaml"
    config.write_text("name: t\nrows: 10\nmode: append\ncolumns: [{name: a, type: uuid}]\n")
    entry = {"entrypoint": "flows/build_dataset.py:build_dataset"}
    entries = [
        entry | {"name": "by-parameter", "parameters": {"config_path": "x.yaml", "mode": "append"}},
        entry | {"name": "by-config", "parameters": {"config_path": config.name}},
        entry | {"name": "overwrite", "parameters": {"config_path": "x.yaml"}},
        entry | {"name": "three", "parameters": {"config_path": "x.yaml"}, "concurrency_limit": 3},
    ]
    (tmp_path / "prefect.yaml").write_text(yaml.safe_dump({"deployments": entries}))
    served = {d.name: d for d in deployments_from(tmp_path / "prefect.yaml")}
    assert APPEND_LIMIT.limit == 1 and APPEND_LIMIT.collision_strategy == "ENQUEUE"
    assert served["by-parameter"].concurrency_limit == served["by-config"].concurrency_limit == 1
    assert served["overwrite"].concurrency_limit is None
    assert served["three"].concurrency_limit == 3


def test_serve_suffix_names_the_served_deployments() -> None:
    import pytest

    from flows.serve import deployments_from
    from synthaix.errors import ConfigError

    names = [
        d.name for d in deployments_from(ROOT / "prefect.yaml", ["employees-on-demand"], "-local")
    ]
    assert names == ["employees-on-demand-local"]
    with pytest.raises(ConfigError, match="cannot be part of a deployment name"):
        deployments_from(ROOT / "prefect.yaml", suffix="/local")


def test_a_deployment_run_refuses_outputs_its_worker_deletes(tmp_path: Path) -> None:
    """Without a data root, a process worker's run writes under the temporary folder its pull
    step cloned into, which the worker deletes afterwards: the run said Completed and the
    data was gone. Outputs there are refused; elsewhere they are kept."""
    import tempfile

    from synthaix.config import parse_any_config
    from synthaix.errors import ConfigError
    from tasks.plan import kept_after_the_run

    clone = Path(tempfile.mkdtemp(suffix="prefect")) / "synthaix"
    data = {"name": "t", "rows": 5, "columns": [{"name": "n", "type": "sequence"}]}
    config = parse_any_config({**data, "output": {"dir": str(clone / "out" / "t")}})
    with pytest.raises(ConfigError, match="inside the worker's temporary working directory"):
        kept_after_the_run(config)
    kept_after_the_run(parse_any_config({**data, "output": {"dir": str(tmp_path / "t")}}))
    clone.parent.rmdir()
