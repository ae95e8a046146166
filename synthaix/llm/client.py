"""The one place that talks to the LLM endpoint: the official `openai` client, plus
tenacity retries for transient errors, paced by what the provider says (synthaix.llm.pacing).

Retries live here and only here (the openai client's own retries are off): transport errors,
timeouts, 408/409/5xx and 429 are retried with jittered backoff, 429 after the Retry-After the
server asked for, for as long as the endpoint answers other requests (a retry budget, not a
count); 400/401/403/404 fail at once with a message that says what to fix, and so do
405/501/505, which mean the URL is not an LLM API at all (e.g. a plain web server).

Pacing, in order: the client's max_concurrency (a hard cap), the endpoint's adaptive
concurrency, then the buckets learned from x-ratelimit-* headers and the configured rpm/tpm.
"""

from __future__ import annotations

import contextlib
import copy
import heapq
import itertools
import math
import random
import re
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from synthaix import progress, stopping
from synthaix.errors import ProviderError
from synthaix.llm.credentials import api_key, resolve_provider
from synthaix.llm.pacing import Aimd, Bounds, Pacer, RetryBudget, Ticket, pacer_for, retry_after
from synthaix.llm.provider import DEFAULT_BASE_URL, ProviderConfig
from synthaix.llm.stats import StatsRecorder

if TYPE_CHECKING:  # imported where used: openai takes ~1 s to import, tenacity 45 ms
    import openai
    from tenacity import RetryCallState

CHARS_PER_TOKEN = 4.0  # a calibrated estimate; real counts come back in `usage`
_FALLBACK = {"json_schema": "json_object", "json_object": "tools"}
# Answers that say "this URL does not serve the API", not "try again": a web server that has no
# POST, or an HTTP stack that is no API. Retrying them only delays the failure by minutes.
_NOT_AN_API = (405, 501, 505)
_BASE_URL_HINT = (
    "check provider.base_url: it should be the API root that serves /chat/completions, usually "
    "ending in /v1, e.g. http://127.0.0.1:11434/v1 for Ollama"
)
_SPREAD_BASE, _SPREAD_MAX = 0.125, 10.0  # seconds of the retries' jitter (see _wait)
SLOW_BOUND = 30.0  # seconds a request waits for the configured limits before a note says so
T = TypeVar("T")
Gate = Callable[[], AbstractContextManager[Any]]


@dataclass
class Completion:
    text: str
    finish_reason: str
    max_tokens: int = 0  # what the answered attempt asked for


def estimate_tokens(text: str) -> int:
    return math.ceil(len(text) / CHARS_PER_TOKEN)


class LlmClient:
    """One build's (or one worker process's) client. `gate`: a context manager taken around
    every request, e.g. a slot of a concurrency limit shared by all workers."""

    def __init__(self, provider: ProviderConfig, gate: Gate = contextlib.nullcontext) -> None:
        import openai

        # `{{ prefect.variables.NAME }}` resolved here too when the caller did not (the CLI);
        # the key from provider.api_key_block (a Prefect Secret) when set, else the env var.
        provider = resolve_provider(provider)
        self.provider = provider
        self.base_url = provider.resolved_base_url()
        key = api_key(provider)
        if not key and self.base_url == DEFAULT_BASE_URL:
            raise ProviderError(
                f"no API key: ${provider.api_key_env} is not set",
                cause="credentials",
                hint=f"export {provider.api_key_env}=..., set provider.api_key_block to a "
                "Prefect Secret block, or point provider.base_url at a local server (try "
                "`synthaix sim`)",
            )
        self._secret = key or "not-needed"  # local servers (Ollama, vLLM, llama.cpp) take any key
        self._openai = openai.OpenAI(
            base_url=self.base_url, api_key=self._secret, max_retries=0, timeout=provider.timeout
        )
        self.bounds = Bounds(provider.rpm, provider.tpm)  # this client's configured limits
        self.pacer = self._pacer(provider.model)  # the endpoint's, shared in the process
        self._slots = OrderedSlots(provider.max_concurrency)
        self._said_slow = False
        self.gate = gate
        self._auto = provider.structured_output == "auto"
        self.mode = "json_schema" if self._auto else provider.structured_output

    def _say_slow(self, seconds: float, tokens: int) -> None:
        """Once: a request waits minutes for the configured limits (a `tpm` below what a
        request takes showed a progress bar that never moved, with no word why)."""
        limits = ", ".join(
            f"provider.{k} {v:,}"
            for k, v in (("rpm", self.provider.rpm), ("tpm", self.provider.tpm))
            if v
        )
        text = (
            f"a request of ~{tokens:,} tokens waits {seconds / 60:.1f} min for the configured "
            f"limits ({limits}); raise them if the provider allows more"
        )
        progress.warn(text)

    def idle(self) -> bool:
        """A request now would not wait for a place among max_concurrency (a filler then sends
        a partial batch rather than wait for a full one)."""
        return self._slots.idle()

    def check(self) -> None:
        """Fail fast, before any chunk runs, on a wrong URL, key or model name, and on a URL
        that is no LLM endpoint at all (a web server would be retried for minutes)."""
        import openai

        waited = min(15, self.provider.timeout)
        try:
            raw = self._openai.models.with_raw_response.list(timeout=waited)
        except openai.NotFoundError:
            seen = "HTTP 404"  # some real servers have no /models: a tiny completion decides
        except openai.APITimeoutError:
            raise ProviderError(
                f"{self.base_url} timed out: GET /models had no answer in {waited:g} s",
                cause="timeout",
                hint="the server accepted the connection and never answered: check that the "
                "port is the LLM server's (not a proxy or another service), and that it is "
                "not stuck loading a model",
            ) from None
        except openai.APIError as exc:
            raise self._wrap(exc) from None
        else:
            # Read the body ourselves: the client's parser turns a web page into an
            # AttributeError and `{"hello": 1}` into an empty list of models.
            body = _json(raw.http_response)
            data = body.get("data") if isinstance(body, dict) else None
            if not isinstance(data, list):
                seen = f"{_seen(raw.http_response)}, not a list of models"
            else:
                self.pacer.answered_check()  # it answers: a give-up of earlier is over
                models = [str(m["id"]) for m in data if isinstance(m, dict) and "id" in m]
                if models and self.provider.model not in models:
                    raise ProviderError(
                        f"model '{self.provider.model}' is not served by {self.base_url} "
                        f"(it has: {', '.join(sorted(models)[:10])})",
                        cause="model_not_found",
                        hint="set provider.model (or a run's model parameter, --model) to "
                        "one of those names",
                    )
                return
        self._probe(f"GET /models answered {seen}")

    def _probe(self, models_seen: str) -> None:
        """One tiny completion, for a URL whose /models told nothing. An LLM endpoint answers it
        with a completion or an error about the request; a web server answers 404/405/501 or a
        page, in milliseconds, where the build would retry it for minutes."""
        import openai

        try:
            raw = self._openai.chat.completions.with_raw_response.create(
                model=self.provider.model,
                messages=[{"role": "user", "content": "Say OK."}],
                max_tokens=1,
                timeout=min(10, self.provider.timeout),
            )
        except openai.APITimeoutError:
            return  # it took the request and is thinking (a model loading?): no web server does
        except openai.APIStatusError as exc:
            status = exc.status_code
            # A 404 is either an unknown model (OpenAI, Ollama and vLLM say so in JSON) or an
            # unknown path; no status tells them apart, so the message has to.
            model_404 = status == 404 and "model" in _detail(exc).lower()
            if status in (401, 403) or model_404:
                raise self._wrap(exc) from None
            if status != 404 and status not in _NOT_AN_API:
                return  # a 400 about the parameters, a 429 or a 503 is still an LLM endpoint
            seen = f"HTTP {status}"
        except openai.APIError as exc:
            raise self._wrap(exc) from None
        else:
            body = _json(raw.http_response)
            if isinstance(body, dict) and isinstance(body.get("choices"), list):
                return
            seen = f"{_seen(raw.http_response)}, not a chat completion"
        raise ProviderError(
            f"{self.base_url} is not an OpenAI-compatible endpoint: {models_seen} and "
            f"POST /chat/completions answered {seen}",
            cause="not_an_endpoint",
            hint=_BASE_URL_HINT,
        )

    def complete(
        self,
        messages: list[dict[str, str]],
        schema: dict[str, Any],
        max_tokens: int | Callable[[], int],
        recorder: StatsRecorder,
        build: str = "",
        order: int = 0,
    ) -> Completion:
        """One answer, retried on transient errors; mode falls back when `auto` and unsupported.
        `max_tokens` may be a function: asked at each attempt, and again while the attempt
        waits for the rate limits, as what a request needs is learned from the answers.
        `build`: the build it is for; once that is stopping, no attempt is sent. `order`: its
        chunk's index; of the requests waiting for a place, the lowest order goes first."""
        import openai

        prompt_estimate = sum(estimate_tokens(m["content"]) for m in messages)
        budget = max_tokens if callable(max_tokens) else lambda: max_tokens
        asked = [0]

        def send(tokens: int) -> Any:
            asked[0] = tokens - prompt_estimate
            while True:
                try:
                    return self._openai.chat.completions.with_raw_response.create(
                        model=self.provider.model,
                        messages=messages,  # type: ignore[arg-type]
                        temperature=self.provider.temperature,
                        max_tokens=asked[0],
                        **self._format(schema),
                    )
                except openai.BadRequestError as exc:
                    if not (self._auto and self.mode in _FALLBACK and _mentions_format(exc)):
                        raise
                    self.mode = _FALLBACK[self.mode]  # this endpoint lacks that structured output

        def read(raw: Any) -> Completion:
            response = raw.parse()
            if not response.choices:
                raise ProviderError(
                    "the endpoint answered with no choices", cause="empty", transient=True
                )
            choice, usage = response.choices[0], response.usage
            calls = getattr(choice.message, "tool_calls", None) or []
            text = calls[0].function.arguments if calls else (choice.message.content or "")
            prompt = usage.prompt_tokens if usage else prompt_estimate
            completion = usage.completion_tokens if usage else estimate_tokens(text)
            recorder.request(prompt, completion, self.provider.cost(prompt, completion))
            return Completion(text, choice.finish_reason or "stop", asked[0])

        # Tokens as providers count them against TPM when they admit a request (OpenAI, the
        # simulator): the prompt plus max_tokens.
        tokens = lambda: prompt_estimate + budget()  # noqa: E731
        return self._with_retries(send, read, tokens, recorder, build=build, order=order)

    def embed(
        self,
        texts: list[str],
        model: str,
        dims: int | None,
        recorder: StatsRecorder | None = None,
        price_per_million: float | None = None,
    ) -> list[list[float]]:
        """Embeddings of `texts` (one request), with the same retry rules as completions;
        `recorder` counts the request, its tokens and their cost at `price_per_million`."""
        options: dict[str, Any] = {"dimensions": dims} if dims else {}
        recorder = recorder or StatsRecorder()
        estimate = sum(estimate_tokens(t) for t in texts)

        def send(tokens: int) -> Any:
            return self._openai.embeddings.with_raw_response.create(
                model=model, input=texts, **options
            )

        def read(raw: Any) -> list[list[float]]:
            response = raw.parse()
            usage = getattr(response, "usage", None)
            tokens = (usage.prompt_tokens if usage else None) or estimate
            price = price_per_million
            recorder.request(tokens, 0, None if price is None else tokens * price / 1e6)
            recorder.answered()
            return [list(item.embedding) for item in sorted(response.data, key=lambda d: d.index)]

        return self._with_retries(send, read, lambda: estimate, recorder, self._pacer(model))

    def _pacer(self, model: str) -> Pacer:
        return pacer_for(self.base_url, model, self._secret, self.provider.max_concurrency)

    def _with_retries(
        self,
        send: Callable[[int], Any],
        read: Callable[[Any], T],
        tokens: Callable[[], int],
        recorder: StatsRecorder,
        pacer: Pacer | None = None,
        build: str = "",
        order: int = 0,
    ) -> T:
        """`send` one request of the `tokens` it is charged (a raw response: its headers feed
        the pacer), `read` the answer.
        The one retry layer for transport errors, 5xx and 429, within a RetryBudget.
        A request holds a place among those in progress. It gives the place up while it waits
        to retry an odd failure: it is not at the provider, and holding the place idled it
        (measured: 11 % of random 429s cost 8 points of throughput). Once the adaptive limit
        has backed off (429s are many: overload), it keeps the place through the wait, so
        waiting requests do not come back as extra load (measured without: 2.5x the 429s)."""
        import openai
        from tenacity import Retrying, retry_if_exception

        pacer = pacer or self.pacer
        stopped: list[tuple[int, str]] = []
        place = _Place(self._slots, pacer.aimd, order)
        first_sent: list[float] = []  # the budget counts from here, not from a wait in line

        def given_up() -> None:
            if reason := pacer.given_up():  # queued requests too: each would wait a timeout
                error = pacer.give_up_error
                cause = getattr(error, "cause", "timeout")
                said = f": {error}" if error is not None else ""
                raise ProviderError(
                    f"gave up, as another request to {self.base_url} did ({reason}){said}",
                    cause=cause,
                    transient=False,
                    hint=getattr(error, "hint", None)
                    or _gave_up_hint(cause, self.provider.timeout),
                )

        def attempt() -> T:
            stopping.check(build)  # a retry of a stopped build's request is not sent either
            given_up()
            queued, limited = place.take()
            try:
                given_up()  # checked again: the place may have taken a while
            except ProviderError:
                place.give()
                raise
            recorder.queued(queued)
            recorder.waited(limited)
            if not first_sent:
                first_sent.append(time.monotonic())
            try:
                answer = paced()
            except BaseException:
                if not pacer.aimd.backed_off():
                    place.give()
                raise
            place.give()
            return answer

        def paced() -> T:
            charged = tokens()
            bound = self.bounds.reserve(charged)  # this client's configured rpm/tpm
            if bound >= SLOW_BOUND and not self._said_slow:
                self._said_slow = True
                self._say_slow(bound, charged)
            stopping.sleep(build, bound)
            ticket = pacer.admit(tokens)
            recorder.waited(bound + ticket.wait)
            try:
                with self.gate():
                    # Again here: the waits above (a place, the limits, the gate) held requests
                    # queued by other chunks, which would otherwise all go out after a stop.
                    stopping.check(build)
                    sent = time.monotonic()
                    try:
                        raw = send(int(ticket.amounts["tokens"]))
                    except openai.APIError as exc:
                        self._failed(pacer, ticket, exc, sent, recorder)
                        raise self._wrap(exc) from None
            finally:
                pacer.settle(ticket)  # not sent (a gate that failed, an interrupt): no debt
            pacer.answered(ticket, raw.headers, sent)
            recorder.answered()
            try:
                return read(raw)
            except openai.APIError as exc:
                raise self._wrap(exc) from None

        def budget(state: RetryCallState) -> RetryBudget:
            # A 429 wave lasts as long as the limit's reset (a minute's Retry-After): the
            # window follows the answers' speed only for an endpoint that fails otherwise.
            failure = state.outcome.exception() if state.outcome else None
            cause = getattr(failure, "cause", "")
            slowest = None if cause == "rate_limit" else pacer.slowest()
            silent = cause in ("timeout", "connection")
            return RetryBudget(self.provider.max_attempts, self.provider.timeout, slowest, silent)

        def stop(state: RetryCallState) -> bool:
            elapsed = time.monotonic() - first_sent[0]
            bounds = budget(state)
            reason = bounds.stop(state.attempt_number, elapsed, pacer.since_answer())
            if reason and bounds.silent:  # no HTTP answer at all (not 429s or 5xx)
                failure = state.outcome.exception() if state.outcome else None
                error = _frameless(failure) if isinstance(failure, Exception) else None
                pacer.give_up(reason, error)  # the endpoint, not this request: the others too
            reason = reason or pacer.given_up()
            if reason:
                stopped.append((state.attempt_number, reason))
            return reason is not None

        def before_sleep(state: RetryCallState) -> None:
            recorder.retry(state.outcome.exception().cause)  # type: ignore[union-attr]
            recorder.waited(state.next_action.sleep)  # type: ignore[union-attr]

        retrying = Retrying(
            stop=stop,
            retry=retry_if_exception(lambda e: isinstance(e, ProviderError) and e.transient),
            # A Retry-After of an hour would only delay the request: with no answer in the
            # budget's window it gives up anyway.
            wait=lambda state: min(_wait(state, pacer.failing), budget(state).window),
            before_sleep=before_sleep,
            reraise=True,
        )
        try:
            return retrying(attempt)
        except ProviderError as exc:
            if not exc.transient or not stopped:
                raise
            attempts, reason = stopped[-1]
            raise ProviderError(
                f"gave up after {attempts} attempt{'s' * (attempts != 1)} ({reason}): {exc}",
                cause=exc.cause,
                transient=False,  # retried here already: no other layer retries it again
                hint=exc.hint or _gave_up_hint(exc.cause, self.provider.timeout),
            ) from None
        finally:
            place.give()

    def _failed(
        self,
        pacer: Pacer,
        ticket: Ticket,
        exc: openai.APIError,
        sent: float,
        recorder: StatsRecorder,
    ) -> None:
        import openai

        status = getattr(exc, "status_code", 0)
        headers = exc.response.headers if isinstance(exc, openai.APIStatusError) else {}
        if status == 429:
            recorder.throttled()
        congested = status == 429 or isinstance(exc, openai.APITimeoutError)
        pacer.failed(ticket, headers, sent, congested)

    def _format(self, schema: dict[str, Any]) -> dict[str, Any]:
        if self.mode == "json_schema":
            spec = {"name": "rows", "schema": schema, "strict": True}
            return {"response_format": {"type": "json_schema", "json_schema": spec}}
        if self.mode == "tools":
            tool = {"type": "function", "function": {"name": "emit_rows", "parameters": schema}}
            choice = {"type": "function", "function": {"name": "emit_rows"}}
            return {"tools": [tool], "tool_choice": choice}
        return {"response_format": {"type": "json_object"}}

    def _wrap(self, exc: openai.APIError) -> ProviderError:
        import openai

        where = self.base_url
        if isinstance(exc, openai.APITimeoutError):
            return ProviderError(f"{where} timed out", cause="timeout", transient=True)
        if isinstance(exc, openai.APIConnectionError) and _connected(exc):
            return ProviderError(
                f"{where} closed the connection without an answer",
                cause="connection",
                transient=True,
                hint="the server may fail on these requests (see its log), or a proxy in "
                "between dropped them",
            )
        if isinstance(exc, openai.APIConnectionError):
            hint = "is the server running? check provider.base_url (or $OPENAI_BASE_URL)"
            if _tls_failed(exc) and where.startswith("https://"):
                hint = (
                    "the TLS handshake failed: a local server (vLLM, Ollama, llama.cpp) "
                    f"usually speaks plain HTTP, {where.replace('https://', 'http://', 1)}"
                )
            return ProviderError(
                f"cannot reach {where}", cause="connection", transient=True, hint=hint
            )
        status = getattr(exc, "status_code", 0)
        detail = _detail(exc)
        if len(self._secret) > 3:
            detail = detail.replace(self._secret, "***")
        if status in _NOT_AN_API:
            return ProviderError(
                f"{where} does not look like an OpenAI-compatible endpoint "
                f"(HTTP {status}): {detail}",
                cause="not_an_endpoint",
                hint=_BASE_URL_HINT,
            )
        if status == 429 and _code(exc) == "insufficient_quota":
            return ProviderError(
                f"{where} says the account's quota is used up (HTTP 429): {detail}",
                cause="insufficient_quota",
                hint="check the plan and billing of the account the key belongs to; waiting "
                "does not help",
            )
        if status == 429 and re.search(r"request too large", str(detail), re.I):
            return ProviderError(
                f"{where} refused a request larger than its rate limit allows (HTTP 429): {detail}",
                cause="request_too_large",
                hint="lower provider.rows_per_request (fewer rows a request) or "
                "provider.max_tokens; or ask the provider for a higher tokens-per-minute limit",
            )
        if status in (408, 409, 429) or status >= 500:
            if status == 429:
                cause, problem = "rate_limit", "is rate limiting"
            else:
                cause, problem = "server_error" if status >= 500 else f"http_{status}", "failed"
            return ProviderError(
                f"{where} {problem} (HTTP {status}): {detail}",
                cause=cause,
                transient=True,
                retry_after=_retry_after(exc),
            )
        if status in (401, 403):
            unset = self._secret == "not-needed" and not self.provider.api_key_block
            return ProviderError(
                f"{where} rejected the credentials (HTTP {status})",
                cause="credentials",
                hint=f"{_key_source(self.provider)} is not set: export the key there"
                if unset
                else f"check the API key in {_key_source(self.provider)} (and that it may "
                f"use model '{self.provider.model}')",
            )
        if status == 404:
            return ProviderError(
                f"model '{self.provider.model}' not found at {where} (HTTP 404): {detail}",
                cause="model_not_found",
                hint="check provider.model and provider.base_url",
            )
        too_long = re.search(r"context|too long|too large|maximum|tokens", str(detail), re.I)
        return ProviderError(
            f"{where} refused the request (HTTP {status}): {detail}",
            cause=f"http_{status}",
            # Said only when the refusal is about length: a refused schema (a pattern the
            # endpoint cannot write) was sent to shorten its context.
            hint="lower provider.rows_per_request or max_length"
            if too_long
            else "check the llm columns' schema (pattern, enum, format) and provider settings",
        )


class OrderedSlots:
    """`size` places for requests in progress, handed on release to the waiting request of the
    lowest order (its chunk's index), then the earliest: chunks then finish in order, so a
    build stopped midway has its paid answers in whole chunks, which the ledger keeps for a
    resume, rather than spread over every chunk in flight (measured before: 16 answers paid, 0
    chunks saved). A place goes straight to the waiter it is handed to: no wake-up race."""

    def __init__(self, size: int) -> None:
        self._free = size
        self._lock = threading.Lock()
        self._waiting: list[tuple[int, int, threading.Event]] = []  # a heap
        self._arrivals = itertools.count()

    def acquire(self, order: int = 0) -> None:
        with self._lock:
            if self._free and not self._waiting:
                self._free -= 1
                return
            entry = (order, next(self._arrivals), threading.Event())
            heapq.heappush(self._waiting, entry)
        try:
            entry[2].wait()
        except BaseException:  # an interrupt while waiting
            with self._lock:
                if entry[2].is_set():
                    self._hand_on()  # it was handed a place it will not use
                else:
                    self._waiting.remove(entry)
                    heapq.heapify(self._waiting)
            raise

    def release(self) -> None:
        with self._lock:
            self._hand_on()

    def idle(self) -> bool:
        """A request now would not wait for a place."""
        with self._lock:
            return self._free > 0 and not self._waiting

    def _hand_on(self) -> None:
        if self._waiting:
            heapq.heappop(self._waiting)[2].set()
        else:
            self._free += 1


class _Place:
    """One request's place among those in progress: a slot of its client's max_concurrency
    and one of the endpoint's adaptive limit, taken in that order and given back together."""

    def __init__(self, slots: OrderedSlots, aimd: Aimd, order: int = 0) -> None:
        self._slots, self._aimd, self._order = slots, aimd, order
        self.held = False

    def take(self) -> tuple[float, float]:
        """Seconds waited for a slot, then for the adaptive limit (0, 0 when held already)."""
        if self.held:
            return 0.0, 0.0
        asked = time.monotonic()
        self._slots.acquire(self._order)
        slotted = time.monotonic()
        try:
            self._aimd.enter()
        except BaseException:
            self._slots.release()
            raise
        self.held = True
        return slotted - asked, time.monotonic() - slotted

    def give(self) -> None:
        if self.held:
            self.held = False
            self._aimd.leave()
            self._slots.release()


def _key_source(provider: ProviderConfig) -> str:
    if provider.api_key_block:
        return f"the Prefect Secret block '{provider.api_key_block}'"
    return f"${provider.api_key_env}"


def _wait(state: RetryCallState, failing: int) -> float:
    """Retry-After, if any, plus full jitter over [0, 0.125 x 2^n] s (at most 10 s), so waiting
    requests come back spread out. n is the attempt number, but no more than the attempts that
    failed in a row across the process (and no less than half the attempt number): backing off
    exponentially helps an endpoint that is down or overloaded (every request fails), not one
    that drops the odd request while it answers the others, where it only left a build waiting
    seconds for its last request; a request that keeps failing alone still backs off."""
    exc = state.outcome.exception() if state.outcome else None
    after = exc.retry_after if isinstance(exc, ProviderError) and exc.retry_after else 0.0
    attempt = state.attempt_number
    n = max(1, min(attempt, failing), attempt // 2)  # one request failing alone still slows
    return after + random.uniform(0, min(_SPREAD_MAX, _SPREAD_BASE * 2**n))


def _connected(exc: openai.APIConnectionError) -> bool:
    """Whether the request reached the server, which then closed the connection (a crash
    while answering, a proxy): not "cannot reach" (refused, no such host)."""
    # By name: openai's transport is httpx or, in later releases, httpx2 (the same classes).
    kinds = {kind.__name__ for kind in type(exc.__cause__).__mro__}
    return "TransportError" in kinds and not kinds & {
        "ConnectError",
        "ProxyError",
        "UnsupportedProtocol",
    }


def _tls_failed(exc: BaseException) -> bool:
    """Whether an SSL error is among the causes (https:// to a plain-HTTP server)."""
    import ssl

    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLError) or "SSL" in type(seen).__name__:
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _retry_after(exc: openai.APIError) -> float | None:
    response = getattr(exc, "response", None)
    return retry_after(response.headers) if response is not None else None


def _frameless(error: Exception) -> Exception:
    """A copy that holds no traceback: the process's pacer keeps it, across builds."""
    light = copy.copy(error).with_traceback(None)
    light.__cause__ = light.__context__ = None
    return light


def _gave_up_hint(cause: str, timeout: float) -> str:
    if cause == "timeout":
        return (
            f"no answer within provider.timeout ({timeout:g} s): the endpoint may not serve "
            "completions (a model still loading, a wrong port), or answers slower than that "
            "(long answers, a busy server: raise provider.timeout)"
        )
    return "the endpoint keeps failing; try again later or lower provider.max_concurrency"


def _code(exc: openai.APIError) -> str | None:
    body = getattr(exc, "body", None)
    error = body.get("error", body) if isinstance(body, dict) else None
    return str(error.get("code") or error.get("type") or "") if isinstance(error, dict) else None


def _detail(exc: openai.APIError) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
    return str(getattr(exc, "message", "") or exc)


def _json(response: Any) -> Any:
    try:
        return response.json()
    except ValueError:  # a web page, or nothing; JSONDecodeError is a ValueError
        return None


def _seen(response: Any) -> str:
    """What an answer was, for a message: `HTTP 200 text/html`."""
    kind = response.headers.get("content-type", "").split(";")[0].strip()
    return f"HTTP {response.status_code} {kind or 'with no content type'}"


def _mentions_format(exc: openai.BadRequestError) -> bool:
    # A message is read only where no status code tells (here and the 404 of `_probe`): a 400
    # about response_format/tools means "not supported here", which has no status of its own.
    text = _detail(exc).lower()
    return any(word in text for word in ("response_format", "json_schema", "tool", "structured"))
