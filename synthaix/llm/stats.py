"""What the LLM path did: requests, retries and rejected rows by cause, tokens, cost."""

from __future__ import annotations

import threading
from collections import Counter

from pydantic import BaseModel, Field


class LlmStats(BaseModel):
    """Counters of one chunk or a whole build (chunks' stats add up)."""

    requests: int = 0
    retries: Counter[str] = Field(default_factory=Counter)
    rejected_rows: Counter[str] = Field(default_factory=Counter)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    rows_filled: int = 0
    cost_usd: float = 0.0

    def __add__(self, other: LlmStats) -> LlmStats:
        return LlmStats(**{f: getattr(self, f) + getattr(other, f) for f in LlmStats.model_fields})

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class StatsRecorder:
    """Thread-safe updates of one LlmStats (requests of a chunk run on several threads)."""

    def __init__(self) -> None:
        self.stats = LlmStats()
        self._lock = threading.Lock()

    def request(self, prompt_tokens: int, completion_tokens: int, cost: float) -> None:
        with self._lock:
            self.stats.requests += 1
            self.stats.prompt_tokens += prompt_tokens
            self.stats.completion_tokens += completion_tokens
            self.stats.cost_usd += cost

    def retry(self, cause: str) -> None:
        with self._lock:
            self.stats.retries[cause] += 1

    def rejected(self, causes: Counter[str]) -> None:
        with self._lock:
            self.stats.rejected_rows.update(causes)

    def filled(self, rows: int) -> None:
        with self._lock:
            self.stats.rows_filled += rows
