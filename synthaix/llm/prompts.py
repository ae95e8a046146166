"""Prompt templates as data: pure functions from a batch to chat messages.

PROMPT_VERSION goes into cache keys, so editing a prompt never reuses stale results.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from synthaix.columns.llm import LlmColumn

PROMPT_VERSION = "1"

SYSTEM = (
    "You generate realistic, varied synthetic data for a dataset.{about} "
    'Answer with JSON only: an object {{"rows": [...]}} and nothing else. '
    "Every value must follow its field's type and constraints. Avoid repeating yourself: "
    "each row should read as written by a different person."
)


def rows_schema(columns: Sequence[LlmColumn], count: int, with_ids: bool) -> dict[str, Any]:
    """JSON Schema of an answer: {"rows": [row, ...]} with exactly `count` rows."""
    properties: dict[str, Any] = {"id": {"type": "integer"}} if with_ids else {}
    row = closed_object(properties | {c.name: c.json_schema() for c in columns})
    return closed_object(
        {"rows": {"type": "array", "items": row, "minItems": count, "maxItems": count}}
    )


def closed_object(properties: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


def render(
    description: str | None,
    columns: Sequence[LlmColumn],
    inputs: Sequence[dict[str, Any]] | None,
    count: int,
    schema_in_prompt: bool,
    feedback: Sequence[str] = (),
) -> list[dict[str, str]]:
    """Messages asking for `count` rows: one per input row when `inputs` is given (each input
    carries an `id` and, for per-row columns, its own instruction), else `count` new rows."""
    about = f" The dataset: {description.strip()}" if description else ""
    lines = ["Fields:", *map(_field, columns), ""]
    if inputs:
        lines.append(
            f"Write one row for each of these {len(inputs)} inputs, in the same order, "
            "copying its id:"
        )
        lines += _fence(json.dumps(list(inputs), ensure_ascii=False))
    else:
        lines.append(f"Write exactly {count} new rows.")
    if feedback:
        lines += ["", "Your previous answer had problems; fix them:", *[f"- {f}" for f in feedback]]
    if schema_in_prompt:
        schema = rows_schema(columns, count, with_ids=bool(inputs))
        lines += ["", "Answer with JSON matching this schema:", *_fence(json.dumps(schema))]
    return [
        {"role": "system", "content": SYSTEM.format(about=about)},
        {"role": "user", "content": "\n".join(lines)},
    ]


def _fence(text: str) -> list[str]:
    return ["```json", text, "```"]


def _field(column: LlmColumn) -> str:
    schema = column.json_schema()
    parts = [schema.get("type", "string")]
    if "maxLength" in schema:
        parts.append(f"at most {schema['maxLength']} characters")
    if "enum" in schema:
        parts.append("one of " + ", ".join(map(str, schema["enum"])))
    if "pattern" in schema:
        parts.append(f"matching /{schema['pattern']}/")
    if column.description and column.prompt:
        parts.append(column.description)
    rule = "instruction given per input row" if column.per_row else column.instruction()
    return f"- {column.name} ({'; '.join(parts)}): {rule}"
