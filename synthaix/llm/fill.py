"""Fill LLM columns for the rows of a chunk, K rows per request, until every row is valid or
has used up its re-asks. Instructions are paid once per request, not once per row."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from synthaix.columns.llm import LlmColumn
from synthaix.llm.client import LlmClient
from synthaix.llm.parse import parse_answer, row_model
from synthaix.llm.prompts import render, rows_schema
from synthaix.llm.provider import ProviderConfig
from synthaix.llm.stats import StatsRecorder

MAX_ROWS_PER_REQUEST = 50


def stage_of(columns: Sequence[Any], start: int) -> list[LlmColumn]:
    """The run of consecutive llm columns from `start` that can share requests (none of them
    reads another of the run)."""
    stage: list[LlmColumn] = []
    for column in columns[start:]:
        if not isinstance(column, LlmColumn) or column.references() & {c.name for c in stage}:
            break
        stage.append(column)
    return stage


def rows_per_request(provider: ProviderConfig, columns: Sequence[LlmColumn]) -> int:
    """How many rows fit one answer: output budget / estimated tokens of one row."""
    if provider.rows_per_request:
        return provider.rows_per_request
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
    return max(1, min(MAX_ROWS_PER_REQUEST, int(provider.max_tokens * 0.6) // per_row))


@dataclass
class _Batch:
    ids: list[int]
    feedback: list[str] = field(default_factory=list)


class StageFiller:
    def __init__(
        self,
        client: LlmClient,
        description: str | None,
        columns: list[LlmColumn],
        recorder: StatsRecorder,
    ) -> None:
        self.client = client
        self.provider = client.provider
        self.description = description
        self.columns = columns
        self.recorder = recorder
        self.size = rows_per_request(self.provider, columns)

    def fill(
        self, values: dict[str, pa.Array], rows: int
    ) -> tuple[dict[str, pa.Array], np.ndarray]:
        """Arrays for the stage's columns (null where no valid value came back) and the mask of
        rows that got one."""
        if any(c.per_row for c in self.columns):
            found = self._fill_per_row(values, rows)
        else:
            found = self._fill_new_rows(rows)
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

    # -- rows conditioned on their own inputs -------------------------------------------------
    def _fill_per_row(self, values: dict[str, pa.Array], rows: int) -> dict[int, dict]:
        names = set().union(*(c.references() for c in self.columns))
        context = {name: values[name].to_pylist() for name in names}
        inputs = []
        for i in range(rows):
            row = {name: context[name][i] for name in names}
            item: dict[str, Any] = {"id": i}
            item.update({c.name: c.instruction(row) for c in self.columns if c.per_row})
            inputs.append(item)
        model = row_model(self.columns, with_id=True)
        found: dict[int, dict] = {}
        feedback: dict[int, list[str]] = {}
        pending = list(range(rows))
        for _ in range(self.provider.max_reasks + 1):
            if not pending:
                break
            batches = [
                _Batch(pending[s : s + self.size]) for s in range(0, len(pending), self.size)
            ]
            for batch in batches:
                batch.feedback = [f for i in batch.ids for f in feedback.get(i, [])][:10]
            for batch, answer in self._ask(batches, lambda b: [inputs[i] for i in b.ids], model):
                for row in answer.rows:
                    found[row.pop("id")] = row
                for message in answer.feedback:
                    for i in batch.ids:
                        if i not in found:
                            feedback.setdefault(i, []).append(message)
            pending = [i for i in pending if i not in found]
        if pending:
            self.recorder.rejected(Counter({"gave_up": len(pending)}))
        return found

    # -- rows made from scratch (whole-row mode) ---------------------------------------------
    def _fill_new_rows(self, rows: int) -> dict[int, dict]:
        model = row_model(self.columns, with_id=False)
        made: list[dict] = []
        seen: set[str] = set()
        for _ in range(self.provider.max_reasks + 1):
            missing = rows - len(made)
            if missing <= 0:
                break
            sizes = [min(self.size, missing - s) for s in range(0, missing, self.size)]
            batches = [_Batch(list(range(n))) for n in sizes]
            for _, answer in self._ask(batches, None, model):
                duplicates = 0
                for row in answer.rows:
                    key = json.dumps(row, sort_keys=True, ensure_ascii=False).lower()
                    if key in seen:
                        duplicates += 1
                        continue
                    seen.add(key)
                    made.append(row)
                if duplicates:
                    self.recorder.rejected(Counter({"duplicate": duplicates}))
        if len(made) < rows:
            self.recorder.rejected(Counter({"gave_up": rows - len(made)}))
        return dict(enumerate(made[:rows]))

    # -- requests ----------------------------------------------------------------------------
    def _ask(self, batches: list[_Batch], inputs_of: Any, model: Any) -> list[tuple[_Batch, Any]]:
        def one(batch: _Batch) -> tuple[_Batch, Any]:
            inputs = inputs_of(batch) if inputs_of else None
            count = len(batch.ids)
            schema = rows_schema(self.columns, count, with_ids=inputs is not None)
            in_prompt = self.client.mode != "json_schema"
            messages = render(
                self.description, self.columns, inputs, count, in_prompt, batch.feedback
            )
            completion = self.client.complete(
                messages, schema, self.provider.max_tokens, self.recorder
            )
            if completion.finish_reason == "length" and self.size > 1:
                self.size = max(1, self.size // 2)  # answers are longer than estimated
            expected = set(batch.ids) if inputs is not None else None
            answer = parse_answer(completion.text, model, expected)
            if answer.rejected.pop("malformed_json", 0):
                answer.repaired = True  # nothing usable: every row of the batch is lost to it
            absent = count - len(answer.rows) - sum(answer.rejected.values())
            if absent > 0:  # rows lost to broken JSON, or a short answer
                answer.rejected["malformed_json" if answer.repaired else "not_returned"] += absent
            self.recorder.rejected(answer.rejected)
            return batch, answer

        workers = min(self.provider.max_concurrency, len(batches))
        if workers <= 1:
            return [one(b) for b in batches]
        with ThreadPoolExecutor(workers, thread_name_prefix="synthaix-llm") as pool:
            return list(pool.map(one, batches))
