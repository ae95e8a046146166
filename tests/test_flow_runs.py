"""The build flow as a Prefect user runs it, against a real Prefect API (the test harness): a
run form that explains itself, schedule-aware data, an output root, reports, quiet failures and
task-run names."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import time
from pathlib import Path
from uuid import UUID

import duckdb
import pyarrow.parquet as pq
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    FlowRunFilter,
    FlowRunFilterId,
    LogFilter,
    LogFilterFlowRunId,
)

from conftest import write_config

pytestmark = pytest.mark.usefixtures("prefect_server")
ROOT = Path(__file__).resolve().parents[1]

EVENTS = [
    {"name": "event_id", "type": "uuid"},
    {"name": "at", "type": "datetime", "start": "-1h", "end": "now"},
    {"name": "day", "type": "date", "start": "today-7d", "end": "today"},
    {"name": "amount", "type": "integer", "min": 1, "max": 1_000_000},
]


def _events(tmp_path: Path, **extra) -> dict:
    return {
        "name": "events",
        "rows": 3000,
        "chunk_size": 500,
        "seed": 5,
        "columns": EVENTS,
        "output": {"dir": str(tmp_path / "out")},
        **extra,
    }


def _read(out: Path, table: str = "events"):
    with duckdb.connect(str(out / f"{table}.duckdb"), read_only=True) as con:
        return con.sql(f"SELECT * FROM {table}").to_arrow_table()


def test_the_run_form_explains_every_parameter() -> None:
    """The schema a deployment shows in the UI: every parameter described, empty meaning the
    config's value, and the bounds in the schema (rows >= 1), so a bad value is refused by the
    API before any worker runs it."""
    from flows.build_dataset import build_dataset

    deployment_id = build_dataset.to_deployment(name="form-check").apply()
    with get_client(sync_client=True) as client:
        schema = client.read_deployment(deployment_id).parameter_openapi_schema
        properties = schema["properties"]
        assert {"rows", "seed", "as_of", "workers", "chunk_size", "model", "base_url"} <= set(
            properties
        )
        assert {"report", "mode", "out", "runner", "config_path", "config"} <= set(properties)
        for name, spec in properties.items():
            assert len(spec.get("description", "")) > 20, name
        for name in ("rows", "seed", "workers", "chunk_size", "model", "base_url", "mode"):
            assert "Empty: the config's value" in properties[name]["description"], name
        minimum = [s.get("minimum") for s in properties["rows"]["anyOf"] if "type" in s]
        assert 1 in minimum
        # `prefect deploy` reads the schema from the source, without importing: the same form.
        from prefect.utilities.callables import parameter_schema_from_entrypoint

        entrypoint = f"{ROOT / 'flows' / 'build_dataset.py'}:build_dataset"
        from_source = parameter_schema_from_entrypoint(entrypoint).model_dump()
        assert from_source["properties"] == properties
        with pytest.raises(Exception, match="rows"):
            client.create_flow_run_from_deployment(deployment_id, parameters={"rows": 0})
        # as_of: ISO 8601 or nothing; a word failed in the worker with a traceback.
        with pytest.raises(Exception, match="as_of"):
            client.create_flow_run_from_deployment(deployment_id, parameters={"as_of": "-1h"})
        with pytest.raises(Exception, match="as_of"):  # the shape of a time, not one
            client.create_flow_run_from_deployment(
                deployment_id, parameters={"as_of": "2026-13-45"}
            )
        at = "2026-11-27T10:00:00Z"
        run = client.create_flow_run_from_deployment(deployment_id, parameters={"as_of": at})
        client.delete_flow_run(run.id)


def test_as_of_makes_relative_times_a_window_before_it(tmp_path: Path) -> None:
    from flows.build_dataset import build_dataset

    path = write_config(tmp_path / "events.yaml", _events(tmp_path))
    as_of = dt.datetime(2025, 3, 1, 10, 0)
    manifest = build_dataset(config_path=str(path), as_of=as_of)
    table = _read(tmp_path / "out")
    at = table["at"].to_pylist()
    assert min(at) >= dt.datetime(2025, 3, 1, 9, 0) and max(at) < as_of
    assert max(at) - min(at) > dt.timedelta(minutes=55)  # spread over the hour
    days = table["day"].to_pylist()
    assert min(days) >= dt.date(2025, 2, 22) and max(days) <= dt.date(2025, 2, 28)
    assert manifest.dataset_config().as_of == as_of  # recorded: the build can be redone

    # The next hour appends the next window, which does not overlap this one.
    again = build_dataset(
        config_path=str(path), as_of=as_of + dt.timedelta(hours=1), mode="append", rows=1000
    )
    assert again.rows.total == 4000
    later = [t for t in _read(tmp_path / "out")["at"].to_pylist() if t >= as_of]
    assert len(later) == 1000 and max(later) < as_of + dt.timedelta(hours=1)


def test_any_config_value_can_be_set_by_its_path(tmp_path: Path) -> None:
    """The `overrides` parameter (the CLI's --set): here, how an hourly deployment turns a
    config with a fixed range into one more hour of data."""
    from flows.build_dataset import build_dataset

    data = _events(tmp_path, rows=200)
    data["columns"] = [
        {"name": "at", "type": "datetime", "start": "2024-01-01", "end": "2024-12-31"},
        {"name": "n", "type": "integer", "min": 0, "max": 9},
    ]
    path = write_config(tmp_path / "fixed.yaml", data)
    as_of = dt.datetime(2025, 3, 1, 10)
    overrides = {"columns.at.start": "-1h", "columns.at.end": "now", "columns.n.max": 3}
    build_dataset(config_path=str(path), as_of=as_of, overrides=overrides, workers=2)
    table = _read(tmp_path / "out")
    assert min(table["at"].to_pylist()) >= as_of - dt.timedelta(hours=1)
    assert max(table["at"].to_pylist()) < as_of and max(table["n"].to_pylist()) <= 3
    state = build_dataset(
        config_path=str(path), overrides={"columns.nope.max": 3}, return_state=True
    )
    assert state.is_failed() and "no item named 'nope'" in state.message
    assert "parameters" in state.message or "overrides" in state.message


def test_blank_parameters_keep_the_configs_values(tmp_path: Path) -> None:
    """A form's cleared field may come as "": `out: ""` wrote into the output root itself,
    `base_url: ""` sent the requests to OpenAI's endpoint, and `config_path: ""` beside
    `config` was "config_path is set too"."""
    from flows.build_dataset import build_dataset

    data = _events(tmp_path, rows=40)
    blanks = {"out": "", "base_url": " ", "model": "", "description": ""}
    build_dataset(config_path=str(write_config(tmp_path / "e.yaml", data)), **blanks)
    assert _read(tmp_path / "out").num_rows == 40
    manifest = build_dataset(config_path="", config=data, rows=50, **blanks)
    assert manifest.rows.delivered == 50 and _read(tmp_path / "out").num_rows == 50


def test_seed_as_of_differs_by_date_and_repeats_for_one(tmp_path: Path) -> None:
    from flows.build_dataset import build_dataset

    data = _events(tmp_path, seed="as_of", rows=300)
    data["columns"] = [{"name": "n", "type": "integer", "min": 0, "max": 10**9}]
    path = write_config(tmp_path / "nightly.yaml", data)
    nights = [dt.datetime(2025, 3, 1, 2), dt.datetime(2025, 3, 2, 2), dt.datetime(2025, 3, 1, 2)]
    values, seeds = [], []
    for night in nights:
        manifest = build_dataset(config_path=str(path), as_of=night)
        seeds.append(manifest.seed)
        values.append(_read(tmp_path / "out")["n"].to_pylist())
    assert seeds[0] == seeds[2] != seeds[1]
    assert values[0] == values[2] != values[1]


def test_an_output_root_fences_every_path(tmp_path: Path, monkeypatch) -> None:
    """With SYNTHAIX_OUTPUT_ROOT set on the worker, a run's config cannot write outside it:
    not with `..`, nor through a symlink. Refused before anything is written."""
    from flows.build_dataset import build_dataset

    root, outside = tmp_path / "data", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "escape").symlink_to(outside, target_is_directory=True)
    monkeypatch.chdir(root)
    monkeypatch.setenv("SYNTHAIX_OUTPUT_ROOT", str(root))
    for where in ("../../etc/x", "escape/events", str(outside / "events")):
        data = _events(tmp_path, rows=10, output={"dir": where})
        state = build_dataset(config=data, return_state=True)
        assert state.is_failed(), where
        assert "outside the output root" in state.message, state.message
    assert sorted(p.name for p in root.iterdir()) == ["escape"]
    assert list(outside.iterdir()) == []
    # Relative outputs are anchored at the root, not at the run's folder (a worker's
    # temporary checkout, deleted after the run).
    monkeypatch.chdir(outside)
    inside = build_dataset(config=_events(tmp_path, rows=10, output={"dir": "ok/events"}))
    assert inside.rows.delivered == 10 and (root / "ok" / "events" / "events.duckdb").is_file()
    assert list(outside.iterdir()) == []
    default = _events(tmp_path, rows=10)
    del default["output"]
    assert build_dataset(config=default).rows.delivered == 10
    assert (root / "out" / "events" / "events.duckdb").is_file()


def test_the_report_parameter_writes_the_report_and_links_it(tmp_path: Path) -> None:
    from flows.build_dataset import build_dataset

    path = write_config(tmp_path / "events.yaml", _events(tmp_path, rows=500))
    state = build_dataset(config_path=str(path), report=True, return_state=True)
    report = tmp_path / "out" / "report.html"
    assert state.is_completed() and report.is_file()
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id])
            )
        )
    links = [a for a in artifacts if a.type == "markdown" and report.as_uri() in str(a.data)]
    assert {a.key for a in links} >= {"events-report", "events-summary"}
    # The run's logs say what it made and where, not only its artifacts.
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=10)
    run_id = state.state_details.flow_run_id
    with get_client(sync_client=True) as client:
        logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id])))
    built = [log.message for log in logs if log.message.startswith("built events: 500 rows")]
    assert built and built[0].endswith("overwrite -> " + str(tmp_path / "out" / "events.duckdb"))


def test_task_run_names_are_consistent_and_unique(tmp_path: Path) -> None:
    from flows.build_dataset import build_dataset

    data = _events(tmp_path, rows=1200, chunk_size=200, dedupe={"exact": True})
    state = build_dataset(config=data, return_state=True)
    flow_run = FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id]))
    deadline = time.monotonic() + 30
    while True:  # task runs reach the server as events, a moment after the flow ends
        with get_client(sync_client=True) as client:
            names = [r.name for r in client.read_task_runs(flow_run_filter=flow_run)]
        kinds = {n.rsplit("-", 1)[0] for n in names if n[-1].isdigit()}
        if {"chunk", "dedupe", "write-part"} <= kinds and any(
            n.startswith("report-build") for n in names
        ):
            break
        assert time.monotonic() < deadline, sorted(names)
        time.sleep(0.5)
    assert len(names) == len(set(names)), sorted(names)
    chunks = sorted(n for n in names if n.startswith("chunk-"))
    parts = sorted(n for n in names if n.startswith("write-part-"))
    assert chunks[0] == "chunk-000000" and parts[0] == "write-part-000000"
    assert all(len(n.rsplit("-", 1)[1]) == 6 for n in chunks + parts)
    assert sorted(n for n in names if n.startswith("dedupe-"))[0] == "dedupe-000000"


def test_a_worker_run_with_a_config_typo_logs_exactly_one_error(tmp_path: Path) -> None:
    """A process worker runs a deployment whose config has a typo: the run ends Failed with
    a one-line message, and its logs hold one ERROR line and no traceback."""
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.settings import PREFECT_API_URL

    from flows.build_dataset import build_dataset

    data = _events(tmp_path, rows=10)
    data["colums"] = data.pop("columns")  # the typo
    path = write_config(tmp_path / "typo.yaml", data)
    pool = "typo-pool"
    with get_client(sync_client=True) as client:
        client.create_work_pool(WorkPoolCreate(name=pool, type="process"), overwrite=True)
    deployment = build_dataset.to_deployment(
        name="typo", work_pool_name=pool, job_variables={"working_dir": str(ROOT)}
    )
    deployment_id = deployment.apply()
    with get_client(sync_client=True) as client:
        run = client.create_flow_run_from_deployment(
            deployment_id, parameters={"config_path": str(path)}
        )
    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value()}
    worker = subprocess.Popen(
        [sys.executable, "-m", "prefect", "worker", "start", "--pool", pool, "--run-once"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        state = _wait_final(run.id, timeout=240)
        worker.wait(timeout=60)  # --run-once: it exits once the run's process has (logs sent)
    finally:
        if worker.poll() is None:
            worker.terminate()
            worker.wait(timeout=30)
    assert state.is_failed()
    assert "colums" in state.message and "\n" not in state.message
    with get_client(sync_client=True) as client:
        logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run.id])))
    errors = [log for log in logs if log.level >= 40]
    assert len(errors) == 1, "\n".join(f"{e.level} {e.name} {e.message[:200]}" for e in logs)
    assert "colums" in errors[0].message
    assert not any("Traceback" in log.message for log in logs)


def test_a_chunk_error_no_retry_can_fix_logs_one_error(tmp_path: Path) -> None:
    """A chunk task whose error its retry condition turns down logs no traceback, and its
    final state ("Finished in state Failed(... ProviderError ...)") was a second ERROR."""
    from llm_helpers import provider, simulator
    from prefect.logging.handlers import APILogHandler

    from flows.build_dataset import build_dataset
    from synthaix.sim.faults import FaultRates

    with simulator(FaultRates(refusal=1.0)) as sim:
        columns = [{"name": "note", "type": "llm", "prompt": "A short note"}]
        data = _events(tmp_path, rows=20, columns=columns, provider=provider(sim.url))
        state = build_dataset(
            config_path=str(write_config(tmp_path / "n.yaml", data)), return_state=True
        )
    assert state.is_failed() and "unusable" in state.message
    APILogHandler().flush()  # logs go to the API in batches, in the background
    run_id = state.state_details.flow_run_id
    with get_client(sync_client=True) as client:
        logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id])))
    errors = [log for log in logs if log.level >= 40]
    assert len(errors) == 1, "\n".join(f"{e.level} {e.name} {e.message[:200]}" for e in logs)
    assert any("Finished in state Failed" in log.message and log.level == 20 for log in logs)


def _wait_final(run_id: UUID, timeout: float):
    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            state = client.read_flow_run(run_id).state
            if state is not None and state.is_final():
                return state
            time.sleep(1)
    raise AssertionError(f"flow run {run_id} did not finish in {timeout} s")


def test_parquet_metadata_carries_as_of(tmp_path: Path) -> None:
    """The parts record the config they were made from, as_of included (a slot rebuilt later
    is the same data)."""
    from flows.build_dataset import build_dataset

    path = write_config(tmp_path / "events.yaml", _events(tmp_path, rows=100))
    build_dataset(config_path=str(path), as_of=dt.datetime(2025, 3, 1, 10))
    part = next((tmp_path / "out" / "data").glob("*.parquet"))
    assert b"2025-03-01T10:00:00" in str(pq.read_schema(part).metadata).encode()


def test_heartbeats_sent_by_the_cli_stop_with_the_flow_body(tmp_path: Path) -> None:
    """With the CLI's Heartbeats (beating every 0.2 s here; Prefect's minimum is 30 s), a run
    beats during its body, and the beating has stopped when the flow returns: one after its
    final state would make a zombie automation mark the finished run Crashed."""
    import threading

    from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter

    from flows.build_dataset import build_dataset
    from flows.heartbeat import Heartbeats

    path = write_config(tmp_path / "events.yaml", _events(tmp_path, rows=20_000, chunk_size=2000))
    with Heartbeats() as beats:
        beats.every = 0.2
        state = build_dataset(config_path=str(path), return_state=True)
        alive = [t for t in threading.enumerate() if t.name == "synthaix-heartbeat"]
        for thread in alive:
            thread.join(timeout=0.5)  # the beat it may be sending
        assert not any(t.is_alive() for t in alive), "still beating after the run ended"
    run_id = state.state_details.flow_run_id
    beats_of_run = EventFilter(
        event=EventNameFilter(name=["prefect.flow-run.heartbeat"]),
        resource=EventResourceFilter(id=[f"prefect.flow-run.{run_id}"]),
    )
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(run_id)
        deadline = time.monotonic() + 30  # events reach the server's store in the background
        while len(events := client.read_events(filter=beats_of_run, limit=50).events) < 2:
            assert time.monotonic() < deadline, f"{len(events)} heartbeats reached the server"
            time.sleep(0.5)
    assert run.start_time is not None and run.end_time is not None
    assert all(run.start_time <= e.occurred <= run.end_time for e in events)


def test_a_cli_build_sees_its_run_cancelled_on_the_server(tmp_path: Path) -> None:
    """`prefect flow-run cancel` (or the UI) on a run the CLI builds: the run only went
    Cancelling while the build published on. The CLI's follower looks at the run's state and
    calls `on_cancel` (the CLI then stops as on SIGTERM: nothing published)."""
    import threading

    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterState
    from prefect.client.schemas.filters import FlowRunFilterStateType as ByType
    from prefect.client.schemas.objects import StateType
    from prefect.states import Cancelling

    from flows.build_dataset import build_dataset
    from flows.heartbeat import Heartbeats

    path = write_config(tmp_path / "events.yaml", _events(tmp_path, rows=60_000, chunk_size=2000))
    called = threading.Event()

    def cancel_when_running() -> None:
        running = FlowRunFilter(state=FlowRunFilterState(type=ByType(any_=[StateType.RUNNING])))
        with get_client(sync_client=True) as client:
            deadline = time.monotonic() + 60
            while not (runs := client.read_flow_runs(flow_run_filter=running)):
                assert time.monotonic() < deadline
                time.sleep(0.05)
            client.set_flow_run_state(runs[0].id, Cancelling(), force=True)

    with Heartbeats() as beats:
        beats.on_cancel, beats.look_every = called.set, 0.1
        canceller = threading.Thread(target=cancel_when_running)
        canceller.start()
        build_dataset(config_path=str(path), return_state=True)
        canceller.join()
    assert called.is_set()
