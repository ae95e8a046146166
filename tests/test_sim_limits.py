"""The simulator's rate limits: token buckets, Azure-style short windows, OpenAI's x-ratelimit-*
headers, 429s with retry-after, and limits changed mid-run (POST /sim/limits)."""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from llm_helpers import simulator
from typer.testing import CliRunner

from synthaix.cli import app
from synthaix.llm.pacing import parse_duration  # the client reads what the simulator writes
from synthaix.sim.limits import Limiter, Limits, format_duration
from synthaix.sim.server import SimServer

# OpenAI's reset durations: `20ms`, `1s`, `1.5s`, `6m0s`, `1m30.5s`, `1h0m0s`
_DURATION = re.compile(r"^(?:(\d+)ms|(?:(\d+)h)?(?:(\d+)m)?(?:(\d+(?:\.\d+)?)s))$")
LIMIT_HEADERS = [
    f"x-ratelimit-{what}-{kind}"
    for kind in ("requests", "tokens")
    for what in ("limit", "remaining", "reset")
]


def seconds(text: str) -> float:
    """A reset duration, read independently of synthaix.sim.limits.parse_duration."""
    match = _DURATION.match(text)
    assert match, f"not an OpenAI duration: {text!r}"
    ms, h, m, s = match.groups()
    if ms is not None:
        return int(ms) / 1000
    return int(h or 0) * 3600 + int(m or 0) * 60 + float(s)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@functools.cache
def _http() -> httpx.Client:
    """One client, its connections kept: a new client per request costs ~50 ms."""
    return httpx.Client(timeout=30)


@pytest.fixture(autouse=True)
def _close_connections() -> Iterator[None]:
    yield
    _http().close()
    _http.cache_clear()


def _post(sim: SimServer, max_tokens: int | None = 8, content: str = "hi") -> httpx.Response:
    body: dict[str, Any] = {
        "model": "sim-small",
        "messages": [{"role": "user", "content": content}],
    }
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    return _http().post(f"{sim.url}/chat/completions", json=body)


def _limits(sim: SimServer, **changes: Any) -> httpx.Response:
    return _http().post(sim.url.removesuffix("/v1") + "/sim/limits", json=changes)


# --- the model, on a fake clock ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0, "0s"),
        (0.0004, "1ms"),
        (0.02, "20ms"),
        (0.999, "999ms"),
        (1, "1s"),
        (1.5, "1.5s"),
        (17.1823, "17.183s"),
        (60, "1m0s"),
        (90.5, "1m30.5s"),
        (360, "6m0s"),
        (3600, "1h0m0s"),
        (3723.25, "1h2m3.25s"),
    ],
)
def test_durations_are_formatted_as_openai_sends_them(value: float, text: str) -> None:
    assert format_duration(value) == text
    assert seconds(text) == pytest.approx(parse_duration(text)) == pytest.approx(value, abs=1e-3)


def test_parse_duration_takes_go_forms_and_refuses_others() -> None:
    assert parse_duration("1m30.5s") == 90.5
    assert parse_duration("500us") == pytest.approx(0.0005)
    assert parse_duration("0") == 0
    assert parse_duration("1.5") == 1.5  # plain seconds, as some gateways send
    for bad in ("", "s", "1x", "1s ms", "-1s"):
        assert parse_duration(bad) is None


def test_bucket_admits_the_burst_then_refills_continuously() -> None:
    clock = Clock()
    limiter = Limiter(Limits(rpm=1200, burst_seconds=2), clock)  # 40 at once, then 20/s
    assert sum(limiter.admit(0).admitted for _ in range(50)) == 40
    refused = limiter.admit(0)
    assert refused.kind == "requests" and refused.retry_after == pytest.approx(0.05)
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"
    assert refused.headers["x-ratelimit-reset-requests"] == "2s"
    clock.now += 0.5
    assert sum(limiter.admit(0).admitted for _ in range(50)) == 10
    clock.now += 3600  # idle: the bucket fills to its capacity, no further
    assert sum(limiter.admit(0).admitted for _ in range(50)) == 40


def test_a_minute_burst_is_the_hosted_default() -> None:
    clock = Clock()
    limiter = Limiter(Limits(rpm=60), clock)
    assert sum(limiter.admit(0).admitted for _ in range(100)) == 60
    assert limiter.headers()["x-ratelimit-reset-requests"] == "1m0s"
    clock.now += 30.5
    assert limiter.headers()["x-ratelimit-remaining-requests"] == "30"
    assert limiter.headers()["x-ratelimit-reset-requests"] == "29.5s"


def test_short_windows_refill_in_steps_without_carrying_over() -> None:
    clock = Clock()
    limiter = Limiter(Limits(rpm=600, window_seconds=10), clock)  # 100 per 10 s window
    assert sum(limiter.admit(0).admitted for _ in range(150)) == 100
    clock.now += 9.0
    refused = limiter.admit(0)
    assert not refused.admitted and refused.retry_after == pytest.approx(1.0)
    assert refused.headers["x-ratelimit-reset-requests"] == "1s"
    clock.now += 1.0
    assert sum(limiter.admit(0).admitted for _ in range(150)) == 100
    clock.now += 60  # six idle windows: still 100, not 600
    assert sum(limiter.admit(0).admitted for _ in range(150)) == 100


def test_tokens_are_charged_and_a_request_over_the_burst_runs_into_debt() -> None:
    clock = Clock()
    limiter = Limiter(Limits(tpm=600, burst_seconds=1), clock)  # 10 tokens held, 10/s
    assert limiter.admit(50).admitted  # larger than the bucket, admitted when it is full
    assert limiter.headers()["x-ratelimit-remaining-tokens"] == "0"
    refused = limiter.admit(5)
    assert refused.kind == "tokens" and refused.retry_after == pytest.approx(4.5)
    assert limiter.headers()["x-ratelimit-reset-tokens"] == "5s"
    clock.now += 4.5
    assert limiter.admit(5).admitted
    too_large = limiter.admit(601)  # more than a minute's worth: waiting cannot help
    assert not too_large.admitted and too_large.retry_after is None
    assert "Request too large" in too_large.message


def test_changed_limits_keep_the_level_up_to_the_new_capacity() -> None:
    clock = Clock()
    limiter = Limiter(Limits(rpm=60), clock)
    for _ in range(20):
        limiter.admit(0)
    assert limiter.set(rpm=30).rpm == 30  # 40 left, capacity now 30
    assert limiter.headers()["x-ratelimit-remaining-requests"] == "30"
    limiter.set(rpm=600)
    assert limiter.headers()["x-ratelimit-remaining-requests"] == "30"  # not refilled at once
    clock.now += 1
    assert limiter.headers()["x-ratelimit-remaining-requests"] == "40"  # 10/s now
    limiter.set(tpm=1000)  # a new limit starts full
    assert limiter.headers()["x-ratelimit-remaining-tokens"] == "1000"
    limiter.set(rpm=None)
    assert "x-ratelimit-limit-requests" not in limiter.headers()
    for bad in ({"rpm": 0}, {"rpm": 1.5}, {"burst_seconds": -1}, {"window": 10}):
        with pytest.raises(ValueError):
            limiter.set(**bad)


# --- over HTTP ----------------------------------------------------------------------------------


def test_bucket_admits_the_burst_at_once_then_rpm_over_60_per_second() -> None:
    with simulator(rpm=600, burst_seconds=3) as sim:  # 30 at once, then 10/s
        start = time.monotonic()
        burst = [_post(sim).status_code for _ in range(40)]
        took = time.monotonic() - start
        assert burst[:30] == [200] * 30
        assert burst.count(200) <= 30 + 10 * took + 1
        if took < 0.5:  # not on a machine too busy to tell
            assert burst[-1] == 429
        admitted = burst.count(200)
        while time.monotonic() - start < 2.5:
            admitted += _post(sim).status_code == 200
            time.sleep(0.01)
        elapsed = time.monotonic() - start
        assert admitted <= 30 + 10 * elapsed + 1
        assert admitted >= 30 + 10 * elapsed - 4
        counts = sim.state.stats()["counts"]
        assert counts["429"] == counts["429_requests"] > 0


def test_headers_present_and_decreasing_and_resets_parse() -> None:
    with simulator(rpm=60, tpm=6000) as sim:  # refill 1 request/s, 100 tokens/s
        answers = [_post(sim, max_tokens=500) for _ in range(5)]
        assert all(a.status_code == 200 for a in answers)
        for answer in answers:
            assert all(h in answer.headers for h in LIMIT_HEADERS)
            assert answer.headers["x-ratelimit-limit-requests"] == "60"
            assert answer.headers["x-ratelimit-limit-tokens"] == "6000"
        remaining = [int(a.headers["x-ratelimit-remaining-requests"]) for a in answers]
        assert remaining == sorted(remaining, reverse=True) and remaining[-1] < remaining[0]
        assert remaining[0] == 59
        tokens = [int(a.headers["x-ratelimit-remaining-tokens"]) for a in answers]
        assert tokens[0] == pytest.approx(6000 - 501, abs=20)
        assert tokens[-1] < tokens[0] - 1500
        resets = [seconds(a.headers["x-ratelimit-reset-requests"]) for a in answers]
        assert resets[-1] > resets[0] and resets[-1] == pytest.approx(5, abs=0.6)
        reset_tokens = seconds(answers[-1].headers["x-ratelimit-reset-tokens"])
        assert reset_tokens == pytest.approx(5 * 501 / 100, abs=1)
    with simulator(rpm=1, burst_seconds=120) as sim:  # two requests held, one a minute
        assert _post(sim).status_code == _post(sim).status_code == 200
        reset = _post(sim).headers["x-ratelimit-reset-requests"]
        assert re.fullmatch(r"(2m0s|1m59\.\d+s)", reset), reset


def test_a_429_carries_retry_after_and_openai_error_json() -> None:
    with (
        simulator(rpm=60, burst_seconds=2) as sim,  # 2 at once, then one a second
        openai.OpenAI(base_url=sim.url, api_key="sim", max_retries=0) as client,
    ):
        messages: Any = [{"role": "user", "content": "hi"}]
        create = client.chat.completions.with_raw_response.create
        raw = create(model="sim-small", messages=messages, max_tokens=8)
        assert raw.headers["x-ratelimit-remaining-requests"] == "1"
        assert raw.parse().choices[0].message.content
        create(model="sim-small", messages=messages, max_tokens=8)
        with pytest.raises(openai.RateLimitError) as caught:
            create(model="sim-small", messages=messages, max_tokens=8)
        headers = caught.value.response.headers
        retry_ms = int(headers["retry-after-ms"])
        assert 0 < retry_ms <= 1000 and headers["retry-after"] == "1"
        assert headers["x-ratelimit-remaining-requests"] == "0"
        assert 1 < seconds(headers["x-ratelimit-reset-requests"]) <= 2
        error = caught.value.response.json()["error"]
        assert error["code"] == "rate_limit_exceeded" and error["type"] == "requests"
        assert "requests per min (RPM): Limit 60," in error["message"]
        time.sleep(retry_ms / 1000)
        assert create(model="sim-small", messages=messages, max_tokens=8).http_response.is_success


def test_short_windows_admit_a_windows_worth_then_wait_for_the_next() -> None:
    with simulator(rpm=600, window_seconds=1) as sim:  # 10 per 1 s window
        while (first := _post(sim)).status_code == 200:  # use up the current window
            pass
        time.sleep(int(first.headers["retry-after-ms"]) / 1000)
        statuses = [_post(sim).status_code for _ in range(12)]
        assert statuses == [200] * 10 + [429] * 2
        refused = _post(sim)
        wait = int(refused.headers["retry-after-ms"]) / 1000
        assert 0.4 < wait <= 1 and refused.json()["error"]["type"] == "requests"
        assert seconds(refused.headers["x-ratelimit-reset-requests"]) == pytest.approx(
            wait, abs=0.01
        )
        time.sleep(0.2)  # a bucket would have refilled some by now; a window has not
        assert _post(sim).status_code == 429
        time.sleep(max(0.0, wait - 0.2))
        assert _post(sim).status_code == 200


def test_tpm_is_charged_with_prompt_and_max_tokens_at_admission() -> None:
    with simulator(tpm=600, burst_seconds=10) as sim:  # 100 tokens held, 10/s
        first = _post(sim, max_tokens=40)  # "hi": 1 prompt token + 40
        assert first.status_code == 200
        assert int(first.headers["x-ratelimit-remaining-tokens"]) in (59, 60)
        assert "x-ratelimit-limit-requests" not in first.headers  # no rpm set
        assert _post(sim, max_tokens=40).status_code == 200
        refused = _post(sim, max_tokens=40)
        assert refused.status_code == 429 and refused.json()["error"]["type"] == "tokens"
        assert 1.5 < int(refused.headers["retry-after-ms"]) / 1000 <= 2.3
        too_large = _post(sim, max_tokens=700)
        assert too_large.status_code == 429 and "retry-after" not in too_large.headers
        assert "Request too large" in too_large.json()["error"]["message"]
        assert sim.state.stats()["counts"]["429_tokens"] == 2
    with simulator(tpm=600) as sim:  # without max_tokens: the completion once written
        answer = _post(sim, max_tokens=None)
        completion = answer.json()["usage"]["completion_tokens"]
        assert completion > 1
        spent = 600 - int(answer.headers["x-ratelimit-remaining-tokens"])
        assert spent == pytest.approx(1 + completion, abs=2)


def test_limits_change_mid_run() -> None:
    with simulator(rpm=60) as sim:
        assert _post(sim).headers["x-ratelimit-remaining-requests"] == "59"
        changed = _limits(sim, rpm=6)
        assert changed.status_code == 200
        assert changed.json() == {
            "rpm": 6,
            "tpm": None,
            "burst_seconds": 60,
            "window_seconds": None,
        }
        lowered = _post(sim)
        assert lowered.headers["x-ratelimit-limit-requests"] == "6"
        assert lowered.headers["x-ratelimit-remaining-requests"] == "5"
        while _post(sim).status_code == 200:
            pass
        _limits(sim, rpm=6000)  # 100/s: the bucket fills fast, from where it was
        time.sleep(0.2)
        raised = _post(sim)
        assert raised.status_code == 200
        assert 10 <= int(raised.headers["x-ratelimit-remaining-requests"]) <= 40
        base = sim.url.removesuffix("/v1")
        assert _http().get(f"{base}/sim/limits").json()["rpm"] == 6000
        assert _limits(sim, rpm=0).status_code == 400
        assert _limits(sim, speed=3).status_code == 400
        assert sim.set_limits(rpm=None, tpm=1000, window_seconds=1).tpm == 1000  # the Python way
        answer = _post(sim)
        assert "x-ratelimit-limit-requests" not in answer.headers
        assert answer.headers["x-ratelimit-limit-tokens"] == "1000"
        assert seconds(answer.headers["x-ratelimit-reset-tokens"]) <= 1
        sim.set_limits(rpm=None, tpm=None)
        assert not any(h.startswith("x-ratelimit") for h in _post(sim).headers)


def test_headers_can_be_turned_off() -> None:
    with simulator(rpm=60, tpm=60_000, burst_seconds=1, headers=False) as sim:
        ok, refused = _post(sim), _post(sim)
        assert (ok.status_code, refused.status_code) == (200, 429)
        for answer in (ok, refused):
            assert not any(h.startswith("x-ratelimit") for h in answer.headers)
        assert "retry-after-ms" in refused.headers and "retry-after" in refused.headers


def test_fault_429s_carry_the_headers_too_and_reset_refills() -> None:
    from synthaix.sim.faults import FaultRates

    with simulator(FaultRates(rate_limit=1.0), rpm=60, retry_after_ms=250) as sim:
        refused = _post(sim)
        assert refused.status_code == 429 and refused.headers["retry-after-ms"] == "250"
        assert refused.headers["x-ratelimit-remaining-requests"] == "59"  # it was admitted
        assert sim.state.stats()["counts"]["429_fault"] == 1
        _http().post(sim.url.removesuffix("/v1") + "/sim/reset")
        assert _post(sim).headers["x-ratelimit-remaining-requests"] == "59"


def test_cli_sim_takes_the_limit_options() -> None:
    runner = CliRunner()
    shown = runner.invoke(app, ["sim", "--help"], env={"COLUMNS": "200"})
    for flag in ("--burst-seconds", "--window-seconds", "--no-ratelimit-headers"):
        assert flag in shown.output
    bad = runner.invoke(app, ["sim", "--port", "0", "--rpm", "60", "--burst-seconds", "0"])
    assert bad.exit_code != 0 and "burst_seconds must be above 0" in bad.output


def test_a_reset_keeps_the_requests_in_flight_counted() -> None:
    """Zeroed by a reset, the gauge went below 0 as those requests ended."""
    from synthaix.sim.server import SimConfig, _State

    state = _State(SimConfig())
    with state.busy():
        state.reset()
        assert state.stats()["in_flight"] == 1 and state.stats()["peak_in_flight"] == 1
    assert state.stats()["in_flight"] == 0
