"""An OpenAI-compatible HTTP server that answers with schema-valid rows, and misbehaves on request.

Endpoints: POST /v1/chat/completions (response_format json_schema / json_object, tools, or
plain), POST /v1/embeddings, GET /v1/models; GET /sim/stats, GET /sim/requests (with `record`),
POST /sim/reset, and GET/POST /sim/limits (read or change the rate limits mid-run) for tests and
benchmarks. Rate limits are token buckets or short fixed windows, with OpenAI's x-ratelimit-*
headers (synthaix.sim.limits). A request for a dataset design (`translate`) gets
a plausible one (synthaix.sim.design); a string `pattern` outside what the simulator can write
gets a 400 (synthaix.sim.values). It serves the test suite, the benchmarks, and users who
want to try the LLM path without a key. Standard library only: one thread per connection,
latency by sleeping.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import math
import random
import re
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np

from synthaix.sim.design import design, is_design_request
from synthaix.sim.faults import FaultRates, spoil_rows, spoil_text
from synthaix.sim.limits import Limiter, Limits, Verdict
from synthaix.sim.values import UnsupportedSchema, fake_value

_FENCED = re.compile(r"```(?:json)?\s*\n(.*?)\n```", re.DOTALL)
CHARS_PER_TOKEN = 4


@dataclass
class SimConfig:
    latency: float = 0.0  # seconds per request
    latency_per_token: float = 0.0  # seconds per completion token
    rpm: int | None = None  # requests per minute, a bucket (synthaix.sim.limits)
    tpm: int | None = None  # tokens per minute: prompt + max_tokens charged at admission
    faults: FaultRates = field(default_factory=FaultRates)
    models: tuple[str, ...] = ("sim-small", "sim-large")
    api_key: str | None = None  # when set, other keys get 401
    context_window: int = 32_000
    formats: tuple[str, ...] = ("json_schema", "json_object", "tools")  # structured outputs served
    seed: int = 0
    retry_after_ms: int = 200
    record: bool = False  # keep every chat request and the answer text, for tests to inspect
    burst_seconds: float = 60.0  # bucket capacity in seconds of the limit (60: a minute's worth)
    window_seconds: float | None = None  # Azure-style: fixed windows of this length instead
    headers: bool = True  # send x-ratelimit-* headers (for the limits set)

    def limits(self) -> Limits:
        return Limits(self.rpm, self.tpm, self.burst_seconds, self.window_seconds)


class _State:
    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.lock = threading.Lock()
        self.rng = random.Random(config.seed)
        self.limiter = Limiter(config.limits())
        self.in_flight = 0
        self.reset()

    def reset(self) -> None:
        """Counters, peak and log start again; requests in flight stay counted (a gauge: they
        still end, and zeroing it drove it below 0)."""
        with self.lock:
            self.counts: Counter[str] = Counter()
            self.peak_in_flight = self.in_flight
            self.log: list[dict[str, Any]] = []
        self.limiter.refill_all()  # the limits stay as set; the buckets start full again

    @contextlib.contextmanager
    def busy(self) -> Iterator[None]:
        with self.lock:
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            yield
        finally:
            with self.lock:
                self.in_flight -= 1

    def count(self, *names: str) -> None:
        with self.lock:
            self.counts.update(names)

    def fork_rng(self) -> random.Random:
        with self.lock:
            return random.Random(self.rng.getrandbits(64))

    def admit(self, tokens: int, model: str = "sim") -> Verdict:
        """Take a request and its tokens from the RPM/TPM buckets, if they hold them."""
        return self.limiter.admit(tokens, model)

    def limit_headers(self, verdict: Verdict | None = None) -> dict[str, str]:
        """The x-ratelimit-* headers to send: the verdict's, or now's (taking nothing)."""
        if not self.config.headers:
            return {}
        return verdict.headers if verdict else self.limiter.headers()

    def set_limits(self, **changes: Any) -> Limits:
        """Change rpm, tpm, burst_seconds or window_seconds mid-run (None clears rpm, tpm or
        window_seconds); buckets keep their level, up to their new capacity."""
        return self.limiter.set(**changes)

    def record(self, body: dict[str, Any], answer: str) -> None:
        if self.config.record:
            with self.lock:
                self.log.append({"request": body, "answer": answer})

    def requests(self) -> list[dict[str, Any]]:
        """The answered chat requests (with `record`), in the order answered: `request` (the
        JSON body) and `answer` (the text sent back, as content or tool-call arguments)."""
        with self.lock:
            return list(self.log)

    def stats(self) -> dict[str, Any]:
        with self.lock:
            return {
                "counts": dict(self.counts),
                "in_flight": self.in_flight,
                "peak_in_flight": self.peak_in_flight,
            }


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: SimServer

    def log_message(self, format: str, *args: Any) -> None:  # quiet by default
        pass

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes; without this, Nagle's algorithm and
        # delayed ACKs add ~40 ms to every answer.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def _error(
        self, status: int, message: str, code: str, headers: dict | None = None, kind: str = ""
    ) -> None:
        kind = kind or ("invalid_request_error" if status < 500 else "server_error")
        error = {"message": message, "type": kind, "param": None, "code": code}
        self._json(status, {"error": error}, headers)

    def _authorised(self) -> bool:
        expected = self.server.state.config.api_key
        if expected and self.headers.get("Authorization") != f"Bearer {expected}":
            self._error(401, "Incorrect API key provided.", "invalid_api_key")
            return False
        return True

    def do_GET(self) -> None:
        path = self.path.rstrip("/")
        if path == "/sim/stats":
            self._json(200, self.server.state.stats())
        elif path == "/sim/requests":
            self._json(200, self.server.state.requests())
        elif path == "/sim/limits":
            self._json(200, self.server.state.limiter.limits.as_dict())
        elif not path.endswith("/models"):
            self._error(404, f"no route {self.path}", "not_found")
        elif self._authorised():
            models = self.server.state.config.models
            data = [{"id": m, "object": "model", "owned_by": "sim"} for m in models]
            self._json(200, {"object": "list", "data": data})

    def do_POST(self) -> None:
        state = self.server.state
        if self.path.rstrip("/") == "/sim/reset":
            state.reset()
            self._json(200, {"ok": True})
            return
        if self.path.rstrip("/") == "/sim/limits":
            self._set_limits()
            return
        with state.busy():
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            if not self._authorised():
                return
            if self.path.endswith("/chat/completions"):
                self._chat(body)
            elif self.path.endswith("/embeddings"):
                self._embeddings(body)
            else:
                self._error(404, f"no route {self.path}", "not_found")

    def _set_limits(self) -> None:
        try:
            length = int(self.headers.get("Content-Length") or 0)
            changes = json.loads(self.rfile.read(length) or b"{}")
            if not isinstance(changes, dict):
                raise ValueError("expected a JSON object: rpm, tpm, burst_seconds, window_seconds")
            limits = self.server.state.set_limits(**changes)
        except (ValueError, TypeError) as exc:
            self._error(400, str(exc), "invalid_limits")
            return
        self._json(200, limits.as_dict())

    def _chat(self, body: dict[str, Any]) -> None:
        state, cfg = self.server.state, self.server.state.config
        rng = state.fork_rng()
        state.count("requests")
        model, asked = body.get("model", ""), _format_of(body)
        prompt_text = "".join(str(m.get("content") or "") for m in body.get("messages", []))
        prompt_tokens = math.ceil(len(prompt_text) / CHARS_PER_TOKEN)
        # TPM is charged at admission with the prompt and max_tokens (as OpenAI estimates);
        # without max_tokens, with the prompt, and the completion once it is written.
        reserve = int(body.get("max_completion_tokens") or body.get("max_tokens") or 0)
        if model not in cfg.models:
            state.count("404")
            message = f"The model `{model}` does not exist."
            self._error(404, message, "model_not_found", state.limit_headers())
        elif asked not in cfg.formats and asked != "text":
            state.count("400")
            message = f"response_format '{asked}' is not supported"
            self._error(400, message, "invalid_request", state.limit_headers())
        elif prompt_tokens > cfg.context_window:
            state.count("400")
            message = f"This model's maximum context length is {cfg.context_window} tokens."
            self._error(400, message, "context_length_exceeded", state.limit_headers())
        elif not (verdict := state.admit(prompt_tokens + reserve, model)).admitted:
            state.count("429", f"429_{verdict.kind}")
            headers = state.limit_headers(verdict)
            if verdict.retry_after is not None:
                headers.update(_retry_after(verdict.retry_after))
            kind = verdict.kind or ""
            self._error(429, verdict.message, "rate_limit_exceeded", headers, kind=kind)
        elif rng.random() < cfg.faults.rate_limit:
            state.count("429", "429_fault")
            headers = {**state.limit_headers(verdict), **_retry_after(cfg.retry_after_ms / 1000)}
            self._error(429, "Rate limit reached; please retry.", "rate_limit_exceeded", headers)
        elif rng.random() < cfg.faults.server_error:
            state.count("5xx")
            status = rng.choice([500, 502, 503])
            message = "The server had an error processing your request."
            self._error(status, message, "server_error", state.limit_headers(verdict))
        elif rng.random() < cfg.faults.dropped:
            state.count("dropped")
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
        else:
            try:
                text, finish, faults = self._answer(body, rng)
            except UnsupportedSchema as exc:  # as a provider refuses a schema it cannot serve
                state.count("400")
                self._error(400, str(exc), "unsupported_schema", state.limit_headers(verdict))
                return
            completion_tokens = math.ceil(len(text) / CHARS_PER_TOKEN)
            if not reserve:
                state.limiter.charge(completion_tokens)
            headers = state.limit_headers(verdict if reserve else None)
            delay = cfg.latency + cfg.latency_per_token * completion_tokens
            if rng.random() < cfg.faults.slow:
                faults.append("slow")
                delay *= 3
            state.count(*faults, "200")
            state.record(body, text)
            time.sleep(delay)
            answer = _completion(body, text, finish, prompt_tokens, completion_tokens)
            self._json(200, answer, headers)

    def _answer(self, body: dict[str, Any], rng: random.Random) -> tuple[str, str, list[str]]:
        faults = self.server.state.config.faults
        schema, messages = _requested_schema(body), body.get("messages", [])
        if is_design_request(schema):
            payload = design(schema, _last_user(messages), rng)  # type: ignore[arg-type]
        else:
            payload = _payload(schema, _inputs(messages), rng)
        applied = []
        if isinstance(payload, dict) and isinstance(payload.get("rows"), list):
            applied += spoil_rows(payload["rows"], faults, rng)
        text, more = spoil_text(json.dumps(payload, ensure_ascii=False), faults, rng)
        applied += more
        limit = body.get("max_completion_tokens") or body.get("max_tokens")
        if limit and len(text) > limit * CHARS_PER_TOKEN:
            return text[: limit * CHARS_PER_TOKEN], "length", [*applied, "length"]
        return text, "tool_calls" if body.get("tools") else "stop", applied

    def _embeddings(self, body: dict[str, Any]) -> None:
        texts = body.get("input", [])
        texts = [texts] if isinstance(texts, str) else texts
        dims = int(body.get("dimensions") or 256)
        self.server.state.count("embeddings")
        data = [
            {"object": "embedding", "index": i, "embedding": _embed(str(t), dims)}
            for i, t in enumerate(texts)
        ]
        tokens = sum(math.ceil(len(str(t)) / CHARS_PER_TOKEN) for t in texts)
        usage = {"prompt_tokens": tokens, "total_tokens": tokens}
        self._json(
            200, {"object": "list", "data": data, "model": body.get("model"), "usage": usage}
        )


class SimServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # Many requests connect at once (max_concurrency 32 and more): the default backlog of 5
    # made the others' connections retry about a second later, at the TCP level.
    request_queue_size = 128

    def __init__(self, config: SimConfig, host: str = "127.0.0.1", port: int = 0) -> None:
        state = _State(config)  # first: limits out of range raise before the port is taken
        super().__init__((host, port), _Handler)
        self.state = state

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/v1"

    def set_limits(self, **changes: Any) -> Limits:
        """As POST /sim/limits: change rpm, tpm, burst_seconds or window_seconds mid-run."""
        return self.state.set_limits(**changes)

    def __enter__(self) -> SimServer:
        # a short poll: shutdown() waits for it, ~0.5 s a simulator at the default
        serve = functools.partial(self.serve_forever, poll_interval=0.05)
        threading.Thread(target=serve, name="synthaix-sim", daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()


def _retry_after(seconds: float) -> dict[str, str]:
    """OpenAI's and Azure's pair: milliseconds, and whole seconds rounded up (at least 1)."""
    ms = max(1, math.ceil(seconds * 1000))
    return {"retry-after-ms": str(ms), "retry-after": str(max(1, math.ceil(ms / 1000)))}


def _format_of(body: dict[str, Any]) -> str:
    if body.get("tools"):
        return "tools"
    return (body.get("response_format") or {}).get("type", "text")


def _fenced_json(message: dict[str, Any]) -> list[Any]:
    found = []
    for block in _FENCED.findall(str(message.get("content") or "")):
        with contextlib.suppress(ValueError):
            found.append(json.loads(block))
    return found


def _requested_schema(body: dict[str, Any]) -> dict[str, Any] | None:
    fmt = body.get("response_format") or {}
    if fmt.get("type") == "json_schema":
        return fmt.get("json_schema", {}).get("schema")
    if body.get("tools"):
        return body["tools"][0].get("function", {}).get("parameters")
    # json_object or plain: the schema is in the prompt
    blocks = (b for m in body.get("messages", []) for b in _fenced_json(m))
    return next((b for b in blocks if isinstance(b, dict) and "properties" in b), None)


def _last_user(messages: list[dict[str, Any]]) -> str:
    last = next((m for m in reversed(messages) if m.get("role") == "user"), {})
    return str(last.get("content") or "")


def _inputs(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Input rows of the last user message: a fenced JSON list of objects with an `id`."""
    last = next((m for m in reversed(messages) if m.get("role") == "user"), {})
    for found in _fenced_json(last):
        if isinstance(found, list) and all(isinstance(r, dict) and "id" in r for r in found):
            return found
    return []


def _payload(schema: dict[str, Any] | None, inputs: list[dict], rng: random.Random) -> Any:
    if schema is None:
        return {"rows": [{"text": fake_value({"type": "string"}, rng)} for _ in range(5)]}
    rows_schema = schema.get("properties", {}).get("rows")
    if not rows_schema or rows_schema.get("type") != "array":
        return fake_value(schema, rng)
    count = len(inputs) or int(rows_schema.get("maxItems") or rows_schema.get("minItems") or 5)
    rows = [fake_value(rows_schema.get("items", {}), rng) for _ in range(count)]
    for row, given in zip(rows, inputs, strict=False):
        if "id" in row:
            row["id"] = given["id"]
    return {"rows": rows}


def _completion(body: dict, text: str, finish: str, prompt: int, completion: int) -> dict:
    message: dict[str, Any] = {"role": "assistant", "content": text}
    if body.get("tools"):
        name = body["tools"][0].get("function", {}).get("name", "rows")
        call = {"id": "call_sim", "type": "function", "function": {"name": name, "arguments": text}}
        message = {"role": "assistant", "content": None, "tool_calls": [call]}
    return {
        "id": f"chatcmpl-sim-{random.getrandbits(32):08x}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model"),
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        },
    }


def _embed(text: str, dims: int) -> list[float]:
    """A deterministic unit vector from hashed character trigrams (similar texts, close vectors)."""
    vector = np.zeros(dims)
    padded = f"  {text.lower()}  "
    for i in range(len(padded) - 2):
        digest = hashlib.blake2b(padded[i : i + 3].encode(), digest_size=8).digest()
        vector[int.from_bytes(digest[:4], "little") % dims] += 1 if digest[4] & 1 else -1
    norm = np.linalg.norm(vector) or 1.0
    return (vector / norm).round(6).tolist()
