"""How fast to ask: the provider's own limits, adaptive concurrency, and a retry budget.

- **Limits from headers.** OpenAI, Azure, Groq, Together and vLLM gateways send
  `x-ratelimit-{limit,remaining,reset}-{requests,tokens}`: the limit per minute, what the bucket
  holds now, and the time until it is full again (`20ms`, `1s`, `6m0s`). A LearnedBucket models
  each as a bucket that refills continuously at limit/60 per second, with the burst the headers
  imply, re-synchronised to `remaining` on every answer.
- **Adaptive concurrency** (Aimd) for when there are no headers, or they do not tell all: the
  limit on requests in progress is cut by 30 % when a window of answers shows congestion (over
  a quarter 429s or timeouts, beyond the odd one, or latency more than doubled) and raised by 1
  per window otherwise.
- **A retry budget** (RetryBudget): transient failures are retried while the process gets
  answers from the endpoint, not for a fixed number of attempts.

One Pacer per endpoint, model and key serves every client of the process (`pacer_for`), so all
chunk tasks of a worker share what the provider said.
"""

from __future__ import annotations

import hashlib
import math
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

KINDS = ("requests", "tokens")
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|h|m|s)")
_UNIT = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float | None:
    """Seconds of a reset duration: Go-style as OpenAI sends it (`20ms`, `1s`, `6m0s`,
    `1m30.5s`), or a plain number of seconds (some gateways); None for anything else."""
    text = text.strip()
    parts = _PART.findall(text)
    if parts and "".join(n + u for n, u in parts) == text:
        return sum(float(n) * _UNIT[u] for n, u in parts)
    return _number(text)


def _number(text: str | None) -> float | None:
    try:
        value = float(text) if text is not None else math.nan
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None


@dataclass(frozen=True)
class RateLimit:
    """One limit as a response's headers state it."""

    limit: float  # per minute
    remaining: float  # in the bucket when the server took the request
    reset: float | None  # seconds until the bucket is full again


def rate_limits(headers: Mapping[str, str]) -> dict[str, RateLimit]:
    """The `requests` and `tokens` limits stated by x-ratelimit-* headers (those present)."""
    found = {}
    for kind in KINDS:
        limit = _number(headers.get(f"x-ratelimit-limit-{kind}"))
        remaining = _number(headers.get(f"x-ratelimit-remaining-{kind}"))
        if limit and remaining is not None:
            reset_text = headers.get(f"x-ratelimit-reset-{kind}")
            reset = parse_duration(reset_text) if reset_text else None
            found[kind] = RateLimit(limit, remaining, reset)
    return found


def retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds a 429 (or 503) asks to wait: `retry-after-ms` (OpenAI, Azure), else
    `retry-after` in seconds; an HTTP date is not honoured (the backoff applies)."""
    ms = _number(headers.get("retry-after-ms"))
    if ms is not None:
        return ms / 1000
    return _number(headers.get("retry-after"))


class Bucket:
    """A bucket of `capacity` that refills continuously at `rate` per second.

    `reserve` takes a request's share at once, possibly below zero, and says how long to wait
    until the bucket would have held it: waiting requests then leave in the order they came,
    spaced at the refill rate, instead of all at once when it refills. A share larger than the
    capacity waits for a full bucket (as providers admit it) and leaves a debt."""

    def __init__(self, capacity: float, rate: float, now: float) -> None:
        self.capacity, self.rate = capacity, rate
        self.level, self.updated = capacity, now

    def refill(self, now: float) -> None:
        gained = max(0.0, now - self.updated) * self.rate
        self.level = min(self.capacity, self.level + gained)
        self.updated = max(self.updated, now)

    def wait(self, amount: float, now: float) -> float:
        """Seconds until it holds `amount` (a full bucket for more than its capacity)."""
        self.refill(now)
        return max(0.0, (min(amount, self.capacity) - self.level) / self.rate)

    def reserve(self, amount: float, now: float) -> float:
        wait = self.wait(amount, now)
        self.level -= amount
        return wait


class LearnedBucket:
    """A provider's limit as its headers state it. It refills at limit/60 per second (the
    header's limit is per minute); its capacity (the burst it allows) is what remains plus what
    refills until `reset`, exact for a continuous bucket and never above the limit.

    Each answer sets the level to its `remaining` less what is in flight: the server had not
    counted those yet, or counted them in `remaining` already; either way the estimate errs
    low, as does leaving out the refill since the server counted the request (a lag of about
    one latency, not a lower rate). An answer to a request sent before the one last synced from
    says less and is ignored (but for the lowest count of a burst, below). Unknown, the bucket
    admits everything.

    `exact`: each request is charged what the server charges (requests: 1 each). Requests sent
    on the same knowledge (no answer synced between them: a burst) reach the server in any
    order, so the level follows the lowest `remaining` of the burst's answers (measured:
    answers saying 1 then 2 remaining, and a 429 for the request sent on the 2). A request of
    an earlier burst may also be counted after it and answered before it (held between its
    turn and its send, by the gate or the scheduler): the answer's `remaining` left it out, and
    it is in flight no more. So when requests of earlier bursts came back while it was out, the
    level is the lower of the answer's and the running estimate's (the likely cause of a 429
    CI saw among 50 requests paced by headers; the steady-state rate is unchanged). Tokens are
    charged an estimate of the prompt, so there a higher `remaining` may correct the estimate,
    and is taken."""

    def __init__(self, exact: bool = False) -> None:
        self.exact = exact
        self.bucket: Bucket | None = None
        self.flight: dict[int, float] = {}  # taken, not yet settled, by the `syncs` then
        self.syncs = 0  # answers synced from: a request's `seen` is this when it is sent
        self._synced = -math.inf  # when the request last synced from was sent
        self._seen = -1  # and the syncs it had seen
        self._low = math.inf  # the lowest `remaining` of the answers to its burst

    @property
    def outstanding(self) -> float:
        return sum(self.flight.values())

    def earlier(self, seen: int) -> float:
        """What requests sent before the `seen`-th answer synced still have in flight."""
        return sum(amount for at, amount in self.flight.items() if at < seen)

    def wait(self, amount: float, now: float) -> float:
        return self.bucket.wait(amount, now) if self.bucket else 0.0

    def take(self, amount: float, now: float) -> None:
        """Take `amount` for a request about to be sent (its `seen`: `syncs` now); `settle`
        it once it is over."""
        self.flight[self.syncs] = self.flight.get(self.syncs, 0.0) + amount
        if self.bucket:
            self.bucket.reserve(amount, now)

    def settle(self, amount: float, seen: int) -> None:
        left = self.flight.get(seen, 0.0) - amount
        if left > 1e-9:
            self.flight[seen] = left
        else:
            self.flight.pop(seen, None)

    def sync(
        self, stated: RateLimit, sent_at: float, now: float, seen: int, earlier: float
    ) -> None:
        """An answer to a request sent at `sent_at` and settled; `seen`: `syncs` when it was
        sent, and `earlier` what was then `earlier(seen)`."""
        if sent_at < self._synced:
            if self.exact and seen == self._seen and self.bucket is not None:
                # Sent before the answer synced from, in its burst: its count may still be
                # the burst's lowest (the server took it last), and lower the level.
                self._low = min(self._low, stated.remaining)
                self.bucket.refill(now)
                self.bucket.level = min(self.bucket.level, self._low - self.outstanding)
            return
        same_burst = self.exact and seen <= self._seen
        self._synced, self._seen = sent_at, seen
        self._low = min(self._low, stated.remaining) if same_burst else stated.remaining
        self.syncs += 1
        rate = stated.limit / 60
        capacity = min(stated.limit, stated.remaining + rate * (stated.reset or 0.0))
        capacity = max(capacity, min(1.0, stated.limit))
        if self.bucket is None:
            self.bucket = Bucket(capacity, rate, now)
        self.bucket.refill(now)
        level = min(capacity, self._low - self.outstanding)
        if self.exact and earlier - self.earlier(seen) > 1e-9:
            level = min(level, self.bucket.level)
        self.bucket.capacity, self.bucket.rate = capacity, rate
        self.bucket.level = level


class Aimd:
    """An adaptive limit on requests in progress, between 1 and `ceiling`.

    Answers are judged in windows of `limit` answers (about one round trip). A window is
    congested when over a quarter of its answers, and one more (or all of them), were 429s or
    timeouts, or when the smoothed latency is more than double the baseline and 0.25 s above
    it; the limit is then cut by 30 %, else raised by 1. The one more: with a steady 11 % of
    429s that no load causes (gateways have them), a quarter alone would cut a window of 5
    answers one time in ten, and each cut makes the next window smaller and likelier to be cut
    again (measured: 16 down to 5 within 2 s); with it, one window in 40 at most.

    Only answers to requests sent after the last cut count, so one overload is cut once. The
    floor of 1 keeps one request probing under sustained 429s, and one uncongested window
    raises the limit again when capacity returns.

    Latency: an exponential average of successful answers' seconds (weight 0.3); the baseline
    is its lowest value. After a cut for latency the baseline moves to 2/3 of the current
    latency, so a lasting change (longer answers) costs one cut, not a slide to the floor."""

    CUT = 0.7
    CONGESTED, NOISE = 0.25, 1
    SLOWER, SLOWER_BY = 2.0, 0.25

    def __init__(self, ceiling: int) -> None:
        self.ceiling = ceiling
        self.limit = float(ceiling)
        self.in_flight = 0
        self.latency: float | None = None
        self.baseline: float | None = None
        self.cuts = 0
        self._cond = threading.Condition()
        self._sent = 0  # attempts sent so far; an attempt's number is its place in this count
        self._cut_at = 0  # attempts up to this one were sent before the last cut
        self._done = self._congested = 0

    def enter(self) -> None:
        """Take a place among the requests in progress (`leave` gives it back)."""
        with self._cond:
            self._cond.wait_for(lambda: self.in_flight < max(1, int(self.limit)))
            self.in_flight += 1

    def leave(self) -> None:
        with self._cond:
            self.in_flight -= 1
            self._cond.notify()

    def backed_off(self) -> bool:
        """A recent window was congested, and the limit has not grown back to its ceiling."""
        return self.limit < self.ceiling

    def sent(self) -> int:
        with self._cond:
            self._sent += 1
            return self._sent

    def raise_ceiling(self, ceiling: int) -> None:
        with self._cond:
            self.ceiling = max(self.ceiling, ceiling)

    def observe(self, attempt: int, congested: bool, latency: float | None = None) -> None:
        """The outcome of attempt number `attempt`: `congested` for a 429 or a timeout;
        `latency` (seconds) for an answer."""
        with self._cond:
            if latency is not None:
                last = self.latency
                self.latency = latency if last is None else last + 0.3 * (latency - last)
                low = self.baseline
                self.baseline = self.latency if low is None else min(low, self.latency)
            if attempt <= self._cut_at:
                return  # sent under the limit before the last cut: says nothing of this one
            self._done += 1
            self._congested += congested
            if self._done < max(1, int(self.limit)):
                return
            slow = self._slow()
            allowed = min(self.CONGESTED * self._done + self.NOISE, self._done - 1)
            if slow or self._congested > allowed:
                self.limit = max(1.0, self.limit * self.CUT)
                self._cut_at, self.cuts = self._sent, self.cuts + 1
                if slow and self.latency is not None:
                    self.baseline = self.latency / 1.5
            else:
                self.limit = min(float(self.ceiling), self.limit + 1)
                self._cond.notify_all()
            self._done = self._congested = 0

    def _slow(self) -> bool:
        if self.latency is None or self.baseline is None:
            return False
        return self.latency > max(self.SLOWER * self.baseline, self.baseline + self.SLOWER_BY)


@dataclass(frozen=True)
class RetryBudget:
    """When to stop retrying a transient failure (429, 5xx, timeout, dropped connection).

    While the endpoint answered some request of the process within the last `window` seconds
    (max(60, 4 x the slowest of its recent answers), at most 4 x timeout), a request is
    retried however many attempts it took: the provider serves, only slower than asked. The
    window follows the answers, not the timeout: an endpoint that answered in seconds and then
    died kept requests retrying for 8 minutes (4 x the default 120 s). Without such progress
    the old bounds apply, `max_attempts` attempts or `max_attempts x timeout` seconds, so a
    dead endpoint still fails fast. An endpoint that answered and then fell silent (timeouts,
    dropped connections: no HTTP answer) for longer than the window since the request was
    first sent fails at its second attempt or later, whatever `max_attempts`: one that hung
    kept a build waiting 8 attempts of `timeout` (16 min by default).
    A 429 is an answer of a sort (a wave lasts its reset), so those keep the attempts. No
    request retries for longer than `total` (max(15 min, 2 x max_attempts x timeout)), so one
    that fails while others pass cannot hold a build forever."""

    max_attempts: int
    timeout: float
    slowest: float | None = None  # the slowest recent answer's seconds, when any came
    silent: bool = False  # the last attempt got no HTTP answer (a timeout, a connection error)

    @property
    def window(self) -> float:
        return max(60.0, 4 * min(self.timeout, self.slowest or self.timeout))

    @property
    def total(self) -> float:
        return max(900.0, 2 * self.max_attempts * self.timeout)

    def stop(self, attempts: int, elapsed: float, since_answer: float | None) -> str | None:
        """Why to stop after `attempts` attempts in `elapsed` seconds, the last answer from the
        endpoint `since_answer` seconds ago (None: never); None to go on."""
        if elapsed >= self.total:
            return f"retried for {elapsed:.0f} s"
        if since_answer is not None and since_answer <= self.window:
            return None
        # Silent since this request was first sent, and tried again: the process may have
        # been idle for an hour before it (its first failure after a quiet spell is retried).
        silent = self.silent and since_answer is not None and attempts >= 2
        if silent and min(since_answer or 0.0, elapsed) > self.window:
            return f"no answer for {since_answer:.0f} s"
        if attempts >= self.max_attempts or elapsed >= self.max_attempts * self.timeout:
            never = since_answer is None
            return "no answer yet" if never else f"no answer for {since_answer:.0f} s"
        return None


@dataclass
class Ticket:
    """One attempt's admission: its number for Aimd, what it took, how long it waited."""

    attempt: int
    amounts: dict[str, float]
    wait: float
    settled: bool = False
    seen: dict[str, int] = field(default_factory=dict)  # each bucket's `syncs` when sent
    earlier: dict[str, float] = field(default_factory=dict)  # and its `earlier(seen)` then


class Pacer:
    """What the process knows of one endpoint's limits: the learned buckets, the adaptive
    concurrency and when it last answered. Thread-safe.

    Requests pass the buckets in turn (first come, first served): only the first in line waits
    for the buckets to hold its share, and it looks again whenever an answer re-synchronises
    them, so a wait computed before an answer never sends a request the server cannot take."""

    GIVE_UP_HOLD = 60.0  # seconds a give-up stops the process's other requests

    def __init__(self, ceiling: int) -> None:
        self.buckets = {kind: LearnedBucket(exact=kind == "requests") for kind in KINDS}
        self.aimd = Aimd(ceiling)
        self.last_answer: float | None = None  # time.monotonic() of the last good answer
        self.latencies: deque[float] = deque(maxlen=50)  # of the recent answers, in seconds
        self.failing = 0  # attempts that failed in a row, process-wide (0 after an answer)
        # Why a request gave up on a silent endpoint, and when; cleared by the next answer.
        self._given_up: tuple[float, str] | None = None
        self.give_up_error: Exception | None = None  # the failure that gave up
        self._lock = threading.Condition()
        self._line: deque[object] = deque()

    def admit(self, tokens: float | Callable[[], float]) -> Ticket:
        """Wait until the buckets hold a request and its `tokens`, and take them. Then send
        and report `answered` or `failed`, or `settle` a ticket that was not sent. `tokens` may
        be a function, asked again each time the request looks: what a request is charged
        (its max_tokens) can shrink while it waits, as answers show how long rows are."""
        cost = tokens if callable(tokens) else lambda: tokens
        started, me = time.monotonic(), object()
        with self._lock:
            self._line.append(me)
            try:
                while True:
                    if self._line[0] is not me:
                        self._lock.wait()
                        continue
                    now = time.monotonic()
                    amounts = {"requests": 1.0, "tokens": float(cost())}
                    if (wait := self._wait(amounts, now)) > 0:
                        self._lock.wait(wait)
                    else:
                        seen = {kind: bucket.syncs for kind, bucket in self.buckets.items()}
                        earlier = {k: b.earlier(seen[k]) for k, b in self.buckets.items()}
                        for kind, bucket in self.buckets.items():
                            bucket.take(amounts[kind], now)
                        break
            finally:
                self._line.remove(me)
                self._lock.notify_all()
        return Ticket(
            self.aimd.sent(), amounts, time.monotonic() - started, seen=seen, earlier=earlier
        )

    def _wait(self, amounts: dict[str, float], now: float) -> float:
        return max(bucket.wait(amounts[kind], now) for kind, bucket in self.buckets.items())

    def settle(self, ticket: Ticket) -> None:
        """The attempt is over (at most once: later calls do nothing)."""
        with self._lock:
            if not ticket.settled:
                ticket.settled = True
                for kind, bucket in self.buckets.items():
                    if kind in ticket.seen:
                        bucket.settle(ticket.amounts[kind], ticket.seen[kind])

    def answered(self, ticket: Ticket, headers: Mapping[str, str], sent_at: float) -> None:
        """An answer to the request sent at `sent_at` (time.monotonic())."""
        self.last_answer = now = time.monotonic()
        with self._lock:
            self.failing = 0
            self.latencies.append(now - sent_at)
        self._sync(ticket, headers, sent_at)
        self.aimd.observe(ticket.attempt, congested=False, latency=now - sent_at)

    def failed(
        self, ticket: Ticket, headers: Mapping[str, str], sent_at: float, congested: bool
    ) -> None:
        """An attempt that got an error status (`headers` its response's) or none (empty).
        Not progress: an endpoint that answers only 429s (an exhausted quota) must still fail."""
        with self._lock:
            self.failing += 1
        self._sync(ticket, headers, sent_at)
        self.aimd.observe(ticket.attempt, congested)

    def slowest(self) -> float | None:
        """The slowest of the recent answers, in seconds (None before any)."""
        with self._lock:
            return max(self.latencies) if self.latencies else None

    def give_up(self, reason: str, error: Exception | None = None) -> None:
        """A request gave up on the endpoint (no answer within the budget's window): the
        others give up too at their next attempt, instead of each waiting out a window of its
        own (a hung endpoint kept a build retrying for 10 minutes at timeout 10). `error`: its
        last failure, which theirs repeat (a dropped connection is no timeout)."""
        with self._lock:
            self._given_up = (time.monotonic(), reason)
            self.give_up_error = error

    def answered_check(self) -> None:
        """The endpoint answered a check (a new build's): requests go to it again."""
        with self._lock:
            self._given_up = None

    def given_up(self) -> str | None:
        """Why another request gave up, within the last GIVE_UP_HOLD seconds and with no
        answer since; else None (a later build of the process tries the endpoint again)."""
        with self._lock:
            if self._given_up is None:
                return None
            when, reason = self._given_up
            answered = self.last_answer is not None and self.last_answer > when
            if answered or time.monotonic() - when > self.GIVE_UP_HOLD:
                self._given_up = None
                return None
            return reason

    def since_answer(self) -> float | None:
        last = self.last_answer
        return None if last is None else time.monotonic() - last

    def _sync(self, ticket: Ticket, headers: Mapping[str, str], sent_at: float) -> None:
        self.settle(ticket)
        stated = rate_limits(headers)
        if stated:
            now = time.monotonic()
            with self._lock:
                for kind, limit in stated.items():
                    bucket = self.buckets[kind]
                    seen = ticket.seen.get(kind, bucket.syncs)
                    earlier = ticket.earlier.get(kind, bucket.earlier(seen))
                    bucket.sync(limit, sent_at, now, seen, earlier)
                self._lock.notify_all()  # the first in line looks again


class Bounds:
    """Configured `rpm`/`tpm` upper bounds as continuous buckets of one second's worth (at
    least one request): no burst beyond what a second allows, which also keeps within
    providers that count over short windows (Azure: 10 s)."""

    def __init__(self, rpm: int | None, tpm: int | None) -> None:
        now = time.monotonic()
        per_second = {"requests": rpm, "tokens": tpm}
        self.buckets = {
            kind: Bucket(max(1.0, limit / 60), limit / 60, now)
            for kind, limit in per_second.items()
            if limit
        }
        self._lock = threading.Lock()

    def reserve(self, tokens: int) -> float:
        """Seconds to wait before sending a request of `tokens`."""
        if not self.buckets:
            return 0.0
        now = time.monotonic()
        with self._lock:
            waits = [b.reserve(_cost(k, tokens), now) for k, b in self.buckets.items()]
        return max(waits)


def _cost(kind: str, tokens: int) -> float:
    return 1.0 if kind == "requests" else float(tokens)


_pacers: dict[str, Pacer] = {}
_pacers_lock = threading.Lock()


def pacer_for(base_url: str, model: str, key: str, ceiling: int) -> Pacer:
    """The process's pacer of this endpoint, model and API key (limits are per key and model);
    `ceiling`: the client's max_concurrency (the pacer's adaptive limit goes up to the largest
    of its clients'; each client keeps its own as a hard cap)."""
    digest = hashlib.sha256(f"{base_url}\n{model}\n{key}".encode()).hexdigest()
    with _pacers_lock:
        pacer = _pacers.get(digest)
        if pacer is None:
            pacer = _pacers[digest] = Pacer(ceiling)
        else:
            pacer.aimd.raise_ceiling(ceiling)
        return pacer
