"""Prefect orchestration: task retries, shared LLM limits, resume after kill -9, artifacts and
the Dask runner. LLM calls go over loopback to the simulator with the real openai client."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import duckdb
import pyarrow.dataset as ds
import pytest
from llm_helpers import provider, refuse_after, simulator
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.client.schemas.filters import (
    ArtifactCollectionFilter,
    ArtifactCollectionFilterKey,
    ArtifactFilter,
    ArtifactFilterKey,
    FlowRunFilter,
    FlowRunFilterId,
)
from prefect.settings import get_current_settings
from test_determinism import COLUMNS

from conftest import write_config
from synthaix.errors import ProviderError
from synthaix.llm.stats import spent_before
from synthaix.sim.faults import FaultRates

pytestmark = pytest.mark.usefixtures("prefect_server")


def _llm_config(tmp_path: Path, url: str, rows: int = 60, **options) -> Path:
    data = {
        "name": "notes",
        "description": "Short notes",
        "rows": rows,
        "chunk_size": 10,
        "columns": [
            {"name": "topic", "type": "category", "values": ["a", "b", "c"]},
            {"name": "note", "type": "llm", "prompt": "A note about {{ topic }}"},
        ],
        "provider": provider(url, rows_per_request=5, **options.pop("provider", {})),
        "runner": {"workers": 4, "retry_backoff": 0, **options.pop("runner", {})},
        "output": {"dir": str(tmp_path / "out")},
        **options,
    }
    return write_config(tmp_path / "notes.yaml", data)


def _task_runs(flow_run_id, name: str) -> list:
    """The flow run's task runs named `name...`, once each has its final state: task run
    states reach the server as events, a moment after the flow ends."""
    flow_run = FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
    deadline = time.monotonic() + 30
    while True:
        with get_client(sync_client=True) as client:
            runs = client.read_task_runs(flow_run_filter=flow_run)
        runs = [r for r in runs if r.name.startswith(name)]
        if runs and all(r.state and r.state.is_final() for r in runs):
            return runs
        if time.monotonic() > deadline:
            return runs  # the callers' assertions say what was missing
        time.sleep(0.5)


def test_transient_failures_are_retried_in_one_layer(tmp_path: Path) -> None:
    """5xx are retried by the LLM client; the chunk task does not retry them again."""
    from flows.build_dataset import build_dataset

    with simulator(FaultRates(server_error=0.15), seed=2) as sim:
        path = _llm_config(tmp_path, sim.url)
        state = build_dataset(config_path=str(path), return_state=True)
        errors = sim.state.stats()["counts"].get("5xx", 0)
    manifest = state.result()
    assert manifest.rows.delivered == 60 and errors > 0
    assert manifest.llm.retries["server_error"] == errors
    runs = _task_runs(state.state_details.flow_run_id, "chunk-")
    assert runs and all(r.run_count == 1 and r.state.is_completed() for r in runs)


def test_a_dead_endpoint_fails_within_attempts_times_timeout(tmp_path: Path) -> None:
    """An endpoint that accepts requests and never answers: every attempt times out, the
    client gives up after `max_attempts`, and nothing retries it again."""
    from flows.build_dataset import build_dataset

    silent = socket.create_server(("127.0.0.1", 0))
    silent.listen(64)
    url = f"http://127.0.0.1:{silent.getsockname()[1]}/v1"
    path = _llm_config(
        tmp_path, url, rows=1, provider={"timeout": 1, "max_attempts": 3}, runner={"workers": 1}
    )
    started = time.monotonic()
    try:
        state = build_dataset(config_path=str(path), preflight=False, return_state=True)
    finally:
        silent.close()
    elapsed = time.monotonic() - started
    assert state.is_failed()
    with pytest.raises(ProviderError, match="gave up after 3 attempts"):
        state.result()
    assert elapsed < 2 * 1 * 3 + 5, elapsed  # + Prefect's own few seconds


def test_a_non_transient_error_fails_once_without_retries(tmp_path: Path) -> None:
    from flows.build_dataset import build_dataset

    # The endpoint refuses json_schema and the config insists on it: a 400, not retryable.
    with simulator(formats=("json_object",)) as sim:
        path = _llm_config(tmp_path, sim.url, provider={"structured_output": "json_schema"})
        state = build_dataset(config_path=str(path), return_state=True)
    assert state.is_failed()
    with pytest.raises(ProviderError, match="400"):
        state.result()
    runs = _task_runs(state.state_details.flow_run_id, "chunk-")
    assert runs and all(r.run_count == 1 for r in runs)
    assert not (tmp_path / "out" / "data").exists()


def test_a_failed_run_says_what_it_paid_before_failing(tmp_path: Path) -> None:
    """The endpoint refuses every request after the third: the run's Failed state (what the UI
    shows) and the error the caller gets say what the answered requests cost."""
    from flows.build_dataset import build_dataset

    with simulator(latency=0.02, record=True) as sim:
        path = _llm_config(tmp_path, sim.url, provider={"max_concurrency": 2})

        watcher = refuse_after(sim, 3)
        state = build_dataset(config_path=str(path), preflight=False, return_state=True)
        watcher.join()
        answered = len(sim.state.requests())
    assert state.is_failed() and answered >= 3
    assert f"; spent before failing: {answered} requests, " in state.message
    with pytest.raises(ProviderError, match="401") as failed:
        state.result()
    assert spent_before(failed.value).requests == answered


def test_llm_requests_hold_a_shared_concurrency_limit(tmp_path: Path) -> None:
    from flows.build_dataset import build_dataset

    with get_client(sync_client=True) as client:  # an operator set this limit on the server
        client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name="two", limit=2))
    with simulator(latency=0.05) as sim:
        path = _llm_config(tmp_path, sim.url, runner={"llm_limit": "two"})
        assert build_dataset(config_path=str(path)).rows.delivered == 60
        peak = sim.state.stats()["peak_in_flight"]
    assert peak <= 2  # provider.max_concurrency is 8: the server's limit held

    # A limit named in the config that does not exist is created, with max_concurrency slots.
    with simulator() as sim:
        path = _llm_config(tmp_path, sim.url, runner={"llm_limit": "fresh-limit"})
        build_dataset(config_path=str(path))
    with get_client(sync_client=True) as client:
        assert client.read_global_concurrency_limit_by_name("fresh-limit").limit == 8


def test_artifacts_show_progress_summary_and_sample(tmp_path: Path) -> None:
    from flows.build_dataset import build_dataset

    path = write_config(
        tmp_path / "people.yaml",
        {"name": "arty", "rows": 300, "chunk_size": 50, "columns": COLUMNS[:3]},
    )
    build_dataset(config_path=str(path), out=str(tmp_path / "out"))
    with get_client(sync_client=True) as client:
        keys = ["arty-progress", "arty-summary", "arty-sample"]
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=keys))
        )
    by_key = {a.key: a for a in found}
    assert set(by_key) == set(keys)
    assert by_key["arty-progress"].type == "progress" and by_key["arty-progress"].data == 100.0
    assert by_key["arty-sample"].type == "table" and "first" in str(by_key["arty-sample"].data)
    assert "300 rows" in by_key["arty-summary"].data


def test_a_slot_appended_already_ends_at_100_percent(tmp_path: Path, monkeypatch) -> None:
    """A deployment run's append of a slot that published appends nothing again: its
    progress artifact stayed at 0 %, a finished run that looked stuck in the UI."""
    import datetime as dt
    from types import SimpleNamespace

    import tasks.plan
    from flows.build_dataset import build_dataset

    run = SimpleNamespace(deployment_id="d", expected_start_time=dt.datetime(2025, 3, 1, 10))
    monkeypatch.setattr(tasks.plan, "_deployment_run", lambda: run)
    monkeypatch.setattr(tasks.plan, "_variable", lambda name: None)  # no output root
    data = {"name": "slotted", "rows": 30, "mode": "append", "columns": COLUMNS[:2]}
    path = write_config(tmp_path / "slotted.yaml", data)
    for _ in range(2):
        build_dataset(config_path=str(path), out=str(tmp_path / "out"))
        with get_client(sync_client=True) as client:
            (latest,) = client.read_latest_artifacts(
                artifact_filter=ArtifactCollectionFilter(
                    key=ArtifactCollectionFilterKey(any_=["slotted-progress"])
                )
            )
        assert latest.data == 100.0
    assert ds.dataset(tmp_path / "out" / "data").count_rows() == 30


def test_each_table_of_a_dataset_shows_its_progress(tmp_path: Path) -> None:
    from flows.build_dataset import build_dataset

    data = {
        "name": "shop",
        "tables": [
            {"name": "customers", "rows": 120, "chunk_size": 50, "columns": COLUMNS[:4]},
            {
                "name": "orders",
                "parent": "customers",
                "count": {"distribution": "poisson", "mean": 3},
                "columns": [{"name": "buyer", "type": "reference", "to": "customers.email"}],
            },
        ],
    }
    manifest = build_dataset(config_path=str(write_config(tmp_path / "shop.yaml", data)))
    keys = ["shop-customers-progress", "shop-orders-progress"]
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=keys))
        )
    by_key = {a.key: a for a in found}
    assert set(by_key) == set(keys) and manifest.tables["orders"].rows.delivered > 120
    assert all(a.type == "progress" and a.data == 100.0 for a in found)
    assert by_key["shop-orders-progress"].description == "Rows of shop.orders delivered, in percent"


class _Cancelled(BaseException):
    """What Prefect raises in a flow run's main thread when the run is cancelled."""


def test_chunks_a_stopped_build_cuts_short_are_cancelled_not_failed(tmp_path: Path) -> None:
    """A cancelled run stops its chunks at their next request: the UI showed them Failed, as
    if something had gone wrong in them."""
    from flows.build_dataset import build_dataset

    def cancel(signum: int, frame: object) -> None:
        raise _Cancelled

    with simulator(latency=0.2) as sim:
        path = _llm_config(tmp_path, sim.url, rows=200)  # chunks of 2 requests, 4 at a time

        def watch() -> None:
            deadline = time.monotonic() + 60
            while sim.state.stats()["counts"].get("requests", 0) < 9:
                assert time.monotonic() < deadline
                time.sleep(0.01)
            os.kill(os.getpid(), signal.SIGUSR1)

        previous = signal.signal(signal.SIGUSR1, cancel)
        threading.Thread(target=watch, daemon=True).start()
        try:
            with pytest.raises(_Cancelled):
                build_dataset(config_path=str(path))
        finally:
            signal.signal(signal.SIGUSR1, previous)
    with get_client(sync_client=True) as client:
        runs = [
            r
            for r in client.read_flow_runs(limit=200)
            if r.parameters.get("config_path") == str(path)
        ]
    chunks = _task_runs(runs[0].id, "chunk-")
    states = Counter(r.state.type.value for r in chunks)
    assert states["CANCELLED"] >= 1 and "FAILED" not in states, states


def test_killed_build_resumes_without_repeating_llm_requests(tmp_path: Path) -> None:
    from flows.build_dataset import build_dataset

    # The CLI runs report to the test's Prefect server instead of starting their own.
    api = get_current_settings().api.url
    assert api, "the prefect_server fixture should have set an API URL"
    env = {**os.environ, "PREFECT_API_URL": api, "OPENAI_API_KEY": "x"}
    with simulator(latency=0.3) as sim:
        (tmp_path / "fresh").mkdir()
        build_dataset(config_path=str(_llm_config(tmp_path / "fresh", sim.url, rows=200)))
        fresh_requests = sim.state.stats()["counts"]["requests"]
        sim.state.reset()

        path = _llm_config(tmp_path, sim.url, rows=200)
        command = [sys.executable, "-m", "synthaix.cli", "build", str(path)]
        first = subprocess.Popen(
            command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        ledger = tmp_path / "out" / ".ledger"
        deadline = time.monotonic() + 120
        while len(list(ledger.glob("*/chunk-*.parquet"))) < 6 and time.monotonic() < deadline:
            time.sleep(0.2)
        first.send_signal(signal.SIGKILL)
        first.wait()
        assert len(list(ledger.glob("*/chunk-*.parquet"))) >= 6
        assert not (tmp_path / "out" / "data").exists()
        before = sim.state.stats()["counts"]["requests"]

        second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
        assert second.returncode == 0, second.stdout + second.stderr
        assert "saved by an interrupted attempt" in second.stdout
        requests = sim.state.stats()["counts"]["requests"] - before

    with duckdb.connect(str(tmp_path / "out" / "notes.duckdb"), read_only=True) as con:
        rows, notes = con.execute(
            "SELECT count(*), count(DISTINCT lower(note)) FROM notes"
        ).fetchone()
    assert rows == notes == 200
    assert requests < fresh_requests, (requests, fresh_requests)
    assert not ledger.exists()  # published: the ledger is gone
    # The resume is said in the run's own logs, as the UI shows them.
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.client.schemas.sorting import FlowRunSort

    with get_client(sync_client=True) as client:
        run = client.read_flow_runs(sort=FlowRunSort.START_TIME_DESC, limit=1)[0]
        logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run.id])))
    said = [log.message for log in logs if "from the ledger of an interrupted build" in log.message]
    assert len(said) == 1 and said[0].startswith("resumed "), [log.message for log in logs]


def test_dask_cluster_of_processes_gives_the_same_sampler_data(tmp_path: Path) -> None:
    pytest.importorskip("prefect_dask")
    from flows.build_dataset import build_dataset

    data = {"name": "people", "rows": 1200, "seed": 4, "chunk_size": 200, "columns": COLUMNS}
    path = write_config(tmp_path / "people.yaml", data)
    build_dataset(config_path=str(path), out=str(tmp_path / "threads"))
    build_dataset(config_path=str(path), out=str(tmp_path / "dask"), runner="dask")
    threads = ds.dataset(tmp_path / "threads" / "data").to_table()
    dask = ds.dataset(tmp_path / "dask" / "data").to_table()
    assert threads.num_rows == 1200 and dask.equals(threads)


def test_dask_builds_related_tables_as_threads_do(tmp_path: Path) -> None:
    """Chunks submitted from inside a table's task run: Dask pickled that task run's context
    along, and every multi-table config failed (`Could not serialize object`)."""
    pytest.importorskip("prefect_dask")
    from flows.build_dataset import build_dataset

    data = {
        "name": "shop",
        "seed": 3,
        "tables": [
            {"name": "customers", "rows": 150, "chunk_size": 50, "columns": COLUMNS},
            {
                "name": "orders",
                "parent": "customers",
                "count": {"distribution": "poisson", "mean": 2, "max": 5},
                "chunk_size": 100,
                "columns": [
                    {"name": "order_id", "type": "sequence", "primary_key": True},
                    {"name": "buyer", "type": "reference", "to": "customers.email"},
                ],
            },
        ],
    }
    path = write_config(tmp_path / "shop.yaml", data)
    build_dataset(config_path=str(path), out=str(tmp_path / "threads"))
    build_dataset(config_path=str(path), out=str(tmp_path / "dask"), runner="dask")
    for table in ("customers", "orders"):
        threads = ds.dataset(tmp_path / "threads" / "data" / table).to_table()
        dask = ds.dataset(tmp_path / "dask" / "data" / table).to_table()
        assert threads.num_rows > 0 and dask.equals(threads), table


def test_a_description_alone_is_translated_then_built(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.build_dataset import build_dataset

    with simulator(models=("gpt-4o-mini",)) as sim:
        monkeypatch.setenv("OPENAI_BASE_URL", sim.url)  # where ProviderConfig() points
        monkeypatch.setenv("OPENAI_API_KEY", "sk-sim")
        state = build_dataset(
            description="customers with name, age and a short review",
            rows=30,
            out=str(tmp_path / "out"),
            return_state=True,
        )
    assert state.result().rows.delivered == 30
    names = {r.name for r in _task_runs(state.state_details.flow_run_id, "")}
    steps = ["translate-description", "plan-build", "open-dedupe", "chunk-", "dedupe-"]
    steps += ["write-part-", "finish-dedupe", "publish-dataset", "report-build"]
    for step in steps:  # every sub-step is a visible task run
        assert any(name.startswith(step) for name in names), (step, names)
    with get_client(sync_client=True) as client:  # the config it built, to keep
        artifacts = client.read_artifacts(
            flow_run_filter=FlowRunFilter(
                id=FlowRunFilterId(any_=[state.state_details.flow_run_id])
            )
        )
    [translated] = [a for a in artifacts if a.key and a.key.endswith("-config")]
    assert "```yaml" in translated.data and "rows: 30" in translated.data

    # The model names the dataset, and so its folder: a run from plain words replaced another
    # deployment's dataset of that name. Now it builds there only into nothing, or when told.
    root = tmp_path / "root"
    root.mkdir()
    monkeypatch.setenv("SYNTHAIX_OUTPUT_ROOT", str(root))
    words = "customers with name, age and a short review"
    with simulator(models=("gpt-4o-mini",)) as sim:
        monkeypatch.setenv("OPENAI_BASE_URL", sim.url)
        first = build_dataset(description=words, rows=20, return_state=True).result()
        folder = Path(first.outputs["duckdb"]).parent
        again = build_dataset(description=words, rows=25, return_state=True)
        assert again.is_failed() and "does not replace it unless told to" in again.message
        assert f"out: {folder}" in again.message
        told = build_dataset(description=words, rows=25, out=str(folder), return_state=True)
    assert folder.is_relative_to(root) and told.result().rows.delivered == 25

    # Plain words beside a config (deployments preset config_path) are refused, not ignored.
    path = _llm_config(tmp_path, "http://127.0.0.1:9/v1")
    state = build_dataset(config_path=str(path), description="weather", return_state=True)
    assert state.is_failed() and "config_path is set too" in state.message


def test_an_unreachable_dask_cluster_fails_in_one_line(tmp_path: Path) -> None:
    """It failed with Dask's traceback (157 lines of log): now one line naming the address."""
    import dask

    from flows.build_dataset import build_dataset

    path = write_config(
        tmp_path / "people.yaml",
        {
            "name": "people",
            "rows": 10,
            "columns": COLUMNS,
            "runner": {"type": "dask", "address": "tcp://127.0.0.1:9"},
            "output": {"dir": str(tmp_path / "out")},
        },
    )
    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        state = build_dataset(config_path=str(path), return_state=True)
    assert state.is_failed()
    assert "cannot reach the dask cluster at runner.address tcp://127.0.0.1:9" in state.message
    assert not (tmp_path / "out" / "data").exists()


def test_an_unexpected_error_reaches_the_server_without_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ray's serialization error held the Prefect settings, API key included: the run's state
    message and the traceback Prefect logs stored them on the server as they were."""
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.client.schemas.sorting import FlowRunSort
    from prefect.logging.handlers import APILogHandler

    from flows import build_dataset as module

    secret = "sk-gateway-SEKRIT-42"
    monkeypatch.setenv("MY_GATEWAY_TOKEN", secret)

    def serialize(*args: object, **kwargs: object) -> None:
        raise TypeError(f"Could not serialize the argument {{'key': '{secret}'}} " + "x" * 5000)

    monkeypatch.setattr(module, "plan_build", serialize)
    path = write_config(tmp_path / "c.yaml", {"name": "c", "rows": 10, "columns": COLUMNS[:2]})
    state = module.build_dataset(config_path=str(path), return_state=True)
    assert state.is_failed() and secret not in (state.message or "")
    assert "TypeError: Could not serialize the argument {'key': '***'}" in state.message
    assert "characters more" in state.message and len(state.message) < 2_500
    APILogHandler().flush()
    with get_client(sync_client=True) as client:
        run = client.read_flow_runs(sort=FlowRunSort.START_TIME_DESC, limit=1)[0]
        logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run.id])))
    said = "\n".join(log.message for log in logs)
    assert "Could not serialize the argument" in said and secret not in said
