"""What the LLM path did: requests, retries and rejected rows by cause, tokens, cost."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, Field, model_validator


class LlmStats(BaseModel):
    """Counters of one chunk or a whole build (chunks' stats add up)."""

    requests: int = 0
    retries: Counter[str] = Field(default_factory=Counter)
    rejected_rows: Counter[str] = Field(default_factory=Counter)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    rows_filled: int = 0
    cost_usd: float = 0.0
    # Tokens of requests made without a price (`cost_usd` leaves them out): an unpriced
    # provider reads "not priced", not a free $0.0000.
    unpriced_tokens: int = 0
    # Rows asked for by the answered requests: / requests = the mean rows per request chosen.
    rows_requested: int = 0
    # Pacing (synthaix.llm.pacing): 429 answers, and seconds requests waited for the pacer or a
    # retry's backoff (summed over requests, so it can exceed the wall time).
    rate_limited: int = 0
    wait_seconds: float = 0.0
    # Unix times of the first and last answer (0: none), for the observed rates: requests and
    # tokens over the span in which chunks (run in parallel) got answers. Unlike the counters
    # they do not add up: a sum spans from the earliest first answer to the latest last one.
    first_answer_at: float = 0.0
    last_answer_at: float = 0.0

    @model_validator(mode="before")
    @classmethod
    def _before_unpriced_tokens(cls, data: Any) -> Any:
        """Figures written before `unpriced_tokens` (manifests, request logs) left a price
        unset as 0: tokens at no cost were not priced."""
        if isinstance(data, dict) and "unpriced_tokens" not in data and not data.get("cost_usd"):
            tokens = data.get("prompt_tokens", 0) + data.get("completion_tokens", 0)
            data = {**data, "unpriced_tokens": tokens}
        return data

    def __add__(self, other: LlmStats) -> LlmStats:
        total = {f: getattr(self, f) + getattr(other, f) for f in LlmStats.model_fields}
        firsts = [s.first_answer_at for s in (self, other) if s.first_answer_at]
        total["first_answer_at"] = min(firsts, default=0.0)
        total["last_answer_at"] = max(self.last_answer_at, other.last_answer_at)
        return LlmStats(**total)

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def answer_seconds(self) -> float:
        return max(0.0, self.last_answer_at - self.first_answer_at) if self.first_answer_at else 0.0

    @property
    def observed_rpm(self) -> float:
        """Requests answered per minute, from the first answer to the last (0: unknown)."""
        seconds = self.answer_seconds
        return self.requests * 60 / seconds if seconds else 0.0

    @property
    def observed_tpm(self) -> float:
        """Tokens (prompt and completion) per minute, over the same span (0: unknown)."""
        seconds = self.answer_seconds
        return self.tokens * 60 / seconds if seconds else 0.0

    @property
    def rows_per_request(self) -> float:
        """Mean rows per answered request (0 where not counted: none, or stats from before)."""
        return self.rows_requested / self.requests if self.rows_requested else 0.0


_PRICES = "provider.price_input_per_million and ..._output_..."
EMBEDDING_PRICE = "dedupe.price_per_million"


def spend(llm: LlmStats, priced_by: str = _PRICES) -> str:
    paid = f"{llm.requests:,} request{'s' * (llm.requests != 1)}, {llm.tokens:,} tokens"
    return f"{paid}, {usd(llm, priced_by=priced_by)}"


def usd(llm: LlmStats, hint: bool = True, priced_by: str = _PRICES) -> str:
    """The cost, or that (some of) it was not priced. `hint`: say which settings price it
    (`priced_by`; else: "not priced", for tables and report cards)."""
    if llm.unpriced_tokens and llm.unpriced_tokens >= llm.tokens:
        if not hint:
            return "not priced"
        return f"cost not priced (set {priced_by})"
    if llm.unpriced_tokens:  # e.g. an attempt before a price was set
        return f"${llm.cost_usd:,.4f} + {llm.unpriced_tokens:,} tokens not priced"
    return f"${llm.cost_usd:,.4f}"


_SPENT = "synthaix_llm_spent"


def attach_spent(exc: BaseException, stats: LlmStats) -> None:
    """Let a failure carry what was paid before it (a chunk's requests before one was given
    up), so the build still counts them. An attribute: it survives pickling (Dask, Ray)."""
    setattr(exc, _SPENT, stats)


def spent_before(exc: BaseException) -> LlmStats:
    """What was paid before `exc` (nothing, if it carries no spend)."""
    spent = getattr(exc, _SPENT, None)
    return spent if isinstance(spent, LlmStats) else LlmStats()


class StatsRecorder:
    """Thread-safe updates of one LlmStats (requests of a chunk run on several threads)."""

    def __init__(self, on_request: Callable[[LlmStats], None] | None = None) -> None:
        """`on_request`: told each answered request's tokens and cost as it is counted (the
        ledger's request log, which outlives a kill)."""
        self.stats = LlmStats()
        self._lock = threading.Lock()
        self._on_request = on_request

    def snapshot(self) -> LlmStats:
        """A copy, consistent even while other requests of the chunk still record."""
        with self._lock:
            return self.stats.model_copy(deep=True)

    def request(self, prompt_tokens: int, completion_tokens: int, cost: float | None) -> None:
        """An answered request; `cost` None: not priced."""
        paid = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "cost_usd": cost or 0.0,
            "unpriced_tokens": prompt_tokens + completion_tokens if cost is None else 0,
        }
        with self._lock:
            self.stats.requests += 1
            for name, value in paid.items():
                setattr(self.stats, name, getattr(self.stats, name) + value)
        if self._on_request is not None:
            self._on_request(LlmStats(requests=1, **paid))

    def retry(self, cause: str) -> None:
        with self._lock:
            self.stats.retries[cause] += 1

    def throttled(self) -> None:
        """The endpoint answered 429."""
        with self._lock:
            self.stats.rate_limited += 1

    def waited(self, seconds: float) -> None:
        """A request waited for the pacer or a retry's backoff."""
        with self._lock:
            self.stats.wait_seconds += seconds

    def queued(self, seconds: float) -> None:
        """A request waited for a place among the client's max_concurrency: its own queue,
        not the provider's limits, so not counted in wait_seconds (a filler times with it)."""

    def answered(self) -> None:
        """The endpoint answered a request (the observed rates count from these times)."""
        now = time.time()
        with self._lock:
            self.stats.first_answer_at = self.stats.first_answer_at or now
            self.stats.last_answer_at = now

    def rejected(self, causes: Counter[str]) -> None:
        with self._lock:
            self.stats.rejected_rows.update(causes)

    def asked(self, rows: int) -> None:
        """An answered request asked for `rows` rows."""
        with self._lock:
            self.stats.rows_requested += rows

    def filled(self, rows: int) -> None:
        with self._lock:
            self.stats.rows_filled += rows
