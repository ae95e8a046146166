"""Rows per request chosen for speed: the latency line, the choice under each bound, and a
build against the simulator whose latency grows with output tokens."""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from llm_helpers import provider, simulator

from synthaix.columns.llm import LlmColumn
from synthaix.llm import batching
from synthaix.llm.batching import Batcher, Endpoint, LineFit
from synthaix.llm.client import OrderedSlots, _Place
from synthaix.llm.pacing import Aimd
from synthaix.llm.provider import ProviderConfig
from synthaix.llm.stats import LlmStats, StatsRecorder

A, B = 0.5, 0.01  # seconds per request, seconds per output token
C0, T = 5, 25  # output tokens of the JSON wrapper, of one row


@pytest.fixture(autouse=True)
def _fresh() -> Iterator[None]:
    batching.forget()
    yield
    batching.forget()


def _batcher(prompt: tuple[float, float] = (50, 0), **config) -> Batcher:
    """A batcher that has seen answers of 5 to 50 rows on an endpoint answering in A + B * tokens
    seconds; `prompt`: the instructions' tokens and one row's input tokens."""
    found = Batcher(Endpoint(), ProviderConfig(max_concurrency=8, **config))
    for rows in [5, 50] * 6:
        tokens = C0 + T * rows
        found.observe(rows, tokens, A + B * tokens, int(prompt[0] + prompt[1] * rows))
    return found


def test_the_latency_line_is_recovered_from_noisy_answers() -> None:
    rng = np.random.default_rng(7)
    fit = LineFit()
    for _ in range(400):
        tokens = float(rng.integers(20, 1500))
        seconds = A + B * tokens + rng.normal(0, 0.05)
        if rng.random() < 0.05:  # a slow answer
            seconds *= 3
        fit.add(tokens, max(seconds, 0.0))
    line = fit.line()
    assert line is not None and line.trusted
    assert line.intercept == pytest.approx(A, abs=0.05)
    assert line.slope == pytest.approx(B, rel=0.05)


def test_one_size_is_not_enough_to_trust_the_slope_and_old_sizes_are_kept() -> None:
    fit = LineFit()
    for _ in range(50):
        fit.add(500, A + B * 500)
    line = fit.line()
    assert line is not None and not line.trusted and line.slope == 0  # all of it per request
    for _ in range(3):
        fit.add(150, A + B * 150)
    assert fit.line() == batching.Line(pytest.approx(A), pytest.approx(B), True)
    for _ in range(500):  # many answers of the size chosen do not push out the other size
        fit.add(500, A + B * 500)
    assert fit.line().trusted and fit.line().slope == pytest.approx(B)


def test_the_first_requests_use_the_budget_then_two_sizes_are_explored() -> None:
    batcher = Batcher(Endpoint(), ProviderConfig())
    assert batcher.plan(48) == batching.Choice(48, "budget")
    batcher.observe(48, 1200, 12.5)
    assert batcher.plan(48) == batching.Choice(48, "exploring")
    batcher.observe(48, 1210, 12.6)
    assert batcher.plan(48) == batching.Choice(16, "exploring")  # a second size
    for _ in range(4):
        batcher.observe(16, 400, 4.5)
    assert batcher.plan(48).bound == "latency"
    assert batcher.choose(1) == 1  # no room to explore


def test_bound_by_latency_the_choice_balances_the_fixed_and_the_token_time() -> None:
    choice = _batcher().plan(50)
    assert choice.bound == "latency"
    # Elasticity 0.1: the rows' token time is 9 times the time of any request: B*T*K = 9 (A + B*C0).
    knee = 9 * (A + B * C0) / (B * T)
    assert abs(choice.rows - knee) <= 2, choice
    # Nearly all of the best rows/s (C / (B * T) at an infinite K), in far shorter requests.
    assert choice.rows_per_second > 0.85 * 8 / (B * T)
    assert _batcher().choose(10) == 10  # never above the output budget estimate


def test_a_flat_latency_takes_the_whole_budget() -> None:
    batcher = Batcher(Endpoint(), ProviderConfig())
    for rows in [5, 50] * 6:
        batcher.observe(rows, C0 + T * rows, 0.4, 50)
    assert batcher.choose(50) == 50  # nothing grows with K: each request carries the most rows


def test_bound_by_requests_per_minute_the_choice_takes_more_rows() -> None:
    latency_only = _batcher().choose(50)
    # 60 requests per minute: K rows/s, below the latency bound 8K / (A + B tokens) up to K=30.
    configured = _batcher(rpm=60).plan(50)
    observed = _batcher()
    observed.limits(rpm=60)  # as the pacer would from x-ratelimit-limit-requests
    assert configured == observed.plan(50)
    assert configured.rows > latency_only
    crossing = (8 - A - B * C0) / (B * T)  # 8K / latency(K) == K
    assert abs(configured.rows - crossing) <= 1, configured
    # A configured rpm stays a bound when the pacer observes a looser one.
    looser = _batcher(rpm=60)
    looser.limits(rpm=6000)
    assert looser.choose(50) == configured.rows
    assert _batcher(rpm=6).plan(50) == batching.Choice(50, "rpm", 5.0)  # up to the budget


def test_bound_by_tokens_per_minute_max_tokens_follows_the_answers() -> None:
    # A request is charged its prompt and max_tokens at admission. Once answers are in,
    # max_tokens follows them (the most tokens a row took, a quarter to spare) instead of the
    # model's 4096: a request is charged about its rows' tokens, so tokens per minute no longer
    # push K up, and bind at K near the latency knee.
    latency_only = _batcher(prompt=(50, 20)).choose(50)
    assert _batcher(prompt=(50, 20), tpm=300_000).plan(50).rows == latency_only
    tight = _batcher(prompt=(50, 20), tpm=60_000).plan(50)
    assert tight.bound == "tpm" and 1 <= tight.rows <= latency_only
    batcher = _batcher(prompt=(50, 20))
    assert batcher.budget(10) < batcher.budget(50) < 4096
    assert Batcher(Endpoint(), ProviderConfig()).budget(10) == 4096  # no answers yet


def test_max_tokens_covers_the_answers_with_a_margin_that_cut_answers_widen() -> None:
    columns = [LlmColumn(name="review", prompt="A review", max_length=160)]
    batcher = Batcher(Endpoint(), ProviderConfig(), columns)
    first = batcher.budget(20)
    assert first == batching.answer_budget(ProviderConfig(), columns, 20) < 4096
    # Answers cut short before any came whole (rows longer than the schema suggests, such as
    # text of fewer characters per token): the estimate doubles each time, up to the model's.
    cut = Batcher(Endpoint(), ProviderConfig(), columns)
    cut.observe(20, first, 1.0, truncated=True)
    assert cut.budget(20) == 2 * first
    for _ in range(5):
        cut.observe(20, first, 1.0, truncated=True)
    assert cut.budget(20) == 4096
    rng = np.random.default_rng(3)
    answers = [int(rng.normal(25, 6, size=20).round().sum()) for _ in range(40)]
    for tokens in answers:
        batcher.observe(20, tokens, 1.0)
    budget = batcher.budget(20)
    # Every answer fits, with a margin of a few sigma (6 * sqrt(20) ~ 27 tokens), far from the
    # schema's estimate (160 characters a row) that the first requests had to use.
    assert max(answers) < budget < 500 + 6 * 27 + 16 and budget < first / 2
    assert batcher.budget(5) < budget / 2  # sized to the rows asked
    batcher.observe(20, budget, 1.0, truncated=True)  # an answer cut short: more margin
    assert batcher.budget(20) > budget


def test_the_instructions_never_cost_more_than_the_rows() -> None:
    batcher = Batcher(Endpoint(), ProviderConfig())
    for rows in [2, 40] * 6:  # latency by tokens alone: one row per request would do
        batcher.observe(rows, T * rows, 0.001 + B * T * rows, 900 + 5 * rows)
    assert batcher.choose(50) == math.ceil(900 / (5 + T))


def test_a_pacer_that_times_requests_replaces_the_fillers_times() -> None:
    endpoint = Endpoint()
    for tokens in [100, 1000] * 5:
        endpoint.observe(tokens, 10 * (A + B * tokens))  # with a queue for the slots
    endpoint.observe(100, A + B * 100, exact=True)
    endpoint.observe(1000, A + B * 1000, exact=True)
    endpoint.observe(100, 99.0)  # the filler's again: ignored from now on
    for tokens in [100, 1000] * 2:
        endpoint.observe(tokens, A + B * tokens, exact=True)
    line = endpoint.latency()
    assert line.trusted and line.intercept == pytest.approx(A) and line.slope == pytest.approx(B)
    endpoint.limits(concurrency=3)
    assert endpoint.in_flight(ProviderConfig(max_concurrency=8)) == 3
    assert endpoint.in_flight(ProviderConfig(max_concurrency=2)) == 2  # configured: upper bound


def test_a_place_reports_its_wait_in_line_apart_from_the_adaptive_limit() -> None:
    """The filler times a request less the wait for its place (the client's own queue), so
    a chunk queued behind others does not read as a slow endpoint."""
    slots, aimd = OrderedSlots(1), Aimd(4)
    first, second = _Place(slots, aimd), _Place(slots, aimd)
    assert max(first.take()) < 0.01
    waits: list[tuple[float, float]] = []
    waiter = threading.Thread(target=lambda: waits.append(second.take()))
    waiter.start()
    time.sleep(0.05)
    first.give()
    waiter.join(5)
    queued, limited = waits[0]
    assert queued >= 0.05 and limited < 0.01
    assert second.take() == (0.0, 0.0)  # held already: no second wait
    second.give()


def test_places_are_idle_only_when_no_request_would_wait() -> None:
    # A chunk sends its re-asks as a partial batch when capacity is idle: no request of its
    # own in flight, or free places that no other chunk task's requests wait for.
    slots = OrderedSlots(2)
    slots.acquire(), slots.acquire()
    assert not slots.idle()
    waiter = threading.Thread(target=slots.acquire, args=(3,))
    waiter.start()
    while not slots._waiting:  # in line
        time.sleep(0.001)
    slots.release()  # the waiter takes it
    waiter.join(5)
    assert not slots.idle()
    slots.release()
    assert slots.idle()
    slots.release()


def test_stats_count_the_rows_asked_and_add_up() -> None:
    recorder = StatsRecorder()
    for rows in (10, 6):
        recorder.request(100, 50, 0.0)
        recorder.asked(rows)
    assert recorder.stats.rows_per_request == 8
    total = recorder.stats + LlmStats(requests=2, rows_requested=4)
    assert total.rows_requested == 20 and total.rows_per_request == 5
    old = LlmStats.model_validate({"requests": 3})  # a manifest from before: no rows counted
    assert old.rows_requested == 0 and old.rows_per_request == 0


def test_rows_per_request_stays_an_override() -> None:
    from synthaix.columns.llm import LlmColumn
    from synthaix.llm.client import LlmClient
    from synthaix.llm.fill import StageFiller

    column = LlmColumn(name="note", max_length=60)
    with simulator() as sim:
        client = LlmClient(ProviderConfig(base_url=sim.url, model="sim-small", rows_per_request=7))
        filler = StageFiller(client, None, [column], StatsRecorder())
        for rows in [5, 50] * 6:  # whatever the batcher would choose
            filler.batcher.observe(rows, T * rows, A + B * T * rows)
        assert filler.next_size() == 7
        _, mask = filler.fill({}, 30)
    assert mask.all() and filler.recorder.stats.rows_per_request <= 7


def test_a_build_adapts_rows_per_request_to_the_latency_of_output_tokens(tmp_path: Path) -> None:
    """The first requests ask for the budget estimate, the next explore a third of it, and
    then requests follow the knee of the fitted latency line. Where the knee lies depends on
    the time a request costs beyond its tokens: the simulator's 0.05 s, but also this
    process's own work per request (the simulator runs in it and shares its GIL), measured
    from 0.03 s alone to 0.17 s beside busy threads (a full test run). So the knee is checked
    against the line the build fitted, by the rule's closed form, not against a fixed size."""
    from synthaix.build.engine import Build
    from synthaix.build.executor import ThreadExecutor
    from synthaix.config import parse_config
    from synthaix.llm.fill import rows_per_request

    columns = [
        {"name": "age", "type": "integer", "min": 18, "max": 80},
        {"name": "review", "type": "llm", "max_length": 80, "prompt": "A review at {{ age }}"},
    ]
    with simulator(latency=0.05, latency_per_token=0.005, record=True) as sim:
        config = parse_config(
            {
                "name": "reviews",
                "rows": 600,
                "chunk_size": 100,
                "runner": {"workers": 2},
                "columns": columns,
                "provider": provider(sim.url),
                "output": {"dir": str(tmp_path / "out")},
            }
        )
        default = rows_per_request(config.provider, [config.columns[1]])
        manifest = Build(config, ThreadExecutor(config)).run()
        line = batching.endpoint(sim.url, "sim-small").latency()
        sizes = [len(json.loads(r["answer"])["rows"]) for r in sim.state.requests()]
    (stage,) = [b for key, b in batching._registry.items() if key[:2] == ("batcher", sim.url)]
    assert isinstance(stage, Batcher)
    assert manifest.rows.delivered == 600 and manifest.llm.rows_filled >= 600
    assert default == 50 and sizes[:4] == [default] * 4  # before any answer: the budget
    assert sizes[4] == round(default * batching.EXPLORE_SHARE)  # a second size for the fit
    # The simulator's line, timed from each request's slot (2 chunk tasks share 8 slots).
    assert line is not None and line.trusted
    assert line.slope == pytest.approx(0.005, rel=0.3) and 0 < line.intercept < 1, line
    # The knee, where the rows' tokens take 90 % of a request's time: b*t*K = 9*(a + b*c0),
    # and at least what pays the instructions (p0 / (p + t)).
    completion, prompt = stage._completion.line(), stage._prompt.line()
    assert completion is not None and prompt is not None
    a, b, c0, t = line.intercept, line.slope, completion.intercept, completion.slope
    knee = max(9 * (a + b * c0) / (b * t), prompt.intercept / (prompt.slope + t))
    knee = min(default, max(1, math.ceil(knee)))
    chosen = stage.plan(default)
    assert chosen.bound == "latency" and abs(chosen.rows - knee) <= max(1, 0.15 * knee), (
        chosen,
        knee,
        line,
    )
    # The build followed the line: after the budget's requests, smaller ones (unless the
    # line put the knee at the budget); with the simulator's 0.05 s alone, far smaller.
    assert knee == default or np.mean(sizes[4:]) < 0.8 * default, (sizes, chosen)
    assert knee < default or a > 0.3, line


def test_retried_answers_size_max_tokens_but_do_not_time_the_endpoint() -> None:
    """Under a TPM limit nearly every request is retried (a 429 first): their sizes must still
    teach max_tokens (it kept asking ~4x too much, halving the requests a TPM limit admits),
    while their times, which hold the backoff, stay out of the latency line."""
    endpoint = Endpoint()
    batcher = Batcher(endpoint, ProviderConfig(max_concurrency=8))
    first = batcher.budget(10)
    for _ in range(batching.BUDGET_ANSWERS + 2):
        batcher.observe(10, C0 + T * 10, None, 60)  # retried: not timed
    assert batcher.budget(10) < first / 2
    assert endpoint.latency() is None
