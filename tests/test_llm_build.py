"""LLM builds over real HTTP against the simulator, with the real openai client."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
from llm_helpers import FAULT_MIX, provider, simulator

from conftest import make_config, write_config
from synthaix.config import load_config

pytestmark = pytest.mark.usefixtures("prefect_server")


def _read(path: Path, table: str) -> list[dict]:
    with duckdb.connect(str(path), read_only=True) as con:
        return con.sql(f"SELECT * FROM {table}").to_arrow_table().to_pylist()


def test_llm_column_build_delivers_every_row_despite_faults(tmp_path: Path) -> None:
    from flows.build_dataset import build_dataset

    with simulator(FAULT_MIX, seed=3) as sim:
        config = write_config(
            tmp_path / "reviews.yaml",
            {
                "name": "reviews",
                "description": "Reviews of an online shop",
                "rows": 2000,
                "chunk_size": 500,
                "columns": [
                    {"name": "age", "type": "integer", "min": 18, "max": 80},
                    {"name": "city", "type": "category", "values": ["Berlin", "Paris"]},
                    {
                        "name": "review",
                        "type": "llm",
                        "max_length": 120,
                        "prompt": "A one-sentence review by a {{ age }}-year-old from {{ city }}",
                    },
                    {
                        "name": "stars",
                        "type": "llm",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 5},
                    },
                ],
                "provider": provider(sim.url, rows_per_request=20),
                "output": {"dir": str(tmp_path / "out")},
            },
        )
        summary = build_dataset(config_path=str(config))
        peak = sim.state.stats()["peak_in_flight"]

    rows = _read(tmp_path / "out" / "reviews.duckdb", "reviews")
    assert summary.rows.delivered == len(rows) == 2000
    assert all(isinstance(r["review"], str) and 1 <= len(r["review"]) <= 120 for r in rows)
    assert all(1 <= r["stars"] <= 5 for r in rows)
    llm = summary.llm
    assert {"rate_limit", "server_error"} <= set(llm.retries)
    assert {"malformed_json", "wrong_type"} <= set(llm.rejected_rows)
    assert llm.prompt_tokens > 0 and llm.completion_tokens > 0
    assert peak <= 8  # provider.max_concurrency


def test_whole_row_build_from_a_description(tmp_path: Path) -> None:
    from flows.build_dataset import build_dataset

    with simulator(FAULT_MIX, seed=4) as sim:
        config = load_config(
            write_config(
                tmp_path / "products.yaml",
                {
                    "name": "products",
                    "description": "Products of a hardware store with a price and a short pitch",
                    "rows": 2000,
                    "chunk_size": 500,
                    "columns": [
                        {
                            "name": "product",
                            "type": "llm",
                            "description": "product name",
                            "max_length": 60,
                        },
                        {
                            "name": "price",
                            "type": "llm",
                            "schema": {"type": "number", "minimum": 1, "maximum": 500},
                        },
                        {"name": "category", "type": "llm", "enum": ["tools", "garden", "paint"]},
                    ],
                    "provider": provider(
                        sim.url, price_input_per_million=0.15, price_output_per_million=0.6
                    ),
                },
            )
        )
        summary = build_dataset(config=config, out=str(tmp_path / "out"))

    rows = _read(tmp_path / "out" / "products.duckdb", "products")
    assert summary.rows.delivered == len(rows) == 2000
    assert all(
        1 <= r["price"] <= 500 and r["category"] in ("tools", "garden", "paint") for r in rows
    )
    assert len({(r["product"], r["price"], r["category"]) for r in rows}) == 2000
    assert summary.llm.rejected_rows["duplicate"] > 0
    assert summary.llm.cost_usd > 0 and summary.llm.unpriced_tokens == 0


def test_translate_writes_a_config_that_builds(tmp_path: Path) -> None:
    from flows.build_dataset import build_dataset
    from flows.translate_schema import translate_schema
    from synthaix.llm.provider import ProviderConfig

    with simulator(seed=5) as sim:
        target = tmp_path / "customers.yaml"
        translate_schema(
            "Customers with name, email, age and a short review",
            str(target),
            rows=120,
            provider=ProviderConfig(base_url=sim.url, model="sim-small"),
        )
        text = target.read_text()
        assert text.startswith("# yaml-language-server") and "Customers with name" in text
        config = load_config(target)
        summary = build_dataset(config=config, out=str(tmp_path / "out"))
    assert summary.rows.delivered == 120
    # No prices set: the manifest knows the tokens were not priced (not a free $0).
    assert summary.llm.unpriced_tokens == summary.llm.tokens > 0


SECRET = "sk-test-THIS-MUST-NEVER-BE-PRINTED"


def _cli(*args: str, env_key: str = SECRET) -> subprocess.CompletedProcess:
    env = {**os.environ, "OPENAI_API_KEY": env_key}
    env.pop("OPENAI_BASE_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "synthaix.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def _llm_config(tmp_path: Path, url: str, model: str = "sim-small") -> Path:
    return write_config(
        tmp_path / "c.yaml",
        {
            "name": "c",
            "rows": 10,
            "columns": [{"name": "t", "type": "llm", "max_length": 30}],
            "provider": {"base_url": url, "model": model, "max_attempts": 2},
            "output": {"dir": str(tmp_path / "out")},
        },
    )


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("bad_key", "rejected the credentials (HTTP 401)"),
        ("unknown_model", "model 'gpt-nope' is not served by"),
        ("unreachable", "cannot reach http://127.0.0.1:9/v1"),
    ],
)
def test_provider_problems_are_one_line_without_the_key(
    tmp_path: Path, case: str, expected: str
) -> None:
    with simulator(api_key="sk-the-right-one") as sim:
        url = "http://127.0.0.1:9/v1" if case == "unreachable" else sim.url
        model = "gpt-nope" if case == "unknown_model" else "sim-small"
        key = SECRET if case == "bad_key" else "sk-the-right-one"
        result = _cli("build", str(_llm_config(tmp_path, url, model)), env_key=key)
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert expected in output
    assert "Traceback" not in output and SECRET not in output
    assert [line for line in result.stderr.splitlines() if line.startswith("error:")] != []
    assert not (tmp_path / "out" / "data").exists()


def test_rows_that_break_a_constraint_cost_no_llm_request(tmp_path: Path) -> None:
    from synthaix.build.engine import Build
    from synthaix.build.executor import ThreadExecutor

    with simulator(seed=4) as sim:
        path = write_config(
            tmp_path / "reviews.yaml",
            {
                "name": "reviews",
                "rows": 300,
                "chunk_size": 100,
                "columns": [
                    {"name": "score", "type": "integer", "min": 1, "max": 10},
                    {"name": "review", "type": "llm", "prompt": "A review scored {{ score }}"},
                    {"name": "label", "type": "llm", "schema": {"type": "string"}},
                ],
                "constraints": ["score > 5", "length(review) > 0"],
                "provider": provider(sim.url, rows_per_request=10),
                "output": {"dir": str(tmp_path / "out")},
            },
        )
        config = load_config(path)
        manifest = Build(config, ThreadExecutor(config)).run()
    assert manifest.rows.delivered == 300
    assert manifest.dropped.constraint["score > 5"] > 150  # about half of the sampled rows
    # Only rows with score > 5 were sent to the model, for both LLM stages.
    sent = manifest.rows.generated - sum(manifest.dropped.constraint.values())
    assert manifest.llm.rows_filled <= 2 * (sent + 20)
    rows = _read(tmp_path / "out" / "reviews.duckdb", "reviews")
    assert all(r["score"] > 5 and r["review"] for r in rows)


def test_rows_repeating_a_unique_value_cost_no_llm_request(tmp_path: Path) -> None:
    """A unique sampler column's repeats are known before any request, yet were sent to the
    LLM and dropped afterwards: 460 rows paid for 400 delivered. Repeats within a chunk are
    now left out first; those of earlier chunks still cost their request."""
    from synthaix.build.engine import Build
    from synthaix.build.executor import ThreadExecutor

    with simulator(seed=4) as sim:
        path = write_config(
            tmp_path / "codes.yaml",
            {
                "name": "codes",
                "rows": 300,
                "chunk_size": 300,
                "columns": [
                    {"name": "code", "type": "integer", "min": 1, "max": 900, "unique": True},
                    {"name": "note", "type": "llm", "prompt": "A note on code {{ code }}"},
                ],
                "provider": provider(sim.url, rows_per_request=10),
                "output": {"dir": str(tmp_path / "out")},
            },
        )
        config = load_config(path)
        manifest = Build(config, ThreadExecutor(config)).run()
    assert manifest.rows.delivered == 300
    dropped = manifest.dropped
    assert dropped.unique_value > 30  # ~45 of the first 300 draws repeat (birthday)
    counted = 300 + dropped.total + manifest.rows.unused  # each dropped row counted once
    assert manifest.rows.generated == counted and dropped.in_chunks == 0
    # Only the first chunk's repeats are known before asking: fill-up rows may repeat its.
    assert manifest.llm.rows_filled - 300 < dropped.unique_value / 2
    rows = _read(tmp_path / "out" / "codes.duckdb", "codes")
    assert len({r["code"] for r in rows}) == 300 and all(r["note"] for r in rows)


def test_a_request_larger_than_the_token_limit_fails_at_once(tmp_path: Path) -> None:
    """A request over the endpoint's tokens-per-minute limit itself can never pass: its
    "Request too large" was retried as a rate limit until the build gave up minutes later."""
    from synthaix.build.engine import Build
    from synthaix.build.executor import ThreadExecutor
    from synthaix.errors import ProviderError

    with simulator(tpm=400, record=True) as sim:
        provider = {"base_url": sim.url, "model": "sim-small", "rows_per_request": 20}
        columns = [{"name": "t", "type": "llm", "max_length": 200}]
        config = make_config(
            columns, rows=40, chunk_size=20, provider=provider, output={"dir": str(tmp_path)}
        )
        with pytest.raises(ProviderError) as caught:
            Build(config, ThreadExecutor(config), persistent=False).run()
        sent = len(sim.state.requests())
    assert caught.value.cause == "request_too_large"
    assert "lower provider.rows_per_request" in (caught.value.hint or "")
    assert sent <= 4  # one a chunk, none retried


def test_an_exhausted_quota_is_no_rate_limit() -> None:
    """A 429 whose code is insufficient_quota was retried for minutes as a rate limit."""
    import httpx
    import openai

    from synthaix.llm.client import LlmClient
    from synthaix.llm.provider import ProviderConfig

    client = LlmClient(ProviderConfig(base_url="http://127.0.0.1:9/v1", model="m"))
    request = httpx.Request("POST", "http://127.0.0.1:9/v1/chat/completions")
    body = {"message": "You exceeded your current quota", "code": "insufficient_quota"}
    error = openai.RateLimitError(
        "quota", response=httpx.Response(429, request=request), body={"error": body}
    )
    wrapped = client._wrap(error)
    assert wrapped.cause == "insufficient_quota" and not wrapped.transient
    assert "billing" in (wrapped.hint or "")


def test_answers_that_give_no_valid_row_stop_the_build() -> None:
    """An endpoint whose every answer is unusable (here: a refusal in prose) took fill-up
    round after round: 1,183 requests for a 300-row build."""
    from synthaix.build.engine import Build
    from synthaix.build.executor import ThreadExecutor
    from synthaix.errors import ProviderError
    from synthaix.sim.faults import FaultRates

    with simulator(faults=FaultRates(refusal=1.0), record=True) as sim:
        provider = {"base_url": sim.url, "model": "sim-small", "rows_per_request": 10}
        columns = [{"name": "t", "type": "llm", "max_length": 30}]
        config = make_config(columns, rows=300, chunk_size=50, provider=provider)
        with pytest.raises(ProviderError) as caught:
            Build(config, ThreadExecutor(config), persistent=False).run()
        sent = len(sim.state.requests())
    assert caught.value.cause == "unusable_answers"
    assert re.search(
        r"no valid value of the llm column t in the first \d+ answers of a chunk \(",
        str(caught.value),
    )
    assert "the answers are no JSON rows" in (caught.value.hint or "")
    assert sent < 100  # the first answers of the chunks running (44 seen), not 1,000s


def test_a_small_chunk_of_unusable_answers_is_left_to_fill_up_rounds() -> None:
    """Fewer than five rows (a fill-up chunk) do not stop the build on their first answers:
    a re-ask with feedback, or the next round, may still get them (the build then stops as
    any build that cannot make its rows)."""
    from synthaix.build.engine import Build
    from synthaix.build.executor import ThreadExecutor
    from synthaix.errors import CapacityError
    from synthaix.sim.faults import FaultRates

    with simulator(faults=FaultRates(refusal=1.0)) as sim:
        provider = {"base_url": sim.url, "model": "sim-small", "rows_per_request": 1}
        columns = [{"name": "t", "type": "llm", "max_length": 30}]
        config = make_config(columns, rows=3, chunk_size=3, provider=provider)
        with pytest.raises(CapacityError):
            Build(config, ThreadExecutor(config), persistent=False).run()
