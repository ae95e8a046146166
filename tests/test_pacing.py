"""Pacing of LLM requests (synthaix.llm.pacing): headers read, buckets, adaptive concurrency and
the retry budget; then over loopback against the simulator, with the real openai client."""

from __future__ import annotations

import contextlib
import random
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from llm_helpers import provider, simulator

from conftest import write_config
from synthaix.errors import ProviderError
from synthaix.llm.client import LlmClient
from synthaix.llm.pacing import (
    Aimd,
    Bucket,
    LearnedBucket,
    Pacer,
    RateLimit,
    RetryBudget,
    Ticket,
    parse_duration,
    rate_limits,
    retry_after,
)
from synthaix.llm.provider import ProviderConfig
from synthaix.llm.stats import LlmStats, StatsRecorder
from synthaix.sim.faults import FaultRates

# --- headers ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1s", 1.0),
        ("6m0s", 360.0),
        ("20ms", 0.02),
        ("1m30.5s", 90.5),
        ("1h0m0s", 3600.0),
        ("0s", 0.0),
        ("1.5s", 1.5),
        ("250us", 0.00025),
        ("0.75", 0.75),  # a plain number of seconds, as some gateways send
    ],
)
def test_reset_durations_are_read(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "soon", "1x", "-1", "1s2", "m", "nan", "inf"])
def test_what_is_no_duration_is_none(text: str) -> None:
    assert parse_duration(text) is None


def test_rate_limit_headers_are_read_per_kind() -> None:
    headers = {
        "x-ratelimit-limit-requests": "600",
        "x-ratelimit-remaining-requests": "19",
        "x-ratelimit-reset-requests": "100ms",
        "x-ratelimit-limit-tokens": "60000",
        "x-ratelimit-remaining-tokens": "0",  # reset missing: still a limit
    }
    assert rate_limits(headers) == {
        "requests": RateLimit(600, 19, 0.1),
        "tokens": RateLimit(60000, 0, None),
    }
    assert rate_limits({"x-ratelimit-remaining-requests": "5"}) == {}  # no limit: unknown
    assert (
        rate_limits({"x-ratelimit-limit-requests": "x", "x-ratelimit-remaining-requests": "1"})
        == {}
    )
    assert rate_limits({}) == {}


def test_retry_after_prefers_milliseconds() -> None:
    assert retry_after({"retry-after-ms": "250", "retry-after": "1"}) == 0.25
    assert retry_after({"retry-after": "3"}) == 3.0
    assert retry_after({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) is None
    assert retry_after({}) is None


# --- buckets ------------------------------------------------------------------------------


def test_a_bucket_spaces_waiting_requests_at_its_rate() -> None:
    bucket = Bucket(capacity=2, rate=1.0, now=0.0)
    waits = [bucket.reserve(1, now=0.0) for _ in range(5)]
    assert waits == pytest.approx([0, 0, 1, 2, 3])  # a burst of 2, then one per second
    assert bucket.reserve(1, now=10.0) == 0  # idle: full again, but no fuller than capacity
    assert bucket.reserve(1, now=10.0) == 0 and bucket.reserve(1, now=10.0) == pytest.approx(1)


def test_a_share_larger_than_the_bucket_waits_for_a_full_one_and_leaves_a_debt() -> None:
    bucket = Bucket(capacity=10, rate=10.0, now=0.0)
    assert bucket.reserve(5, now=0.0) == 0
    assert bucket.reserve(30, now=0.0) == pytest.approx(0.5)  # until full (10), not until 30
    assert bucket.reserve(1, now=0.0) == pytest.approx(2.6)  # the debt of 25 is paid first


def test_a_learned_bucket_admits_everything_until_told() -> None:
    bucket = LearnedBucket()
    for _ in range(100):
        assert bucket.wait(1, now=0.0) == 0
        bucket.take(1, now=0.0)


def test_a_learned_bucket_follows_remaining_and_refills_at_the_limit_per_minute() -> None:
    bucket = LearnedBucket()
    for _ in range(4):
        bucket.take(1, now=0.0)
    bucket.settle(
        1, seen=0
    )  # one answered; 3 still in flight, perhaps not counted by the server yet
    # 600 per minute = 10/s; 5 left and 1.5 s to full: a bucket of 5 + 15 = 20.
    bucket.sync(RateLimit(600, 5, 1.5), sent_at=1.0, now=0.0, seen=0, earlier=0)
    assert bucket.bucket is not None
    assert bucket.bucket.capacity == pytest.approx(20) and bucket.bucket.rate == 10
    waits = []
    for _ in range(4):
        waits.append(bucket.wait(1, now=0.0))
        bucket.take(1, now=0.0)
    assert waits == pytest.approx([0, 0, 0.1, 0.2])  # 5 - 3 = 2 left, then 10 per second
    assert bucket.wait(1, now=0.2) == pytest.approx(0.1)
    bucket.sync(RateLimit(600, 20, 0.0), sent_at=0.5, now=0.2, seen=0, earlier=0)  # stale
    assert bucket.wait(1, now=0.2) == pytest.approx(0.1)
    bucket.settle(3, seen=0)
    bucket.settle(4, seen=1)
    bucket.sync(RateLimit(600, 3, 1.7), sent_at=1.5, now=0.2, seen=1, earlier=0)  # all back: 3
    assert bucket.bucket.level == 3


def _said(remaining: int) -> dict[str, str]:
    """An answer's headers: 600 requests a minute (10/s), `remaining` left, nothing else."""
    reset = f"{(20 - remaining) / 10}s"
    return {
        "x-ratelimit-limit-requests": "600",
        "x-ratelimit-remaining-requests": str(remaining),
        "x-ratelimit-reset-requests": reset,
    }


def test_an_answer_counted_before_requests_answered_earlier_does_not_raise_the_level() -> None:
    # A and B sent together, A first; the server counts B first, so A's answer says 1 left and
    # B's, arriving later, 2. Both are over: 1 is left, not the 2 B's answer says.
    pacer = Pacer(ceiling=8)
    pacer.answered(pacer.admit(0), _said(3), sent_at=0.0)
    bucket = pacer.buckets["requests"]
    a, b = pacer.admit(0), pacer.admit(0)
    pacer.answered(a, _said(1), sent_at=0.1)
    assert bucket.bucket is not None and bucket.bucket.level == pytest.approx(0, abs=0.1)
    pacer.answered(b, _said(2), sent_at=0.11)
    assert bucket.bucket.level == pytest.approx(1, abs=0.1)
    # Across two bursts: W and X take their turns, X goes out first and its answer syncs; Z
    # goes out; the server counts Z (5 left), then W (4 left); W's answer comes first. Z's 5
    # is one too many (W came after it): at most 4 are left. (The estimate says 3: W's answer
    # counted Z, which was still in flight then.)
    w, x = pacer.admit(0), pacer.admit(0)
    pacer.answered(x, _said(6), sent_at=0.2)
    z = pacer.admit(0)
    pacer.answered(w, _said(4), sent_at=0.21)
    pacer.answered(z, _said(5), sent_at=0.3)
    assert 2.9 < bucket.bucket.level <= 4
    # One burst, E sent first: the server counts S (9 left), R (8), E (7); S is answered
    # first, then E (sent before S: stale, but the burst's lowest), then R. 7 are left.
    pacer.answered(pacer.admit(0), _said(10), sent_at=0.5)
    e, s, r = pacer.admit(0), pacer.admit(0), pacer.admit(0)
    pacer.answered(s, _said(9), sent_at=0.52)
    pacer.answered(e, _said(7), sent_at=0.51)
    pacer.answered(r, _said(8), sent_at=0.53)
    assert bucket.bucket.level <= 7
    # Everything answered, a request sent after: its answer is the level again.
    pacer.answered(pacer.admit(0), _said(7), sent_at=0.6)
    assert bucket.bucket.level == pytest.approx(7, abs=0.1)


def test_a_learned_bucket_never_allows_more_than_the_limit() -> None:
    bucket = LearnedBucket()
    bucket.sync(
        RateLimit(60, 59, 60.0), sent_at=0.0, now=0.0, seen=0, earlier=0
    )  # 59 + 60 would exceed 60
    assert bucket.bucket is not None and bucket.bucket.capacity == 60


def test_the_first_in_line_looks_again_when_an_answer_tells_more() -> None:
    pacer = Pacer(ceiling=4)
    limited = {"x-ratelimit-limit-requests": "6", "x-ratelimit-remaining-requests": "0"}
    first = pacer.admit(10)
    pacer.answered(first, limited, sent_at=time.monotonic())  # 6 a minute: 10 s to the next
    admitted = threading.Event()
    waiter = threading.Thread(target=lambda: (pacer.admit(10), admitted.set()))
    waiter.start()
    assert not admitted.wait(0.3)
    news = {**limited, "x-ratelimit-remaining-requests": "3"}  # another client's answer
    pacer.failed(Ticket(0, {"requests": 0, "tokens": 0}, 0), news, time.monotonic(), False)
    assert admitted.wait(2)
    waiter.join()


def test_a_waiting_request_is_charged_what_it_needs_when_it_leaves() -> None:
    # A request that waits for tokens is charged its max_tokens when it is admitted, and
    # what it needs can shrink meanwhile (answers show how long rows are): it is asked again.
    pacer = Pacer(ceiling=4)
    limited = {
        "x-ratelimit-limit-tokens": "6000",
        "x-ratelimit-remaining-tokens": "0",
        "x-ratelimit-reset-tokens": "60s",
    }
    first = pacer.admit(10)
    pacer.answered(first, limited, sent_at=time.monotonic())  # 100 tokens a second
    needs, admitted = [3000.0], []  # 30 s of tokens as first estimated
    waiter = threading.Thread(target=lambda: admitted.append(pacer.admit(lambda: needs[0])))
    waiter.start()
    time.sleep(0.3)
    assert not admitted
    needs[0] = 40.0  # learnt: 0.4 s of tokens
    news = {**limited, "x-ratelimit-remaining-tokens": "50"}
    pacer.failed(Ticket(0, {"requests": 0, "tokens": 0}, 0), news, time.monotonic(), False)
    waiter.join(2)
    assert admitted and admitted[0].amounts["tokens"] == 40.0


# --- adaptive concurrency -----------------------------------------------------------------


def _window(aimd: Aimd, outcomes: str, latency: float = 0.1) -> None:
    """Attempts sent now, answered in order: `.` an answer, `x` a 429."""
    numbers = [aimd.sent() for _ in outcomes]
    for number, outcome in zip(numbers, outcomes, strict=True):
        congested = outcome == "x"
        aimd.observe(number, congested, None if congested else latency)


def test_aimd_cuts_on_429s_and_grows_back_by_one_per_window() -> None:
    aimd = Aimd(ceiling=8)
    _window(aimd, "..x..x.x")  # 3 of 8: a quarter and one more (3) is not exceeded
    assert aimd.limit == 8 and aimd.cuts == 0
    _window(aimd, "..x.xx.x")  # 4 of 8: congested
    assert aimd.limit == pytest.approx(5.6)
    _window(aimd, ".....")
    assert aimd.limit == pytest.approx(6.6)
    for _ in range(5):
        _window(aimd, "." * int(aimd.limit))
    assert aimd.limit == 8  # never above the ceiling


def test_aimd_ignores_the_odd_429() -> None:
    aimd = Aimd(ceiling=8)
    for _ in range(20):
        _window(aimd, ".......x")  # 1 in 8, as random faults give
    assert aimd.limit == 8 and aimd.cuts == 0


def test_aimd_holds_its_limit_under_a_steady_trickle_of_random_429s() -> None:
    # 11 % of attempts get a 429 whatever the load (the benchmark's fault mix): no congestion.
    # Judged by a quarter alone, small windows after a first cut were cut again and again.
    rng = random.Random(7)
    aimd, limits = Aimd(ceiling=16), []
    for _ in range(400):
        _window(aimd, "".join("x" if rng.random() < 0.11 else "." for _ in range(int(aimd.limit))))
        limits.append(aimd.limit)
    assert sum(limits) / len(limits) >= 0.85 * 16 and min(limits) >= 8


def test_aimd_cuts_once_per_overload() -> None:
    aimd = Aimd(ceiling=16)
    in_flight = [aimd.sent() for _ in range(16)]  # all sent under the old limit
    for number in in_flight:
        aimd.observe(number, congested=True)
    assert aimd.cuts == 1 and aimd.limit == pytest.approx(11.2)


def test_aimd_keeps_one_request_probing_and_recovers() -> None:
    aimd = Aimd(ceiling=32)
    for _ in range(50):  # sustained 429s
        _window(aimd, "x" * max(1, int(aimd.limit)))
    assert aimd.limit == 1
    windows = 0
    while aimd.limit < 32:
        _window(aimd, "." * int(aimd.limit))
        windows += 1
    assert windows == 31  # capacity back: one more per window


def test_aimd_cuts_when_latency_doubles_but_a_lasting_change_costs_one_cut() -> None:
    aimd = Aimd(ceiling=8)
    for _ in range(3):
        _window(aimd, "........", latency=1.0)
    assert aimd.limit == 8 and aimd.baseline == pytest.approx(1.0)
    for _ in range(10):  # three times slower, for good (or overload that a cut did not cure)
        _window(aimd, "." * int(aimd.limit), latency=3.0)
    assert aimd.cuts == 1
    assert aimd.limit > 5.6  # it grows again after the one cut


def test_aimd_slots_block_at_the_limit() -> None:
    aimd = Aimd(ceiling=2)
    _window(aimd, "xx")  # cut to 1.4: one request at a time
    entered = threading.Event()
    aimd.enter()

    def second() -> None:
        aimd.enter()
        entered.set()
        aimd.leave()

    thread = threading.Thread(target=second)
    thread.start()
    assert not entered.wait(0.2)
    aimd.leave()
    assert entered.wait(2)
    thread.join()


# --- retry budget -------------------------------------------------------------------------


def test_retry_budget_without_any_answer_is_the_attempt_count() -> None:
    budget = RetryBudget(max_attempts=3, timeout=1)
    assert budget.stop(2, elapsed=2, since_answer=None) is None
    assert budget.stop(3, elapsed=3, since_answer=None) == "no answer yet"
    assert budget.stop(2, elapsed=3, since_answer=None)  # or attempts x timeout seconds


def test_retry_budget_goes_on_while_the_endpoint_answers_others() -> None:
    budget = RetryBudget(max_attempts=3, timeout=1)
    assert budget.window == 60 and budget.total == 900
    assert budget.stop(50, elapsed=300, since_answer=2) is None
    assert budget.stop(50, elapsed=300, since_answer=61) == "no answer for 61 s"
    assert budget.stop(50, elapsed=900, since_answer=0) == "retried for 900 s"
    assert RetryBudget(max_attempts=8, timeout=120).window == 480
    # The answers came in 3-25 s: an endpoint silent for 100 s is not merely slow.
    assert RetryBudget(max_attempts=8, timeout=120, slowest=25).window == 100
    assert RetryBudget(max_attempts=8, timeout=120, slowest=3).window == 60
    assert RetryBudget(max_attempts=8, timeout=20, slowest=300).window == 80  # at most 4 x timeout


def test_an_endpoint_that_answered_then_fell_silent_fails_after_the_window() -> None:
    """A hung endpoint (timeouts) kept a build retrying 8 attempts of `timeout`, 16 min by
    default; 429s keep the attempts (a wave lasts its reset)."""
    silent = RetryBudget(max_attempts=8, timeout=120, slowest=3, silent=True)
    assert silent.stop(1, elapsed=30, since_answer=30) is None
    assert silent.stop(1, elapsed=120, since_answer=125) is None  # tried again once
    assert silent.stop(2, elapsed=245, since_answer=250) == "no answer for 250 s"
    assert silent.stop(2, elapsed=245, since_answer=None) is None  # never answered: attempts
    # After an idle hour the first failures are retried: silence counts from the first send.
    assert silent.stop(2, elapsed=5, since_answer=3600) is None
    assert silent.stop(3, elapsed=65, since_answer=3660) == "no answer for 3660 s"
    limited = RetryBudget(max_attempts=8, timeout=120, slowest=3)
    assert limited.stop(2, elapsed=245, since_answer=250) is None


def test_once_a_request_gives_up_on_a_silent_endpoint_the_others_stop_at_once() -> None:
    """An endpoint that answered, then hung: each request waited out a window of its own, and
    requests sent later started theirs, so a build at timeout 10 failed after 580 s, not ~70.
    A request whose next attempt comes after another gave up (and no answer since) stops."""
    silent = socket.create_server(("127.0.0.1", 0))
    silent.listen(64)
    url = f"http://127.0.0.1:{silent.getsockname()[1]}/v1"
    client = LlmClient(ProviderConfig(base_url=url, model="x", timeout=1, max_attempts=8))
    pacer = client.pacer  # the endpoint's, which every request of the process shares
    pacer.last_answer = time.monotonic() - 70  # it answered, 70 s ago
    pacer.give_up("no answer for 70 s")
    started = time.monotonic()
    try:
        gave_up = r"gave up, as another request to .* did \(no answer for 70 s\)"
        with pytest.raises(ProviderError, match=gave_up):
            client.complete(MESSAGES, SCHEMA, 64, StatsRecorder())
    finally:
        silent.close()
    assert time.monotonic() - started < 1  # not sent, where 8 attempts took 8 s and more
    pacer.last_answer = time.monotonic()  # an answer since: the endpoint serves again
    assert pacer.given_up() is None
    pacer.give_up("no answer for 70 s")
    pacer.answered_check()  # a new build's endpoint check answered: its requests go
    assert pacer.given_up() is None
    pacer.give_up("no answer for 70 s")  # a minute later, a new build tries the endpoint again
    pacer._given_up = (time.monotonic() - Pacer.GIVE_UP_HOLD - 1, "no answer for 70 s")
    assert pacer.given_up() is None


def test_a_port_that_accepts_and_never_answers_says_so_at_the_check() -> None:
    """The endpoint check said only `http://.../v1 timed out`, with no hint."""
    silent = socket.create_server(("127.0.0.1", 0))
    silent.listen(8)
    url = f"http://127.0.0.1:{silent.getsockname()[1]}/v1"
    try:
        with pytest.raises(ProviderError) as caught:
            LlmClient(ProviderConfig(base_url=url, model="x", timeout=1)).check()
    finally:
        silent.close()
    assert f"{url} timed out: GET /models had no answer in 1 s" == str(caught.value)
    assert caught.value.hint and "accepted the connection and never answered" in caught.value.hint


def test_https_to_a_plain_http_server_says_the_tls_handshake_failed() -> None:
    """`--base-url https://` against a local HTTP server said "is the server running?" of a
    server that was running."""
    with simulator() as sim:
        url = sim.url.replace("http://", "https://", 1)
        client = LlmClient(ProviderConfig(base_url=url, model="x", timeout=2, max_attempts=1))
        with pytest.raises(ProviderError) as caught:
            client.complete(MESSAGES, SCHEMA, 64, StatsRecorder())
    assert "cannot reach https://" in str(caught.value)
    assert caught.value.hint and "TLS handshake failed" in caught.value.hint
    assert sim.url in caught.value.hint  # the http:// URL to use


def test_a_server_closing_the_connection_is_not_said_unreachable() -> None:
    """The simulator crashed on a schema and dropped each connection: the build said "cannot
    reach ... is the server running?" of a server that had just answered."""
    closing = socket.create_server(("127.0.0.1", 0))
    closing.listen(8)

    def close_each() -> None:
        with contextlib.suppress(OSError):
            while True:
                connection, _ = closing.accept()
                connection.recv(65536)
                connection.close()

    threading.Thread(target=close_each, daemon=True).start()
    url = f"http://127.0.0.1:{closing.getsockname()[1]}/v1"
    client = LlmClient(ProviderConfig(base_url=url, model="x", timeout=1, max_attempts=2))
    try:
        with pytest.raises(ProviderError) as caught:
            client.complete(MESSAGES, SCHEMA, 64, StatsRecorder())
        # The process's other requests give up with it, saying the same: they said "no
        # answer within provider.timeout (120 s)" of connections closed at once.
        with pytest.raises(ProviderError) as other:
            client.complete(MESSAGES, SCHEMA, 64, StatsRecorder())
    finally:
        closing.close()
    assert "closed the connection without an answer" in str(caught.value)
    assert "is the server running" not in (caught.value.hint or "")
    assert str(other.value).startswith("gave up, as another request to")
    assert "closed the connection without an answer" in str(other.value)
    assert other.value.cause == caught.value.cause != "timeout"
    assert other.value.hint == caught.value.hint


def test_retries_back_off_exponentially_only_while_the_endpoint_fails_every_request() -> None:
    from tenacity import RetryCallState

    from synthaix.llm.client import _wait

    state = RetryCallState(None, None, (), {})
    state.attempt_number = 3
    # The odd failure among answers: back soon (the third attempt of an unlucky request).
    assert max(_wait(state, failing=1) for _ in range(200)) <= 0.25
    state.attempt_number = 6  # failing alone over and over: half the exponent still applies
    assert 0.25 < max(_wait(state, failing=1) for _ in range(200)) <= 1
    # Everything failing: the full exponential spread, up to 8 s at the sixth attempt.
    waits = [_wait(state, failing=20) for _ in range(200)]
    assert max(waits) <= 8 and max(waits) > 2


# --- stats --------------------------------------------------------------------------------


def test_stats_add_up_and_read_old_manifests() -> None:
    one = LlmStats(requests=10, rate_limited=2, wait_seconds=1.5, prompt_tokens=600)
    one.first_answer_at, one.last_answer_at = 1000.0, 1030.0
    two = LlmStats(requests=20, rate_limited=1, wait_seconds=0.5, prompt_tokens=1200)
    two.first_answer_at, two.last_answer_at = 1010.0, 1060.0
    total = LlmStats() + one + two
    assert (total.requests, total.rate_limited, total.wait_seconds) == (30, 3, 2.0)
    assert (total.first_answer_at, total.last_answer_at) == (1000.0, 1060.0)
    assert total.observed_rpm == pytest.approx(30) and total.observed_tpm == pytest.approx(1800)
    old = LlmStats.model_validate({"requests": 3, "prompt_tokens": 5})
    assert old.rate_limited == 0 and old.wait_seconds == 0 and old.observed_rpm == 0


# --- over loopback ------------------------------------------------------------------------

MESSAGES = [{"role": "user", "content": "A short note."}]
SCHEMA = {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}


def _ask(client: LlmClient, count: int, threads: int, recorder: StatsRecorder) -> None:
    with ThreadPoolExecutor(threads) as pool:
        for future in [
            pool.submit(client.complete, MESSAGES, SCHEMA, 64, recorder) for _ in range(count)
        ]:
            future.result()


def _when(condition: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_rate_limit_headers_are_honoured_after_the_first_answers() -> None:
    """600 RPM with a 2 s burst (20 requests), no rpm in the config, 32 at once: only the
    first requests, sent before any answer told the limits, may meet a 429."""
    with simulator(rpm=600, burst_seconds=2, latency=0.05) as sim:
        client = LlmClient(ProviderConfig(base_url=sim.url, model="sim-small", max_concurrency=32))
        first, then = StatsRecorder(), StatsRecorder()
        _ask(client, 32, 32, first)  # the first window: blind
        counts = sim.state.stats()["counts"]
        started = time.monotonic()
        _ask(client, 50, 32, then)
        seconds = time.monotonic() - started
        final = sim.state.stats()["counts"]
    assert counts.get("429", 0) <= 12 and first.stats.rate_limited == counts.get("429", 0)
    assert final["200"] == 82 and final.get("429", 0) == counts.get("429", 0)  # none after
    assert then.stats.rate_limited == 0 and then.stats.wait_seconds > 0
    # 10 per second, as the headers said, after what the 2 s burst holds (at most 20 at once)
    assert (50 - 20) / 10 < seconds < 10
    assert 450 < then.stats.observed_rpm < 50 / ((50 - 20) / 10) * 60


def test_concurrency_adapts_down_and_back_up_without_headers() -> None:
    """Headers off: the adaptive limit is cut when the simulator's limit drops mid-run, and
    grows back when it is raised again."""
    with simulator(rpm=60_000, burst_seconds=1, latency=0.05, headers=False) as sim:
        client = LlmClient(ProviderConfig(base_url=sim.url, model="sim-small", max_concurrency=8))
        aimd, seen, stop = client.pacer.aimd, [], threading.Event()
        recorder = StatsRecorder()

        def load() -> None:
            while not stop.is_set():
                client.complete(MESSAGES, SCHEMA, 64, recorder)

        with ThreadPoolExecutor(12) as pool:
            futures = [pool.submit(load) for _ in range(12)]
            try:
                time.sleep(1)
                high = aimd.limit
                sim.set_limits(rpm=240)  # 4 per second: about 0.2 requests in flight
                _when(lambda: aimd.limit <= 2, timeout=15)
                seen.append(aimd.limit)
                sim.set_limits(rpm=60_000)
                _when(lambda: aimd.limit >= 7, timeout=15)
            finally:
                stop.set()
            for future in futures:
                future.result()
    assert high == 8 and seen[0] <= 2 and aimd.limit >= 7
    assert recorder.stats.rate_limited > 0


@pytest.mark.parametrize("headers", [True, False])
def test_a_provider_answering_one_request_per_second_still_completes_a_build(
    tmp_path: Path, headers: bool
) -> None:
    """rpm 60 with a 1 s burst, and max_attempts 2: requests are retried for as long as the
    endpoint answers others, never given up after 2 attempts."""
    from synthaix.build.engine import Build
    from synthaix.build.executor import ThreadExecutor
    from synthaix.config import load_config

    with simulator(rpm=60, burst_seconds=1, headers=headers) as sim:
        path = write_config(
            tmp_path / "notes.yaml",
            {
                "name": "notes",
                "rows": 20,
                "chunk_size": 10,
                "columns": [{"name": "note", "type": "llm", "prompt": "A short note"}],
                "provider": provider(sim.url, rows_per_request=2, max_attempts=2),
                "runner": {"workers": 2},
                "output": {"dir": str(tmp_path / "out")},
            },
        )
        started = time.monotonic()
        manifest = Build(load_config(path), ThreadExecutor(load_config(path))).run()
        seconds = time.monotonic() - started
        answered = sim.state.stats()["counts"]["200"]
    assert manifest.rows.delivered == 20
    assert answered >= 10 and seconds >= answered - 2  # one a second, bar the first burst
    assert manifest.llm.requests == answered
    if headers:
        assert manifest.llm.rate_limited <= 8  # only the first requests, sent blind


def _seed_whose_first_request_alone_is_rate_limited(p: float) -> int:
    """The simulator draws each request's faults from its own generator, forked in turn from
    the seed's: the first draw decides a fault 429."""
    for seed in range(1000):
        forks = random.Random(seed)
        draws = [random.Random(forks.getrandbits(64)).random() for _ in range(3)]
        if draws[0] < p <= min(draws[1:]):
            return seed
    raise AssertionError("no such seed")


@pytest.mark.parametrize("backed_off", [False, True])
def test_a_request_waiting_out_a_retry_after_gives_its_place_to_the_next(backed_off: bool) -> None:
    """max_concurrency 1: while the first request waits 1.5 s after its 429, the second is
    answered. Unless the adaptive limit has backed off (429s are many): then the waiting
    request keeps its place, and the second waits for it."""
    seed = _seed_whose_first_request_alone_is_rate_limited(0.5)
    rates = FaultRates(rate_limit=0.5)
    with simulator(rates, seed=seed, retry_after_ms=1500, latency=0.05) as sim:
        config = ProviderConfig(base_url=sim.url, model="sim-small", max_concurrency=2)
        client, done = LlmClient(config), {}
        aimd = client.pacer.aimd  # 1 in flight either way; backed off: below its ceiling
        aimd.limit, aimd.ceiling = (1.5, 2) if backed_off else (1.0, 1)

        def ask(name: str) -> None:
            client.complete(MESSAGES, SCHEMA, 64, StatsRecorder())
            done[name] = time.monotonic()

        with ThreadPoolExecutor(2) as pool:
            first = pool.submit(ask, "first")
            _when(lambda: sim.state.stats()["counts"].get("429", 0) == 1, timeout=5)
            asked = time.monotonic()
            second = pool.submit(ask, "second")
            first.result(), second.result()
    if backed_off:
        assert done["second"] > done["first"]
    else:
        assert done["second"] - asked < 1.0 and done["second"] < done["first"]


def test_an_endpoint_that_only_rate_limits_still_fails() -> None:
    """429s alone are no progress (an exhausted quota): after max_attempts, it gives up."""
    with simulator(FaultRates(rate_limit=1.0)) as sim:
        client = LlmClient(ProviderConfig(base_url=sim.url, model="sim-small", max_attempts=3))
        recorder = StatsRecorder()
        with pytest.raises(ProviderError, match=r"gave up after 3 attempts \(no answer yet\)"):
            client.complete(MESSAGES, SCHEMA, 64, recorder)
    assert recorder.stats.rate_limited == 3 and recorder.stats.retries["rate_limit"] == 2


def test_a_dead_endpoint_still_fails_within_attempts_times_timeout() -> None:
    silent = socket.create_server(("127.0.0.1", 0))
    silent.listen(8)
    url = f"http://127.0.0.1:{silent.getsockname()[1]}/v1"
    client = LlmClient(ProviderConfig(base_url=url, model="x", timeout=0.5, max_attempts=3))
    started = time.monotonic()
    try:
        with pytest.raises(ProviderError, match="gave up after 3 attempts"):
            client.complete(MESSAGES, SCHEMA, 64, StatsRecorder())
    finally:
        silent.close()
    assert time.monotonic() - started < 2 * 0.5 * 3, "took too long"


def test_the_pacing_line_shares_429s_among_attempts_and_measures_rates_over_10_s() -> None:
    """14 429s among 29 answered requests were '93.3 %' (of the answers); two answers 6 ms
    apart made '20,856 requests/min'."""
    from collections import Counter

    from synthaix.build.manifest import pacing
    from synthaix.llm.stats import LlmStats

    throttled = LlmStats(
        requests=29,
        retries=Counter(rate_limit=14),
        rate_limited=14,
        first_answer_at=1000.0,
        last_answer_at=1060.0,
    )
    line = pacing(throttled)
    assert "14 of 43 attempts answered 429 (32.6%)" in line and "29 requests/min" in line
    quick = LlmStats(requests=2, first_answer_at=1000.0, last_answer_at=1000.006)
    assert "rates not measured" in pacing(quick) and "requests/min" not in pacing(quick)


def test_requests_that_timed_out_are_named_beside_the_cost() -> None:
    """A timed-out request was answered too late, not refused: 9 of them were in no figure."""
    from collections import Counter
    from types import SimpleNamespace

    from synthaix.build.manifest import cost_lines
    from synthaix.llm.stats import LlmStats

    llm = LlmStats(requests=20, retries=Counter(timeout=9), cost_usd=0.0044)
    manifest = SimpleNamespace(llm=llm, llm_total=llm, embeddings=LlmStats(), earlier_attempts=[])
    lines = dict(cost_lines(manifest))
    assert lines["LLM"].startswith("20 requests") and "may bill them" in lines["timed out"]
    assert lines["timed out"].startswith("9 requests")


def test_a_long_wait_for_the_configured_limits_is_said_and_a_stop_cuts_it_short() -> None:
    """A tpm below what a request takes: each request waits minutes, with a progress bar that
    never moved and no word why, and a stopped build waited them out."""
    from synthaix import progress, stopping
    from synthaix.stopping import BuildStopped

    class Notes:
        def __init__(self) -> None:
            self.said: list[str] = []

        def note(self, text: str) -> None:
            self.said.append(text)

        def __getattr__(self, name: str) -> Callable[..., None]:
            return lambda *args: None

    notes = Notes()
    with simulator() as sim, progress.listening(notes):  # type: ignore[arg-type]
        client = LlmClient(ProviderConfig(base_url=sim.url, model="sim-small", tpm=60))
        client.complete(MESSAGES, SCHEMA, 64, StatsRecorder(), build="b1")  # the first minute
        threading.Timer(0.5, stopping.stop, ["b1"]).start()
        started = time.monotonic()
        try:
            with pytest.raises(BuildStopped):
                client.complete(MESSAGES, SCHEMA, 64, StatsRecorder(), build="b1")
        finally:
            stopping.forget("b1")
    assert time.monotonic() - started < 2
    assert len(notes.said) == 1 and "for the configured limits (provider.tpm 60)" in notes.said[0]


def test_a_failed_build_says_how_many_requests_timed_out(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A build ending well says `timed out: N requests: a provider may bill them`; one that
    failed on timeouts (86 of them) said nothing of them."""
    import typer

    from synthaix.cli.app import _fail
    from synthaix.llm.stats import attach_spent

    failure = ProviderError("gave up after 8 attempts (no answer for 70 s)", cause="timeout")
    attach_spent(failure, LlmStats(requests=12, retries={"timeout": 86}))
    with pytest.raises(typer.Exit):
        _fail(failure, debug=False)
    said = capsys.readouterr().err
    assert "spent before failing: 12 requests" in said
    assert "timed out: 86 requests: a provider may bill them" in said
