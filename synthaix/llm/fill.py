"""Fill LLM columns for the rows of a chunk, K rows per request, until every row is valid or
has used up its re-asks. Instructions are paid once per request, not once per row. K is chosen
for speed from the answers (synthaix.llm.batching), up to what fits an answer."""

from __future__ import annotations

import json
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from synthaix import stopping
from synthaix.columns.llm import LlmColumn
from synthaix.columns.refs import resolve, row_contexts
from synthaix.errors import ProviderError
from synthaix.llm import batching
from synthaix.llm.client import LlmClient, estimate_tokens
from synthaix.llm.parse import ParsedAnswer, parse_answer, row_model
from synthaix.llm.prompts import render, rows_schema
from synthaix.llm.provider import ProviderConfig
from synthaix.llm.stats import LlmStats, StatsRecorder

MAX_ROWS_PER_REQUEST = 50


def stage_of(columns: Sequence[Any], start: int) -> list[LlmColumn]:
    """The run of consecutive llm columns from `start` that can share requests (none of them
    reads another of the run)."""
    stage: list[LlmColumn] = []
    for column in columns[start:]:
        names = {c.name for c in stage}
        if not isinstance(column, LlmColumn) or any(resolve(r, names) for r in column.references()):
            break
        stage.append(column)
    return stage


def rows_per_request(provider: ProviderConfig, columns: Sequence[LlmColumn]) -> int:
    """How many rows fit one answer: output budget / estimated tokens of one row."""
    if provider.rows_per_request:
        return provider.rows_per_request
    per_row = batching.row_tokens(columns)
    return max(1, min(MAX_ROWS_PER_REQUEST, int(provider.max_tokens * 0.6) // per_row))


def row_inputs(
    columns: Sequence[LlmColumn], values: dict[str, pa.Array], rows: Sequence[int]
) -> dict[int, dict[str, Any]]:
    """Each row's input to a request: its id, and each per-row column's instruction rendered
    from that row's values (a related table's fields nested: `{{ customers.tier }}`)."""
    per_row = [c for c in columns if c.per_row]
    names = sorted({resolve(r, values) or r for c in per_row for r in c.references()})
    contexts = row_contexts(names, values, len(values[names[0]]) if names else 0)
    return {i: {"id": i, **{c.name: c.instruction(contexts[i]) for c in per_row}} for i in rows}


@dataclass
class _Batch:
    ids: list[int]
    inputs: list[dict[str, Any]] | None  # None: new rows from scratch
    feedback: list[str]


class StageFiller:
    def __init__(
        self,
        client: LlmClient,
        description: str | None,
        columns: list[LlmColumn],
        recorder: StatsRecorder,
        build: str = "",
        order: int = 0,
    ) -> None:
        """`build`: the build the rows are for; once it is stopping, no request is sent.
        `order`: the chunk's index (earlier chunks' requests go first)."""
        self.client = client
        self.build = build
        self.order = order
        self.provider = client.provider
        self.description = description
        self.columns = columns
        self.recorder = recorder
        # The output budget estimate (or the fixed provider.rows_per_request): the most rows
        # of one request. Below it, the batcher picks the rows that answer fastest.
        self.size = rows_per_request(self.provider, columns)
        self.batcher = batching.batcher(self.provider, client.base_url, description, columns)

    def next_size(self) -> int:
        """Rows for the next request: chosen for speed, unless rows_per_request fixes them."""
        if self.provider.rows_per_request:
            return self.size
        return max(1, min(self.size, self.batcher.choose(self.size)))

    def fill(
        self, values: dict[str, pa.Array], rows: int, wanted: np.ndarray | None = None
    ) -> tuple[dict[str, pa.Array], np.ndarray]:
        """Arrays for the stage's columns (null where no valid value came back) and the mask of
        rows that got one. `wanted`: the rows to ask for (others, e.g. rows that already break
        a constraint, cost no request and stay null)."""
        targets = list(range(rows)) if wanted is None else np.flatnonzero(wanted).tolist()
        if any(c.per_row for c in self.columns):
            found = self._fill_per_row(values, targets)
        else:
            made = self._fill_new_rows(len(targets))
            found = {targets[i]: row for i, row in made.items()}
        if len(found) < len(targets):
            self.recorder.rejected(Counter({"gave_up": len(targets) - len(found)}))
        if not found and len(targets) >= UNUSABLE_ROWS:
            stats = self.recorder.snapshot()
            asked = f"{stats.requests:,} answers for the {len(targets):,} rows of a chunk"
            raise _unusable(stats, asked, self.columns)
        mask = np.array([i in found for i in range(rows)], dtype=bool)
        arrays = {}
        for column in self.columns:
            kind = column.json_schema().get("type", "string")
            raw = [found[i][column.name] if i in found else None for i in range(rows)]
            if kind in ("object", "array"):
                raw = [None if v is None else json.dumps(v, ensure_ascii=False) for v in raw]
            arrays[column.name] = pa.array(raw, type=column.arrow_type())
        self.recorder.filled(int(mask.sum()))
        return arrays, mask

    def _fill_per_row(self, values: dict[str, pa.Array], rows: list[int]) -> dict[int, dict]:
        inputs = row_inputs(self.columns, values, rows)
        found: dict[int, dict] = {}
        feedback: dict[int, list[str]] = {}
        asked: Counter[int] = Counter()
        waiting = deque(rows)

        def next_batch(idle: bool) -> _Batch | None:
            # Full batches go at once; a partial one (re-asks) only when capacity is idle (no
            # request of this stage in flight, or free slots that no other chunk task wants):
            # while other chunks keep the slots busy, re-asked rows share a request instead
            # of paying the instructions again; otherwise they go at once, not a round later.
            if not waiting:
                return None
            size = self.next_size()
            if len(waiting) < size and not idle:
                return None
            ids = [waiting.popleft() for _ in range(min(size, len(waiting)))]
            notes = [f for i in ids for f in feedback.get(i, [])][:10]
            return _Batch(ids, [inputs[i] for i in ids], notes)

        def done(batch: _Batch, answer: ParsedAnswer) -> None:
            for row in answer.rows:
                found[row.pop("id")] = row
            for i in batch.ids:
                if i in found:
                    continue
                feedback.setdefault(i, []).extend(answer.feedback[:2])
                asked[i] += 1
                if asked[i] <= self.provider.max_reasks:
                    waiting.append(i)

        self._pipeline(next_batch, done, len(rows))
        return found

    def _fill_new_rows(self, rows: int) -> dict[int, dict]:
        made: list[dict] = []
        seen: set[str] = set()
        budget = [rows * (self.provider.max_reasks + 1)]  # rows that may be asked for
        outstanding = [0]
        asked, got = [0], [0]

        def next_batch(idle: bool) -> _Batch | None:
            # Count rows in flight at the share that has been arriving valid, so losses to
            # broken or short answers are asked for early instead of in a slow last round.
            expected_yield = max(0.5, got[0] / asked[0]) if asked[0] else 1.0
            need = rows - len(made) - int(outstanding[0] * expected_yield)
            if need <= 0 or budget[0] <= 0:
                return None
            count = min(self.next_size(), need, budget[0])
            budget[0] -= count
            outstanding[0] += count
            return _Batch(list(range(count)), None, [])

        def done(batch: _Batch, answer: ParsedAnswer) -> None:
            outstanding[0] -= len(batch.ids)
            asked[0] += len(batch.ids)
            got[0] += len(answer.rows)
            duplicates: Counter[str] = Counter()
            for row in answer.rows:
                key = json.dumps(row, sort_keys=True, ensure_ascii=False).casefold()
                if key in seen:
                    duplicates["duplicate"] += 1
                    continue
                seen.add(key)
                made.append(row)
            self.recorder.rejected(duplicates)

        self._pipeline(next_batch, done, rows)
        return dict(enumerate(made[:rows]))

    def _pipeline(
        self,
        next_batch: Callable[[bool], _Batch | None],
        done: Callable[[_Batch, ParsedAnswer], None],
        rows: int,
    ) -> None:
        """Keep up to max_concurrency requests of this stage in flight; hand each answer to
        `done` as it arrives and refill at once, so re-asks never wait for a whole round."""
        limit = self.provider.max_concurrency
        answers = valid = 0
        with ThreadPoolExecutor(limit, thread_name_prefix="synthaix-llm") as pool:
            running: set[Future] = set()
            while True:
                while len(running) < limit:
                    stopping.check(self.build)
                    batch = next_batch(not running or self.client.idle())
                    if batch is None:
                        break
                    running.add(pool.submit(self._ask, batch))
                if not running:
                    return
                finished, running = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    batch, answer = future.result()
                    valid += len(answer.rows)
                    # First asks only: a re-ask's feedback or a larger budget may still help.
                    answers += not batch.feedback and not answer.truncated
                    done(batch, answer)
                unusable = not valid and answers >= UNUSABLE_ANSWERS and rows >= UNUSABLE_ROWS
                if unusable:  # and what is in flight ends
                    asked = f"the first {answers} answers of a chunk"
                    raise _unusable(self.recorder.snapshot(), asked, self.columns)

    def _ask(self, batch: _Batch) -> tuple[_Batch, ParsedAnswer]:
        count, per_row = len(batch.ids), batch.inputs is not None
        schema = rows_schema(self.columns, count, with_ids=per_row)
        in_prompt = self.client.mode != "json_schema"
        messages = render(
            self.description, self.columns, batch.inputs, count, in_prompt, batch.feedback
        )
        # Timed without the waits the client reports: for a place among its max_concurrency,
        # and for the pacer or a backoff.
        tap, began = _Tap(self.recorder), time.perf_counter()
        budget = lambda: self.batcher.budget(count)  # noqa: E731 (asked again as it waits)
        completion = self.client.complete(
            messages, schema, budget, tap, self.build, order=self.order
        )
        seconds = max(0.0, time.perf_counter() - began - tap.waited_seconds)
        self.recorder.asked(count)
        truncated = completion.finish_reason == "length"
        tokens = tap.completion_tokens
        tokens = estimate_tokens(completion.text) if tokens is None else tokens
        # A retried request's time holds the backoff: its size counts, its time does not (under
        # a TPM limit almost every request is retried, and max_tokens never learned).
        timed = None if tap.retried else seconds
        self.batcher.observe(count, tokens, timed, tap.prompt_tokens, truncated)
        if truncated and completion.max_tokens >= self.provider.max_tokens:
            # Not our budget but the model's own limit: at most half of these rows fit an answer.
            self.size = max(1, min(self.size, count // 2))
        model = row_model(self.columns, with_id=per_row)
        expected = set(batch.ids) if per_row else None
        answer = parse_answer(completion.text, model, expected, truncated)
        answer.truncated = truncated
        if answer.rejected.pop("malformed_json", 0):
            answer.repaired = True  # nothing usable: every row of the batch is lost to it
        absent = count - len(answer.rows) - sum(answer.rejected.values())
        if absent > 0:  # rows lost to broken JSON, or a short answer (one cut at max_tokens)
            broken = answer.repaired and not truncated
            answer.rejected["malformed_json" if broken else "not_returned"] += absent
        self.recorder.rejected(answer.rejected)
        return batch, answer


class _Tap:
    """The chunk's recorder as one request sees it: everything passes through, and the tap
    keeps the answer's usage, whether the request was retried and how long it waited."""

    def __init__(self, recorder: StatsRecorder) -> None:
        self._recorder = recorder
        self.prompt_tokens: int | None = None
        self.completion_tokens: int | None = None
        self.retried = False
        self.waited_seconds = 0.0

    def request(self, prompt_tokens: int, completion_tokens: int, *args: Any, **kw: Any) -> None:
        self.prompt_tokens, self.completion_tokens = prompt_tokens, completion_tokens
        self._recorder.request(prompt_tokens, completion_tokens, *args, **kw)

    def retry(self, *args: Any, **kw: Any) -> None:
        self.retried = True
        self._recorder.retry(*args, **kw)

    def waited(self, seconds: float, *args: Any, **kw: Any) -> None:
        self.waited_seconds += seconds
        self._recorder.waited(seconds, *args, **kw)

    def queued(self, seconds: float) -> None:
        self.waited_seconds += seconds

    def __getattr__(self, name: str) -> Any:
        return getattr(self._recorder, name)


UNUSABLE_ROWS = 5  # a chunk of this many rows without one valid value stops the build
UNUSABLE_ANSWERS = 4  # as do a chunk's first answers without one (re-asks would pay again)


def _unusable(stats: LlmStats, asked: str, columns: list[LlmColumn]) -> ProviderError:
    """Not one row of a chunk got a valid value after every re-ask: the model's answers are
    unusable, and the build would pay for round after round of them (1,183 requests for 300
    rows of an endpoint that answered prose)."""
    causes = {c: n for c, n in stats.rejected_rows.items() if c != "gave_up"}
    said = ", ".join(f"{c} {n:,}" for c, n in sorted(causes.items(), key=lambda kv: -kv[1]))
    unparsable = max(causes, key=causes.__getitem__, default="") in (
        "malformed_json",
        "not_returned",
    )
    names = ", ".join(c.name for c in columns)
    return ProviderError(
        f"no valid value of the llm column{'s' * (len(columns) > 1)} {names} in {asked} "
        f"(rejected: {said or 'none'}): the model's answers are unusable",
        cause="unusable_answers",
        hint="the answers are no JSON rows: check provider.model, or try structured_output: "
        "json_schema or tools"
        if unparsable
        else "the answers fail the llm columns' checks (enum, pattern, max_length, schema): "
        "loosen them, or try another model",
    )
