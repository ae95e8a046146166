"""Rows per request chosen for speed, from what the endpoint's answers show.

The model. A request for K rows is answered in `latency(K) = a + b * tokens(K)` seconds, where
`tokens(K) = c0 + t * K` are its completion tokens (t: tokens per row, c0: the JSON wrapper).
`a` and `b` belong to the endpoint+model and are shared by every chunk task of the process;
`t`, `c0` and the prompt's `p0 + p * K` tokens (p0: the instructions, paid once per request;
p: one row's input) belong to a stage's columns. With C requests in flight and M the
max_tokens each request asks for:

    rows/s(K) = min( C * K / latency(K),             latency bound
                     RPM * K / 60,                   requests per minute
                     TPM / 60 * K / (p0 + p*K + M) ) tokens per minute

Tokens per minute are counted as OpenAI, Azure and the simulator count them when they admit a
request (and as the client paces them): the prompt plus max_tokens, not what the answer used.
Every term grows with K, so "the most rows/s" alone always says "the largest K that fits the
answer". What differs is how much each bound gains from it:
- requests per minute: linearly, each request carries K rows; as large as fits (the output
  budget), or until the latency bound takes over;
- tokens per minute: a request is charged p0 + p*K + M however many rows it carries, so the
  tokens charged per row, (p0 + M) / K + p, fall almost as 1/K: as for requests per minute, more
  rows per request. (Were only the tokens used counted, a row's own tokens would not depend on
  K and a larger K would only spread the instructions p0; the rule below would stop once p0/K
  is small beside a row's tokens.);
- latency: by paying `a` over more rows, towards C / (b * t) rows/s; but a larger request takes
  longer, its loss to a broken or cut-off answer costs more rows, and a chunk's last requests
  leave slots idle for longer.

The rule: the smallest K from which 10 % more rows per request would bring less than 1 % more
rows/s (an elasticity of ELASTICITY = 0.1): the knee of whichever bound binds, and the output
budget estimate when a per-minute bound binds up to it. When only latency binds, that is
`b * t * K >= 9 * (a + b * c0)`: the rows' tokens take 90 % of a request's time. K stays between
1 and the output budget estimate (`rows_per_request` in fill.py), and the instructions never
cost more tokens than the rows they are paid for (K >= p0 / (p + t)).

Estimates. `a`, `b` by least squares (seconds on completion tokens) over the last PER_CLASS
answers of each size class (sizes within a factor of 2, so answers of the size chosen do not push
out the other sizes the slope rests on), refitted without the answers whose residual is beyond
3 robust sigmas (a slow answer, a queueing spike); `b` is trusted only after MIN_ANSWERS
answers of at least two sizes a third apart. Until then the choice explores: once two answers
of the budget's size came, requests ask for a third of it, so the fit sees two sizes. The
first requests, before any answer, use the budget estimate, as before.

Who feeds it. The filler times each answered request and feeds `Batcher.observe(rows,
completion_tokens, seconds)`. When more requests are inside the client than it has slots, a
request first waits for one (chunk tasks share the client's max_concurrency), and that wait is
no latency: a request is timed less the waits the client reports, for its place
(`StatsRecorder.queued`) and for the pacer or a backoff (`StatsRecorder.waited`). Requests that
were retried are not timed (their time holds the backoff), but their sizes count. A pacer that
times the HTTP request alone feeds `Endpoint.observe(tokens, seconds, exact=True)`; from then
on the fillers' coarser times are ignored. The pacer sets the limits it observes with
`Endpoint.limits(rpm=, tpm=, concurrency=)` (C is that concurrency); the provider's configured
`rpm`, `tpm` and `max_concurrency` stay upper bounds, and the only ones until the pacer sets any.
`provider.rows_per_request` overrides all of this.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from synthaix.columns.llm import LlmColumn
from synthaix.llm.provider import ProviderConfig

ELASTICITY = 0.1  # stop growing K when 1 % more rows per request brings < 0.1 % more rows/s
PER_CLASS = 32  # answers a fit keeps of each size class (sizes within a factor of 2)
MIN_ANSWERS = 6  # before a fitted slope is trusted
MIN_SPREAD = 1 / 3  # how far apart two sizes seen must be, before a fitted slope is trusted
EXPLORE_SHARE = 1 / 3  # the size explored, as a share of the budget estimate


@dataclass(frozen=True)
class Line:
    """y = intercept + slope * x; `trusted`: the data had enough points at distinct x."""

    intercept: float
    slope: float
    trusted: bool

    def __call__(self, x: float) -> float:
        return self.intercept + self.slope * x


class LineFit:
    """y on x by least squares over recent points, robust to outliers (refitted without the
    points beyond 3 robust sigmas, up to 3 times). Points are kept by size class (x within a
    factor of 2), the last PER_CLASS of each: the window moves with each class's answers, and
    the fit keeps its lever once two sizes were seen, even when later answers all have the size
    chosen. Not thread-safe: its owner locks."""

    def __init__(self, per_class: int = PER_CLASS) -> None:
        self._classes: dict[int, deque[tuple[float, float]]] = {}
        self._per_class = per_class
        self._line: Line | None = None

    @property
    def points(self) -> list[tuple[float, float]]:
        return [point for kept in self._classes.values() for point in kept]

    def __len__(self) -> int:
        return sum(map(len, self._classes.values()))

    def add(self, x: float, y: float) -> None:
        if math.isfinite(x) and math.isfinite(y) and x >= 0 and y >= 0:
            size = int(math.log2(x + 1))
            kept = self._classes.setdefault(size, deque(maxlen=self._per_class))
            kept.append((float(x), float(y)))
            self._line = None

    def spread(self) -> bool:
        """Two sizes seen: the medians of x of the classes with 2 points or more differ by
        MIN_SPREAD of the larger at least."""
        medians = [
            np.median([x for x, _ in kept]) for kept in self._classes.values() if len(kept) > 1
        ]
        high = max(medians, default=0.0)
        return len(medians) > 1 and high > 0 and 1 - min(medians) / high >= MIN_SPREAD

    def line(self) -> Line | None:
        """The fit, None before any point. Slope and intercept are clamped at >= 0 (more
        tokens never answer faster); with no spread in x, all of y is the intercept."""
        if not self._classes:
            return None
        if self._line is None:
            x, y = np.array(self.points).T
            if not self.spread():
                self._line = Line(float(np.median(y)), 0.0, False)
            else:
                line = _least_squares(x, y)
                for _ in range(3):  # a slow answer pulls the line up: fit again without it
                    residuals = y - line(x)
                    off = np.abs(residuals - np.median(residuals))
                    keep = off <= 3 * 1.4826 * float(np.median(off))
                    if keep.all() or keep.sum() < max(2, len(x) // 2) or not np.median(off):
                        break
                    line = _least_squares(x[keep], y[keep])
                self._line = Line(line.intercept, line.slope, len(x) >= MIN_ANSWERS)
        return self._line


def _least_squares(x: np.ndarray, y: np.ndarray) -> Line:
    mx, my = x.mean(), y.mean()
    sxx = float(((x - mx) ** 2).sum())
    slope = float(((x - mx) * (y - my)).sum()) / sxx if sxx > 0 else 0.0
    if slope <= 0:
        return Line(float(my), 0.0, True)
    intercept = float(my - slope * mx)
    if intercept < 0:  # through the origin instead
        return Line(0.0, float((x * y).sum() / (x * x).sum()), True)
    return Line(intercept, slope, True)


class Endpoint:
    """What this process has seen of one endpoint+model: its latency line (seconds on
    completion tokens) and the limits the pacer observed."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._latency = LineFit()
        self._exact = False  # the pacer feeds times of the HTTP request alone
        self.rpm: float | None = None
        self.tpm: float | None = None
        self.concurrency: float | None = None

    def limits(
        self, rpm: float | None = None, tpm: float | None = None, concurrency: float | None = None
    ) -> None:
        """The limits the pacer observes now (e.g. from x-ratelimit-* headers, its adaptive
        concurrency). None leaves a limit as it was; 0 forgets it."""
        with self._lock:
            if rpm is not None:
                self.rpm = rpm or None
            if tpm is not None:
                self.tpm = tpm or None
            if concurrency is not None:
                self.concurrency = concurrency or None

    def observe(self, completion_tokens: float, seconds: float, exact: bool = False) -> None:
        """One answer: its completion tokens and the seconds it took. `exact`: timed around
        the HTTP request alone (by the pacer); once such times come, others are ignored."""
        with self._lock:
            if exact and not self._exact:
                self._exact = True
                self._latency = LineFit()
            if exact or not self._exact:
                self._latency.add(completion_tokens, seconds)

    def latency(self) -> Line | None:
        with self._lock:
            return self._latency.line()

    def in_flight(self, provider: ProviderConfig) -> int:
        """C: the client's concurrency cap (the pacer's, at most the configured one)."""
        with self._lock:
            return max(1, int(min(self.concurrency or math.inf, provider.max_concurrency)))

    def bounds(self, provider: ProviderConfig) -> tuple[float | None, float | None]:
        """Requests and tokens per minute: the lower of observed and configured."""
        with self._lock:
            return _lower(self.rpm, provider.rpm), _lower(self.tpm, provider.tpm)


def _lower(*values: float | None) -> float | None:
    known = [v for v in values if v]
    return min(known) if known else None


@dataclass(frozen=True)
class Choice:
    """A choice of rows per request and why: `bound` is what limits rows/s at `rows`
    (latency, rpm, tpm), or how the choice was made (budget: no answers yet; exploring)."""

    rows: int
    bound: str
    rows_per_second: float | None = None


BUDGET_ANSWERS = 4  # answers seen before max_tokens follows them
MARGIN_SIGMAS = 3.0  # max_tokens covers an answer this many standard deviations above the mean
BUDGET_PAD = 16  # tokens on top: the JSON around the rows


def answer_budget(provider: ProviderConfig, columns: Sequence[LlmColumn], rows: int) -> int:
    """max_tokens of a request for `rows` rows before any answer: the schema's estimate with a
    quarter to spare, not the model's whole limit. Providers charge max_tokens against tokens
    per minute when they admit a request (OpenAI, Azure): 4,096 a request would let a 60k TPM
    limit serve 14 a minute. An answer cut short (finish_reason length) keeps its whole rows;
    the others are asked again."""
    return min(provider.max_tokens, math.ceil(1.25 * rows * row_tokens(columns)) + 64)


def row_tokens(columns: Sequence[LlmColumn]) -> int:
    """A generous estimate of one answer row's tokens (the longest strings allowed)."""
    per_row = 8  # braces, id, separators
    for column in columns:
        schema = column.json_schema()
        kind = schema.get("type", "string")
        if "enum" in schema or kind in ("integer", "number", "boolean"):
            per_row += 6
        elif kind == "string":
            per_row += min(schema.get("maxLength", 240), 2000) // 4 + 4
        else:
            per_row += 80
    return per_row


class Batcher:
    """Rows per request for one stage (a set of llm columns) at one endpoint+model: the sizes
    of its answers, and the choice. Shared by the chunk tasks of the process, thread-safe."""

    def __init__(
        self, endpoint: Endpoint, provider: ProviderConfig, columns: Sequence[LlmColumn] = ()
    ) -> None:
        self.endpoint = endpoint
        self.provider = provider
        self.columns = list(columns)
        self._lock = threading.Lock()
        self._completion = LineFit()  # completion tokens on rows asked
        self._prompt = LineFit()  # prompt tokens on rows asked
        self._cut = 0  # answers cut short at max_tokens

    def limits(
        self, rpm: float | None = None, tpm: float | None = None, concurrency: float | None = None
    ) -> None:
        self.endpoint.limits(rpm, tpm, concurrency)

    def observe(
        self,
        rows: int,
        completion_tokens: int,
        seconds: float | None,
        prompt_tokens: int | None = None,
        truncated: bool = False,
    ) -> None:
        """One answered request for `rows` rows, and how long it took (None: not timed, a
        retried one). A `truncated` answer (finish_reason length) times the endpoint but says
        nothing of a row's size."""
        if seconds is not None:
            self.endpoint.observe(completion_tokens, seconds)
        if truncated or rows < 1:
            with self._lock:
                self._cut += truncated
            return
        with self._lock:
            self._completion.add(rows, completion_tokens)
            if prompt_tokens is not None:
                self._prompt.add(rows, prompt_tokens)

    def choose(self, default_k: int) -> int:
        return self.plan(default_k).rows

    def budget(self, k: int) -> int:
        """max_tokens for a request of `k` rows. Providers charge max_tokens against tokens per
        minute, so it follows the answers once BUDGET_ANSWERS are in: k rows at the mean tokens
        a row took, plus MARGIN_SIGMAS standard deviations of an answer of k rows (rows vary
        independently: sigma grows as sqrt(k)), more while few answers are in and one more for
        each answer cut short so far, and BUDGET_PAD. Before, the schema's estimate
        (answer_budget), doubled for each answer cut short. An answer cut short loses only the
        rows it did not finish."""
        return self._budgets()(k)

    def _budgets(self) -> Callable[[int], int]:
        """`budget` as a function of k, from the answers seen now (computed once for the
        many sizes `plan` weighs)."""
        with self._lock:
            points, cut = self._completion.points, self._cut
        ceiling = self.provider.max_tokens
        if len(points) < BUDGET_ANSWERS:
            if not self.columns:
                return lambda k: ceiling
            # Doubled for each answer cut short: rows longer than the schema suggests (text
            # of fewer characters per token) must still fit before any answer is whole.
            grow = 2 ** min(cut, 8)
            return lambda k: min(ceiling, answer_budget(self.provider, self.columns, k) * grow)
        rows, tokens = np.array(points).T
        per_row = float(tokens.sum() / rows.sum())
        sigma = math.sqrt(float(np.mean((tokens - per_row * rows) ** 2 / rows)))
        sigma = max(sigma, 0.05 * per_row)  # answers of equal length so far prove little
        z = MARGIN_SIGMAS + 8 / len(points) + min(cut, 6)
        return lambda k: min(
            ceiling, math.ceil(per_row * k + z * sigma * math.sqrt(k) + BUDGET_PAD)
        )

    def plan(self, default_k: int) -> Choice:
        """Rows for the next request, at most `default_k` (the output budget estimate)."""
        budget = max(1, int(default_k))
        with self._lock:
            completion, prompt = self._completion.line(), self._prompt.line()
        latency = self.endpoint.latency()
        if budget == 1 or completion is None or latency is None:
            return Choice(budget, "budget")
        if not latency.trusted:  # a second size, once two answers of the budget's came
            with self._lock:
                large = sum(rows > budget / 2 for rows, _ in self._completion.points)
            small = max(1, round(budget * EXPLORE_SHARE))
            return Choice(small if large >= 2 else budget, "exploring")
        # Sizes of one K only: all tokens per row (no instructions to pay over more rows).
        if not completion.trusted:
            completion = Line(0.0, completion(0) / self._mean_rows(), False)
        if prompt is not None and not prompt.trusted:
            prompt = Line(0.0, prompt(0) / self._mean_rows(), False)
        prompt = prompt or Line(0.0, 0.0, False)
        concurrency = self.endpoint.in_flight(self.provider)
        rpm, tpm = self.endpoint.bounds(self.provider)
        budgets = self._budgets()

        def rates(k: int) -> dict[str, float]:
            tokens = completion(k)
            out = {"latency": concurrency * k / max(latency(tokens), 1e-6)}
            if rpm:
                out["rpm"] = rpm * k / 60
            if tpm:  # charged at admission: the prompt and max_tokens
                charged = prompt(k) + max(budgets(k), tokens)
                out["tpm"] = tpm / 60 * k / charged
            return out

        chosen = budget
        for k in range(1, budget):
            if min(rates(k + 1).values()) <= min(rates(k).values()) * ((k + 1) / k) ** ELASTICITY:
                chosen = k
                break
        per_row = prompt.slope + completion.slope
        if prompt.trusted and per_row > 0:  # the instructions cost at most the rows' tokens
            chosen = max(chosen, min(budget, math.ceil(prompt.intercept / per_row)))
        at = rates(chosen)
        bound = min(at, key=at.__getitem__)
        return Choice(chosen, bound, at[bound])

    def _mean_rows(self) -> float:
        with self._lock:
            return max(1.0, float(np.mean([x for x, _ in self._completion.points])))


_registry: dict[tuple[str, ...], Endpoint | Batcher] = {}
_registry_lock = threading.Lock()


def endpoint(base_url: str, model: str) -> Endpoint:
    """The process's record of one endpoint+model (the pacer feeds it limits and times)."""
    key = ("endpoint", base_url, model)
    with _registry_lock:
        found = _registry.setdefault(key, Endpoint())
    assert isinstance(found, Endpoint)
    return found


def batcher(
    provider: ProviderConfig, base_url: str, description: str | None, columns: Sequence[LlmColumn]
) -> Batcher:
    """The process's batcher of one stage at one endpoint+model."""
    shape = json.dumps(
        [description, [c.model_dump(mode="json", by_alias=True) for c in columns]],
        sort_keys=True,
        default=str,
    )
    digest = hashlib.blake2b(shape.encode(), digest_size=16).hexdigest()
    key = ("batcher", base_url, provider.model, digest)
    place = endpoint(base_url, provider.model)
    with _registry_lock:
        found = _registry.setdefault(key, Batcher(place, provider, columns))
        assert isinstance(found, Batcher)
        found.provider = provider  # the latest run's configured bounds
    return found


def forget() -> None:
    """Drop everything learnt (for tests)."""
    with _registry_lock:
        _registry.clear()
