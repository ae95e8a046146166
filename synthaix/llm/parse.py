"""Defensive parsing of LLM answers: find the JSON, repair it, validate each row on its own."""

from __future__ import annotations

import contextlib
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from functools import cache
from typing import Annotated, Any, Literal

import json_repair
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, create_model

from synthaix.columns.llm import LlmColumn

_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.DOTALL)


def extract_payload(text: str) -> tuple[Any | None, bool]:
    """The JSON value in an answer, tolerating fences, chatter and truncation, and whether it
    needed repair; (None, True) if hopeless."""
    fenced = _FENCE.search(text)
    candidate = fenced.group(1) if fenced else text
    starts = [i for i in (candidate.find("{"), candidate.find("[")) if i >= 0]
    if not starts:
        return None, True
    candidate = candidate[min(starts) :].strip()
    with contextlib.suppress(ValueError):  # whole, if followed by chatter ("Hope this helps")
        return json.JSONDecoder().raw_decode(candidate)[0], False
    try:
        repaired = json_repair.loads(candidate)
    except Exception:  # json-repair raises assorted errors on hopeless input
        return None, True
    return (repaired if isinstance(repaired, dict | list) and repaired else None), True


def row_model(columns: list[LlmColumn], with_id: bool) -> type[BaseModel]:
    """A pydantic model of one answer row, from the columns' JSON schemas."""
    key = tuple((c.name, json.dumps(c.json_schema(), sort_keys=True)) for c in columns)
    return _row_model(key, with_id)


@cache
def _row_model(key: tuple[tuple[str, str], ...], with_id: bool) -> type[BaseModel]:
    fields: dict[str, Any] = {"id": (int, ...)} if with_id else {}
    fields |= {name: (_python_type(json.loads(schema)), ...) for name, schema in key}
    return create_model(  # type: ignore[call-overload]
        "AnswerRow", __config__=ConfigDict(extra="ignore"), **fields
    )


def _python_type(schema: dict[str, Any]) -> Any:
    if schema.get("enum"):
        return Literal[tuple(schema["enum"])]
    match schema.get("type", "string"):
        case "integer":
            return Annotated[int, Field(ge=schema.get("minimum"), le=schema.get("maximum"))]
        case "number":
            return Annotated[float, Field(ge=schema.get("minimum"), le=schema.get("maximum"))]
        case "boolean":
            return bool
        case "object":
            return dict[str, Any]
        case "array":
            return list[Any]
    constraints = StringConstraints(
        strip_whitespace=True,
        min_length=max(1, int(schema.get("minLength") or 1)),
        max_length=schema.get("maxLength"),
        pattern=schema.get("pattern"),
    )
    return Annotated[str, constraints]


@dataclass
class ParsedAnswer:
    rows: list[dict[str, Any]] = field(default_factory=list)
    rejected: Counter[str] = field(default_factory=Counter)
    feedback: list[str] = field(default_factory=list)
    repaired: bool = False  # the JSON was broken (truncated, fenced badly, ...) and mended
    truncated: bool = False  # the answer was cut off at its max_tokens


def parse_answer(
    text: str, model: type[BaseModel], expected_ids: set[int] | None, truncated: bool = False
) -> ParsedAnswer:
    """Valid rows of an answer; each bad row is counted by cause and explained for a re-ask.
    `truncated`: the answer was cut short at max_tokens, so its last row, closed by the JSON
    repair, may hold text cut mid-word that would still validate: it is dropped ("cut_off")."""
    result = ParsedAnswer()
    payload, result.repaired = extract_payload(text)
    if isinstance(payload, dict):
        payload = payload.get("rows", [payload] if payload else [])
    if not isinstance(payload, list):
        result.rejected["malformed_json"] += 1
        result.feedback.append('the answer was not valid JSON of the form {"rows": [...]}')
        return result
    if truncated and result.repaired and payload:
        payload = payload[:-1]
        result.rejected["cut_off"] += 1
    seen: set[int] = set()
    for raw in payload:
        if not isinstance(raw, dict):
            result.rejected["wrong_type"] += 1
            continue
        try:
            row = model.model_validate(raw).model_dump()
        except ValidationError as exc:
            result.rejected[_cause(exc)] += 1
            ident = f"id {raw.get('id')}" if "id" in raw else "a row"
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:3]
            )
            result.feedback.append(f"{ident}: {problems}")
            continue
        if expected_ids is not None:
            if row["id"] not in expected_ids:
                result.rejected["unknown_id"] += 1
                continue
            if row["id"] in seen:
                result.rejected["duplicate_id"] += 1
                continue
            seen.add(row["id"])
        result.rows.append(row)
    return result


def _cause(exc: ValidationError) -> str:
    kinds = {e["type"] for e in exc.errors()}
    if "missing" in kinds:
        return "missing_field"
    if any(k.endswith(("_type", "_parsing")) for k in kinds):
        return "wrong_type"
    return "outside_schema"  # an enum, pattern, length or range (not a config constraint)
