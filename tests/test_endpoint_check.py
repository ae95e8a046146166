"""A base_url that is no LLM endpoint (a plain web server) is refused at once, never retried.

Everything runs over loopback against real HTTP servers and the real openai client.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from llm_helpers import simulator

from conftest import write_config
from synthaix.errors import ProviderError
from synthaix.llm.client import LlmClient
from synthaix.llm.provider import ProviderConfig
from synthaix.llm.stats import StatsRecorder

NOT_AN_ENDPOINT = "not an OpenAI-compatible endpoint"
COMPLETION = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 0,
    "model": "x",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "OK"},
            "finish_reason": "length",
        }
    ],
    "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
}


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass


class _Canned(BaseHTTPRequestHandler):
    """Answers each method with one canned (status, content type, body); records requests."""

    answers: dict[str, tuple[int, str, bytes]]
    seen: list[tuple[str, str, dict[str, Any] | None]]

    def _answer(self) -> None:
        size = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(size) if size else b""
        self.seen.append((self.command, self.path, json.loads(raw) if raw else None))
        status, kind, body = self.answers[self.command]
        self.send_response(status)
        self.send_header("content-type", kind)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, *args: Any) -> None:
        pass


@contextmanager
def _serving(handler: Any) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    # A short poll interval: shutdown() waits for one, and every test stops a server.
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def _canned(
    get: tuple[int, str, bytes], post: tuple[int, str, bytes]
) -> Iterator[tuple[str, list[tuple[str, str, dict[str, Any] | None]]]]:
    seen: list[tuple[str, str, dict[str, Any] | None]] = []
    handler = type("Handler", (_Canned,), {"answers": {"GET": get, "POST": post}, "seen": seen})
    with _serving(handler) as url:
        yield url, seen


@contextmanager
def _web_server(root: Path) -> Iterator[str]:
    """What `python -m http.server` runs: files for GET, 501 for POST."""
    with _serving(partial(_Quiet, directory=str(root))) as url:
        yield url


def _refused(url: str, **provider: Any) -> tuple[ProviderError, float]:
    client = LlmClient(ProviderConfig(base_url=url, model="x", **provider))
    started = time.perf_counter()
    with pytest.raises(ProviderError) as caught:
        client.check()
    return caught.value, time.perf_counter() - started


HTML = (200, "text/html; charset=utf-8", b"<!doctype html><html><body>Welcome</body></html>")


def test_plain_web_server_is_refused_at_once(tmp_path: Path) -> None:
    with _web_server(tmp_path) as url:
        error, seconds = _refused(url)
    assert seconds < 3, seconds
    assert not error.transient and error.cause == "not_an_endpoint"
    assert str(error) == (
        f"{url} is not an OpenAI-compatible endpoint: GET /models answered HTTP 404 and "
        "POST /chat/completions answered HTTP 501"
    )
    assert error.hint and "provider.base_url" in error.hint and "/v1" in error.hint


def test_catch_all_web_page_is_refused() -> None:
    with _canned(get=HTML, post=HTML) as (url, seen):
        error, seconds = _refused(url)
    assert seconds < 3, seconds
    assert not error.transient and NOT_AN_ENDPOINT in str(error)
    assert "not a list of models" in str(error) and "not a chat completion" in str(error)
    assert "text/html" in str(error)
    assert [(method, path) for method, path, _ in seen] == [
        ("GET", "/v1/models"),
        ("POST", "/v1/chat/completions"),
    ]


def test_json_that_is_no_model_list_nor_completion_is_refused() -> None:
    junk = (200, "application/json", b'{"status": "ok"}')
    with _canned(get=junk, post=junk) as (url, _):
        error, _ = _refused(url)
    assert not error.transient and NOT_AN_ENDPOINT in str(error)


@pytest.mark.parametrize("status", [501, 405])
def test_completion_against_a_server_without_post_fails_without_retries(status: int) -> None:
    refusal = (status, "text/html", b"<html><body>Unsupported method</body></html>")
    with _canned(get=HTML, post=refusal) as (url, seen):
        client = LlmClient(ProviderConfig(base_url=url, model="x", max_attempts=8))
        started = time.perf_counter()
        with pytest.raises(ProviderError) as caught:
            client.complete(
                [{"role": "user", "content": "hi"}], {"type": "object"}, 64, StatsRecorder()
            )
        seconds = time.perf_counter() - started
    assert len(seen) == 1 and seen[0][:2] == ("POST", "/v1/chat/completions")
    assert seconds < 1, seconds
    error = caught.value
    assert not error.transient and error.cause == "not_an_endpoint"
    assert f"HTTP {status}" in str(error) and "OpenAI-compatible endpoint" in str(error)
    assert error.hint and "provider.base_url" in error.hint


def test_simulator_passes_the_check() -> None:
    with simulator() as sim:
        LlmClient(ProviderConfig(base_url=sim.url, model="sim-small")).check()
        assert (
            "requests" not in sim.state.stats()["counts"]
        )  # /models told enough: no completion probe


def test_endpoint_without_models_list_passes_after_one_tiny_completion() -> None:
    not_found = (404, "application/json", b'{"detail": "Not Found"}')
    answer = (200, "application/json", json.dumps(COMPLETION).encode())
    with _canned(get=not_found, post=answer) as (url, seen):
        LlmClient(ProviderConfig(base_url=url, model="x")).check()
    _, (method, path, probe) = seen
    assert (method, path) == ("POST", "/v1/chat/completions")
    assert probe is not None and probe["max_tokens"] == 1 and probe["model"] == "x"
    assert "response_format" not in probe and "tools" not in probe
    assert len(probe["messages"]) == 1


@pytest.mark.parametrize(
    ("status", "body", "cause"),
    [
        (400, {"error": {"message": "max_tokens is too small"}}, None),
        (404, {"error": {"message": "model 'x' not found, try pulling it"}}, "model_not_found"),
        (401, {"error": {"message": "invalid api key"}}, "credentials"),
    ],
)
def test_probe_errors_from_a_real_endpoint_keep_their_meaning(
    status: int, body: dict[str, Any], cause: str | None
) -> None:
    not_found = (404, "text/plain", b"404 page not found")
    answer = (status, "application/json", json.dumps(body).encode())
    with _canned(get=not_found, post=answer) as (url, _):
        client = LlmClient(ProviderConfig(base_url=url, model="x"))
        if cause is None:
            client.check()  # a 400 about the parameters: an LLM endpoint all the same
            return
        with pytest.raises(ProviderError) as caught:
            client.check()
    assert caught.value.cause == cause and NOT_AN_ENDPOINT not in str(caught.value)


def test_build_against_a_web_server_fails_in_one_line(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    out = tmp_path / "never"
    env = {**os.environ, "PREFECT_API_URL": "http://127.0.0.1:9/api"}  # Prefect is never reached
    with _web_server(site) as url:
        config = write_config(
            tmp_path / "reviews.yaml",
            {
                "name": "reviews",
                "rows": 20,
                "columns": [
                    {"name": "city", "type": "category", "values": ["Berlin", "Paris"]},
                    {"name": "review", "type": "llm", "prompt": "A review from {{ city }}"},
                ],
                "provider": {"base_url": url, "model": "x"},
            },
        )
        started = time.perf_counter()
        result = subprocess.run(
            [sys.executable, "-m", "synthaix.cli", "build", str(config), "--out", str(out)],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        seconds = time.perf_counter() - started
    assert result.returncode == 2, result.stderr
    assert seconds < 10, seconds
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and NOT_AN_ENDPOINT in errors[0], result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert not out.exists()
