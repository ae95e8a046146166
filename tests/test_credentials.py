"""Credentials the Prefect way: the API key from a Prefect Secret block, provider settings from
Prefect Variables. Against the test's Prefect API and the simulator, which accepts only KEY."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from uuid import UUID

import duckdb
import pyarrow.parquet as pq
import pytest
from llm_helpers import provider, simulator

from conftest import write_config
from synthaix.config import load_config, parse_config
from synthaix.errors import ConfigError, ProviderError
from synthaix.llm.credentials import (
    forget_secrets,
    load_secret,
    resolve_config,
    resolve_provider,
)
from synthaix.llm.provider import ProviderConfig

pytestmark = pytest.mark.usefixtures("prefect_server")

KEY = "sk-sim-secret-123"


@pytest.fixture(autouse=True)
def fresh(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No cached block values between tests, and a wrong key in the environment: a request
    that used $OPENAI_API_KEY instead of the block would get a 401."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-wrong-from-the-environment")
    forget_secrets()
    yield
    forget_secrets()


def _secret(name: str, value: str) -> None:
    from prefect.blocks.system import Secret

    Secret(value=value).save(name, overwrite=True)


def _variable(name: str, value: str) -> None:
    from prefect.variables import Variable

    Variable.set(name, value, overwrite=True)


def _config(tmp_path: Path, llm_provider: dict, **options) -> Path:
    data = {
        "name": "notes",
        "description": f"Short notes (the key {KEY} must never be written out)",
        "rows": 40,
        "chunk_size": 20,
        "columns": [
            {"name": "topic", "type": "category", "values": ["a", "b", "c"]},
            {"name": "note", "type": "llm", "max_length": 80, "prompt": "A note on {{ topic }}"},
        ],
        "provider": llm_provider,
        "runner": {"workers": 2, "retry_backoff": 0},
        "output": {"dir": str(tmp_path / "out")},
        **options,
    }
    return write_config(tmp_path / "notes.yaml", data)


def _rows(out: Path) -> list[dict]:
    with duckdb.connect(str(out / "notes.duckdb"), read_only=True) as con:
        return con.sql("SELECT * FROM notes").to_arrow_table().to_pylist()


def _logs_and_artifacts(flow_run_id: UUID) -> tuple[list[str], list[str]]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        LogFilter,
        LogFilterFlowRunId,
    )
    from prefect.logging.handlers import APILogHandler

    APILogHandler().flush()  # logs go to the API in batches, in the background
    with get_client(sync_client=True) as client:
        logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    return [log.message for log in logs], [a.model_dump_json() for a in artifacts]


def test_a_secret_block_supplies_the_key_and_it_is_written_nowhere(tmp_path: Path) -> None:
    from flows.build_dataset import build_dataset

    _secret("sim-key", KEY)
    with simulator(api_key=KEY) as sim:
        path = _config(tmp_path, provider(sim.url, api_key_block="sim-key", rows_per_request=10))
        state = build_dataset(config_path=str(path), return_state=True)
        assert state.is_completed(), state.message
        requests = sim.state.stats()["counts"]["requests"]
    manifest = state.result()
    out = tmp_path / "out"

    rows = _rows(out)
    assert manifest.rows.delivered == len(rows) == 40 and requests > 0
    assert all(isinstance(r["note"], str) and r["note"] for r in rows)

    # The key, which the config's description also holds, is in no output file...
    assert "***" in json.loads((out / "manifest.json").read_text())["config"]["description"]
    files = [p for p in out.rglob("*") if p.is_file()]
    assert any(p.suffix == ".parquet" for p in files)
    for file in files:
        assert KEY.encode() not in file.read_bytes(), file
    for part in out.rglob("*.parquet"):
        metadata = pq.read_metadata(part).metadata or {}
        assert all(KEY.encode() not in v for v in metadata.values()), part
    # ... nor in the flow run's logs and artifacts on the Prefect API.
    logs, artifacts = _logs_and_artifacts(state.state_details.flow_run_id)
    assert logs and artifacts  # there is something to look at
    assert not [m for m in logs if KEY in m]
    assert not [a for a in artifacts if KEY in a]


def test_the_block_wins_over_the_environment_and_is_loaded_once(tmp_path: Path) -> None:
    from synthaix.build.manifest import secrets_of
    from synthaix.llm.client import LlmClient

    _secret("sim-key-once", KEY)
    with simulator(api_key=KEY) as sim:
        config = parse_config(
            {
                "name": "t",
                "rows": 10,
                "columns": [{"name": "n", "type": "llm"}],
                "provider": provider(sim.url, api_key_block="sim-key-once"),
            }
        )
        LlmClient(config.provider).check()  # $OPENAI_API_KEY is wrong: the block was used
        _secret("sim-key-once", "sk-rotated-on-the-server")
        # Cached: neither a new client nor redaction loads the block again.
        assert load_secret("sim-key-once") == KEY
        LlmClient(config.provider).check()
        assert KEY in secrets_of(config)
    # Without a block, the environment variable is the key, as before.
    with simulator(api_key=KEY) as sim, pytest.MonkeyPatch.context() as env:
        env.setenv("OPENAI_API_KEY", KEY)
        LlmClient(ProviderConfig(base_url=sim.url, model="sim-small")).check()


def test_a_missing_block_fails_the_build_with_one_line_naming_it(tmp_path: Path) -> None:
    from flows.build_dataset import build_dataset

    with simulator(api_key=KEY) as sim:
        path = _config(tmp_path, provider(sim.url, api_key_block="no-such-block"))
        with pytest.raises(ProviderError) as failure:
            build_dataset(config_path=str(path))
        assert sim.state.stats()["counts"].get("requests", 0) == 0
    message = str(failure.value)
    assert message == "provider.api_key_block: Prefect Secret block 'no-such-block' does not exist"
    assert "prefect block create secret" in failure.value.hint
    assert "Secret(value='sk-...').save('no-such-block')" in failure.value.hint
    assert failure.value.__cause__ is None and failure.value.__suppress_context__
    assert not (tmp_path / "out" / "data").exists()


def test_provider_settings_from_prefect_variables(tmp_path: Path) -> None:
    from flows.build_dataset import build_dataset

    _variable("llm_model", "sim-large")
    _secret("sim-key-vars", KEY)
    _variable("llm_key_block", "sim-key-vars")
    with simulator(api_key=KEY, record=True) as sim:
        port = sim.url.split(":")[-1].split("/")[0]
        _variable("sim_port", port)
        templated = {
            "base_url": "http://127.0.0.1:{{ prefect.variables.sim_port }}/v1",
            "model": "{{ prefect.variables.llm_model }}",
            "api_key_block": "{{prefect.variables.llm_key_block}}",
            "rows_per_request": 10,
        }
        resolved = resolve_provider(ProviderConfig(**templated))
        assert (resolved.base_url, resolved.model, resolved.api_key_block) == (
            sim.url,
            "sim-large",
            "sim-key-vars",
        )
        path = _config(tmp_path, templated)
        manifest = build_dataset(config_path=str(path))
        sent = {r["request"]["model"] for r in sim.state.requests()}
    assert manifest.rows.delivered == 40
    assert sent == {"sim-large"}


def test_a_missing_variable_is_a_clear_config_error() -> None:
    from synthaix.llm.client import LlmClient

    templated = ProviderConfig(model="{{ prefect.variables.no_such_variable }}")
    with pytest.raises(ConfigError) as failure:
        resolve_provider(templated)
    assert str(failure.value) == (
        "provider.model: Prefect Variable 'no_such_variable' does not exist"
    )
    assert "prefect variable set no_such_variable" in failure.value.hint
    with pytest.raises(ConfigError, match="'no_such_variable' does not exist"):
        LlmClient(templated)  # the CLI path: the client resolves what it is given


def test_resolve_config_reaches_every_table() -> None:
    from synthaix.config import parse_any_config

    _variable("llm_model", "sim-large")
    columns = [{"name": "id", "type": "sequence", "primary_key": True}]
    templated = {"model": "{{ prefect.variables.llm_model }}", "timeout": 7}
    shop = parse_any_config(
        {
            "name": "shop",
            "tables": [
                {"name": "customers", "rows": 5, "columns": columns},
                {
                    "name": "orders",
                    "parent": "customers",
                    "count": 2,
                    "columns": [{"name": "customer", "type": "reference", "to": "customers.id"}],
                },
            ],
            "provider": templated,
        }
    )
    resolved = resolve_config(shop)
    assert resolved.provider.model == "sim-large" and resolved.provider.timeout == 7
    assert {resolved.plan(t).config.provider.model for t in resolved.order} == {"sim-large"}
    single = parse_config({"name": "t", "rows": 5, "columns": columns, "provider": templated})
    assert resolve_config(single).provider.model == "sim-large"
    plain = parse_config({"name": "t", "rows": 5, "columns": columns})
    assert resolve_config(plain) is plain


def test_only_variable_templates_are_accepted(tmp_path: Path) -> None:
    path = _config(tmp_path, {"model": "{{ prefect.blocks.secret.key }}"})
    with pytest.raises(ConfigError, match=r"only template .* prefect\.variables\.NAME"):
        load_config(path)


def test_nothing_templated_needs_no_prefect() -> None:
    code = (
        "import os, sys\n"
        "from synthaix.llm.client import LlmClient\n"
        "from synthaix.llm.credentials import resolve_provider\n"
        "from synthaix.llm.provider import ProviderConfig\n"
        "p = ProviderConfig(base_url='http://127.0.0.1:9/v1', model='m')\n"
        "assert resolve_provider(p) is p\n"
        "os.environ['OPENAI_API_KEY'] = 'sk-env'\n"
        "assert LlmClient(p)._secret == 'sk-env'\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] == 'prefect')\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_dask_workers_load_the_block_themselves(tmp_path: Path) -> None:
    pytest.importorskip("prefect_dask")
    from flows.build_dataset import build_dataset

    _secret("sim-key-dask", KEY)
    with simulator(api_key=KEY) as sim:
        llm = provider(sim.url, api_key_block="sim-key-dask", rows_per_request=10)
        # llm_limit null: in a Dask worker, Prefect's concurrency service thread does not see
        # the harness's settings (only a PREFECT_API_URL in the environment would reach it),
        # so shared limits fail under the harness; the block load is what is tested here.
        runner = {"type": "dask", "workers": 2, "llm_limit": None}
        path = _config(tmp_path, llm, runner=runner)
        manifest = build_dataset(config_path=str(path))
    assert manifest.rows.delivered == 40
    assert all(r["note"] for r in _rows(tmp_path / "out"))


def test_a_key_in_the_base_url_is_refused_in_a_config_and_masked_in_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """user:key@ in provider.base_url would be stored with every flow run's parameters: it is
    refused. From $OPENAI_BASE_URL (read only where the build runs), the error that it cannot
    be reached (printed, and stored in a Prefect state) shows ***@host."""
    from typer.testing import CliRunner

    from synthaix.cli import app

    columns = [{"name": "bio", "type": "llm", "prompt": "A one-line bio"}]
    url = "http://user:sk-url-secret-0042@127.0.0.1:9/v1"
    data = {"name": "b", "rows": 5, "columns": columns, "provider": {"base_url": url}}
    data["output"] = {"dir": str(tmp_path / "out")}
    config = write_config(tmp_path / "b.yaml", data)
    refused = CliRunner().invoke(app, ["validate", str(config)])
    assert refused.exit_code == 2 and "keep credentials out of base_url" in refused.output
    assert "sk-url-secret-0042" not in refused.output

    del data["provider"]
    config = write_config(tmp_path / "b.yaml", data)
    monkeypatch.setenv("OPENAI_BASE_URL", url)
    result = CliRunner().invoke(app, ["build", str(config)])
    assert result.exit_code != 0 and "cannot reach http://***@127.0.0.1:9/v1" in result.output
    assert "sk-url-secret-0042" not in result.output


def test_a_query_string_or_azure_deployment_url_is_refused_with_the_v1_url_and_masked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`?api-key=...` in $OPENAI_BASE_URL was printed whole in the error (the client adds its
    paths after the query, so such a URL never works), and an Azure deployment URL got the
    generic "not an OpenAI-compatible endpoint"."""
    from typer.testing import CliRunner

    from synthaix.cli import app
    from synthaix.errors import masked_urls

    said = masked_urls("at http://h/v1?api-key=qSECRET789&api-version=2024-06-01&sig=a%2Fb")
    assert said == "at http://h/v1?api-key=***&api-version=2024-06-01&sig=***"
    columns = [{"name": "bio", "type": "llm", "prompt": "A one-line bio"}]
    data = {"name": "b", "rows": 5, "columns": columns, "output": {"dir": str(tmp_path / "out")}}
    deployment = "https://r.openai.azure.com/openai/deployments/gpt4o?api-version=2024-06-01"
    config = write_config(tmp_path / "b.yaml", {**data, "provider": {"base_url": deployment}})
    refused = CliRunner().invoke(app, ["validate", str(config)])
    assert refused.exit_code == 2 and "an Azure deployment URL" in refused.output
    assert "https://<resource>.openai.azure.com/openai/v1" in refused.output
    config = write_config(tmp_path / "b.yaml", data)
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1?api-key=qSECRET789")
    result = CliRunner().invoke(app, ["build", str(config)])
    assert (
        result.exit_code == 2 and "$OPENAI_BASE_URL: base_url has a query string" in result.output
    )
    assert "qSECRET789" not in result.output


def test_an_unexpected_error_shows_no_secret_and_stays_readable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Ray's serialization error held the Prefect context, API key and auth string included,
    in one 14-25 KB line; the CLI printed it as it was."""
    import typer

    from synthaix.cli.app import _fail

    monkeypatch.setenv("PREFECT_API_KEY", "pnu_key-SEKRIT-123")
    monkeypatch.setenv("MY_LLM_KEY", "sk-llm-SEKRIT-456")
    settings = "{'api': {'key': 'pnu_key-SEKRIT-123', 'llm': 'sk-llm-SEKRIT-456'}} " * 400
    error = TypeError(f"Could not serialize the argument {settings}")
    for debug in (False, True):
        with pytest.raises(typer.Exit) as exited:
            try:
                raise error
            except TypeError as exc:
                _fail(exc, debug=debug)
        said = capsys.readouterr().err
        assert exited.value.exit_code == 1 and "SEKRIT" not in said
        assert "TypeError: Could not serialize the argument {'api': {'key': '***'" in said
        if not debug:
            assert "characters more; --debug shows them" in said and len(said) < 2_500


def test_reading_prefect_without_an_api_turns_prefects_telemetry_off(tmp_path: Path) -> None:
    """With no API, a block or Variable is read through Prefect's own temporary server. The
    CLI reads them before importing the flows, whose defaults turn telemetry off: that
    server called Prefect's servers (and logged a traceback when offline)."""
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env["PREFECT_HOME"] = str(tmp_path)
    code = (
        "import sys\n"
        "from synthaix.llm.credentials import _cache_key\n"
        "_cache_key('k')\n"
        "from prefect.settings import get_current_settings\n"
        "print(get_current_settings().server.analytics_enabled, 'flows' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert done.stdout.split() == ["False", "False"]
