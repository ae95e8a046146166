"""The simulator's rate limits, modelled on real providers'.

Each limit (`rpm`, `tpm`) is a bucket that starts full. By default it refills continuously at
limit/60 per second up to a capacity of `burst_seconds` of the limit (60 s, the hosted-API
default, holds a full minute's worth; 2 s at 1,200 RPM holds 40 requests). With
`window_seconds` (Azure-style) it refills in whole steps instead: at the start of each
consecutive fixed window of that length (counted from when the limits were set) it gets
limit*window/60, and that is also its capacity; `burst_seconds` is then unused.

A request is admitted when every bucket holds its cost (1 request; its tokens), or, for a cost
larger than a bucket's capacity, when that bucket is full; the cost is then taken, so a bucket
can go below zero and the debt is paid by later refills: over time no limit is exceeded. A
request whose tokens exceed the TPM limit itself can never be admitted ("Request too large").

Headers as OpenAI sends them, for each limit set: `x-ratelimit-limit-{requests,tokens}` (the
per-minute limit), `x-ratelimit-remaining-{...}` (whole units in the bucket, never below 0) and
`x-ratelimit-reset-{...}` (time until the bucket is full again, as a Go-style duration: `0s`,
`20ms`, `1s`, `1.5s`, `1m30.5s`, `6m0s`, `1h0m0s`, to the millisecond, rounded up).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

_EPSILON = 1e-9


@dataclass(frozen=True)
class Limits:
    rpm: int | None = None  # requests per minute; None: no limit
    tpm: int | None = None  # tokens per minute; None: no limit
    burst_seconds: float = 60.0  # bucket capacity, in seconds of the limit
    window_seconds: float | None = None  # Azure-style fixed windows of this length instead

    def __post_init__(self) -> None:
        for name in ("rpm", "tpm"):
            value = getattr(self, name)
            if value is not None and (type(value) is not int or value < 1):
                raise ValueError(f"{name} must be a whole number of at least 1, or null")
        if not self.burst_seconds > 0:
            raise ValueError("burst_seconds must be above 0")
        if self.window_seconds is not None and not self.window_seconds > 0:
            raise ValueError("window_seconds must be above 0, or null")

    def changed(self, **changes: Any) -> Limits:
        """These limits with some changed (None clears `rpm`, `tpm` or `window_seconds`)."""
        known = {f.name for f in fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ValueError(f"unknown limit {', '.join(unknown)}; known: {', '.join(known)}")
        clean = dict(changes)
        for name in ("rpm", "tpm"):
            value = clean.get(name)
            if isinstance(value, float) and value.is_integer():
                clean[name] = int(value)
        if "burst_seconds" in clean and clean["burst_seconds"] is None:
            clean["burst_seconds"] = 60.0
        if clean.get("window_seconds") == 0:
            clean["window_seconds"] = None
        return replace(self, **clean)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Bucket:
    """One limit: `limit` per minute, refilled as the module docstring says."""

    def __init__(self, limit: int, limits: Limits, now: float, level: float | None = None) -> None:
        self.limit = limit
        self.rate = limit / 60
        self.window = limits.window_seconds
        self.capacity = self.rate * (self.window or limits.burst_seconds)
        self.origin = self.updated = now
        self.level = self.capacity if level is None else min(level, self.capacity)

    def _index(self, at: float) -> int:
        return math.floor((at - self.origin) / self.window) if self.window else 0

    def refill(self, now: float) -> None:
        if self.window:
            gained = (self._index(now) - self._index(self.updated)) * self.capacity
        else:
            gained = (now - self.updated) * self.rate
        self.level = min(self.capacity, self.level + max(0.0, gained))
        self.updated = max(now, self.updated)

    def until(self, level: float, now: float) -> float:
        """Seconds until the bucket holds `level` (after `refill(now)`)."""
        short = level - self.level
        if short <= _EPSILON:
            return 0.0
        if not self.window:
            return short / self.rate
        windows = math.ceil(short / self.capacity - _EPSILON)
        return self.origin + (self._index(now) + windows) * self.window - now

    def wait(self, cost: float, now: float) -> float:
        """Seconds until a request of this cost is admitted (0: now)."""
        return self.until(min(cost, self.capacity), now)

    def remaining(self) -> int:
        return max(0, math.floor(self.level + _EPSILON))

    def used(self) -> int:
        return max(0, math.ceil(self.capacity - self.level - _EPSILON))


@dataclass
class Verdict:
    admitted: bool
    headers: dict[str, str]
    kind: str | None = None  # what is exhausted: "requests" or "tokens"
    retry_after: float | None = None  # seconds; None when waiting cannot help
    message: str = ""


class Limiter:
    """The request and token buckets of one simulator, thread-safe. `clock`: for tests."""

    def __init__(self, limits: Limits, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.lock = threading.Lock()
        self.limits = limits
        self.buckets: dict[str, Bucket] = {}
        self.refill_all()

    def _build(self, limits: Limits, keep: bool) -> None:
        now, old = self.clock(), self.buckets
        self.buckets = {}
        for kind, limit in (("requests", limits.rpm), ("tokens", limits.tpm)):
            if limit:
                if kind in old:
                    old[kind].refill(now)
                level = old[kind].level if keep and kind in old else None
                self.buckets[kind] = Bucket(limit, limits, now, level)
        self.limits = limits

    def refill_all(self) -> None:
        """Full buckets, windows counted from now (a reset)."""
        with self.lock:
            self._build(self.limits, keep=False)

    def set(self, **changes: Any) -> Limits:
        """Change limits mid-run. A bucket keeps its level (at most its new capacity); a limit
        newly set starts full; windows are counted from now."""
        with self.lock:
            self._build(self.limits.changed(**changes), keep=True)
            return self.limits

    def admit(self, tokens: int, model: str = "sim") -> Verdict:
        """Take one request and `tokens` from the buckets if they hold them. The messages of a
        refusal are OpenAI's."""
        with self.lock:
            now = self.clock()
            costs = {"requests": 1, "tokens": tokens}
            for bucket in self.buckets.values():
                bucket.refill(now)
            tokens_bucket = self.buckets.get("tokens")
            if tokens_bucket and tokens > tokens_bucket.limit:
                message = (
                    f"Request too large for {model} in organization org-sim on tokens per min "
                    f"(TPM): Limit {tokens_bucket.limit}, Requested {tokens}. The input or "
                    "output tokens must be reduced in order to run successfully."
                )
                return Verdict(False, self._headers(now), "tokens", None, message)
            waits = {k: b.wait(costs[k], now) for k, b in self.buckets.items()}
            if any(w > 0 for w in waits.values()):
                kind = max(waits, key=lambda k: waits[k])
                bucket, wait = self.buckets[kind], waits[kind]
                unit = "requests per min (RPM)" if kind == "requests" else "tokens per min (TPM)"
                message = (
                    f"Rate limit reached for {model} in organization org-sim on {unit}: "
                    f"Limit {bucket.limit}, Used {bucket.used()}, Requested {costs[kind]}. "
                    f"Please try again in {format_duration(wait)}."
                )
                return Verdict(False, self._headers(now), kind, wait, message)
            for kind, bucket in self.buckets.items():
                bucket.level -= costs[kind]
            return Verdict(True, self._headers(now))

    def charge(self, tokens: int) -> None:
        """Take tokens after the fact (a completion without max_tokens); may go below zero."""
        with self.lock:
            bucket = self.buckets.get("tokens")
            if bucket and tokens:
                bucket.refill(self.clock())
                bucket.level -= tokens

    def headers(self) -> dict[str, str]:
        """The x-ratelimit-* headers now, taking nothing."""
        with self.lock:
            now = self.clock()
            for bucket in self.buckets.values():
                bucket.refill(now)
            return self._headers(now)

    def _headers(self, now: float) -> dict[str, str]:
        headers = {}
        for kind, bucket in self.buckets.items():
            headers[f"x-ratelimit-limit-{kind}"] = str(bucket.limit)
            headers[f"x-ratelimit-remaining-{kind}"] = str(bucket.remaining())
            full = bucket.until(bucket.capacity, now)
            headers[f"x-ratelimit-reset-{kind}"] = format_duration(full)
        return headers


def format_duration(seconds: float) -> str:
    """OpenAI's (Go's) duration format, to the millisecond rounded up: `0s`, `20ms`, `1s`,
    `1.5s`, `1m30.5s`, `6m0s`, `1h0m0s`."""
    ms = math.ceil(seconds * 1000 - 1e-6)
    if ms <= 0:
        return "0s"
    if ms < 1000:
        return f"{ms}ms"
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs = f"{rest / 1000:.3f}".rstrip("0").rstrip(".") + "s"
    if hours:
        return f"{hours}h{minutes}m{secs}"
    return f"{minutes}m{secs}" if minutes else secs
