"""Columns written by an LLM: free text or structured values, conditioned on earlier columns."""

from __future__ import annotations

import re
from functools import cached_property
from typing import TYPE_CHECKING, Any, Literal, Self

import pyarrow as pa
from pydantic import ConfigDict, Field, model_validator

from synthaix.columns.base import ChunkContext, Column
from synthaix.columns.refs import template_references
from synthaix.errors import ConfigError

if TYPE_CHECKING:  # Jinja2 and the sandbox load with the first prompt (see columns.refs)
    from jinja2 import Template, nodes

_JSON_TYPES = {"string", "integer", "number", "boolean", "object", "array"}
_ARROW = {
    "string": pa.string(),
    "integer": pa.int64(),
    "number": pa.float64(),
    "boolean": pa.bool_(),
}


class LlmColumn(Column):
    """A value the LLM writes for each row: `prompt: "A review by a {{ age }}-year-old"`.

    Rows are sent in batches; `prompt` is rendered per row with the row's earlier columns.
    Objects and arrays are stored as JSON text.
    """

    model_config = ConfigDict(populate_by_name=True)

    type: Literal["llm"] = "llm"
    prompt: str | None = Field(
        default=None,
        description="Jinja2 instruction per row (default: the column's description or name).",
    )
    value_schema: dict[str, Any] | None = Field(
        default=None,
        alias="schema",
        description="JSON Schema of the value (default {type: string}); objects and arrays "
        "are stored as JSON text.",
    )
    max_length: int | None = Field(default=None, ge=1, description="Longest text, in characters.")
    enum: list[str] | None = Field(default=None, min_length=1, description="Allowed values.")
    pattern: str | None = Field(default=None, description="Regular expression the text must match.")

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.prompt is not None:
            from jinja2 import TemplateSyntaxError

            from synthaix.columns.sandbox import TEMPLATES, RefusedTemplate

            try:
                TEMPLATES.from_string(self.prompt)  # compiling also finds unknown filters
            except RefusedTemplate as exc:
                raise ValueError(f"prompt: {exc.message}") from exc
            except TemplateSyntaxError as exc:
                raise ValueError(f"prompt is not valid Jinja2: {exc.message}") from exc
        if self.pattern is not None:
            try:
                re.compile(self.pattern)
            except re.error as exc:
                raise ValueError(f"pattern is not a valid regular expression: {exc}") from exc
            shortest = _shortest_match(self.pattern)
            if self.max_length is not None and shortest > self.max_length:
                raise ValueError(
                    f"pattern matches no text of max_length {self.max_length} or less (its "
                    f"shortest match has {shortest} characters): raise max_length or shorten "
                    "the pattern"
                )
        kind = (self.value_schema or {}).get("type", "string")
        if kind not in _JSON_TYPES:
            raise ValueError(f"schema type must be one of {', '.join(sorted(_JSON_TYPES))}")
        _check_bounds(self.json_schema(), self.max_length is not None)
        if kind != "string" and (self.max_length or self.enum or self.pattern):
            raise ValueError("max_length, enum and pattern apply to text values only")
        return self

    @cached_property
    def parsed_template(self) -> nodes.Template:
        from synthaix.columns.sandbox import TEMPLATES

        return TEMPLATES.parse(self.prompt or "")

    @cached_property
    def compiled_prompt(self) -> Template:
        from synthaix.columns.sandbox import TEMPLATES

        return TEMPLATES.from_string(self.prompt or "")

    @property
    def per_row(self) -> bool:
        """Whether the instruction differs per row (it reads other columns)."""
        return bool(self.references())

    @cached_property
    def referenced_names(self) -> frozenset[str]:
        if not self.prompt:
            return frozenset()
        return frozenset(template_references(self.parsed_template))

    def references(self) -> set[str]:
        return set(self.referenced_names)

    def instruction(self, row: dict[str, Any] | None = None) -> str:
        if self.prompt is None:
            return self.description or f"a realistic value for '{self.name}'"
        from synthaix.columns.sandbox import TemplateLimitError, render, template_hint

        try:
            return render(self.compiled_prompt, row)
        except TemplateLimitError as exc:
            raise ConfigError(f"column '{self.name}': prompt {exc}", hint=exc.hint) from exc
        except Exception as exc:  # any Jinja2 runtime error is a problem of the prompt
            raise ConfigError(
                f"column '{self.name}': prompt failed on the data: {type(exc).__name__}: {exc}",
                hint=template_hint(exc),
            ) from exc

    def json_schema(self) -> dict[str, Any]:
        schema = dict(self.value_schema or {"type": "string"})
        if self.max_length:
            schema["maxLength"] = self.max_length
        if self.enum:
            schema["enum"] = list(self.enum)
        if self.pattern:
            schema["pattern"] = self.pattern
        return schema

    @property
    def free_text(self) -> bool:
        """Text the model writes freely, worth comparing for near duplicates: not one of a few
        values (enum, const) nor of a fixed shape (pattern, format: dates a day apart are
        0.8 similar), which repeat by design."""
        schema = self.json_schema()
        fixed = {"enum", "const", "pattern", "format"} & schema.keys()  # format: dates, emails
        return pa.types.is_string(self.arrow_type()) and not fixed

    def arrow_type(self) -> pa.DataType:
        return _ARROW.get(self.json_schema().get("type", "string"), pa.string())

    def generate(self, ctx: ChunkContext) -> pa.Array:
        raise RuntimeError("llm columns are filled in batches by synthaix.llm.fill")


def _check_bounds(schema: dict[str, Any], max_length: bool) -> None:
    """Bounds no answer can meet (`minimum: 5, maximum: 1`), found here: a build paid for
    every request of its rounds, then failed naming no column."""
    for low, high, what in (
        ("minimum", "maximum", "values"),
        ("minLength", "maxLength", "text"),
        ("minItems", "maxItems", "items"),
    ):
        lo, hi = schema.get(low), schema.get(high)
        if isinstance(lo, int | float) and isinstance(hi, int | float) and lo > hi:
            bound = "max_length" if high == "maxLength" and max_length else f"schema {high}"
            raise ValueError(f"schema {low} {lo} is above {bound} {hi}: no {what} fit both")


def _shortest_match(pattern: str) -> int:
    """The fewest characters a match of `pattern` has (0 when Python cannot say). Read from
    Python's own regex parser, as a schema no value satisfies is otherwise found by the
    endpoint: a 400 at build time, after earlier stages were paid."""
    parser = getattr(re, "_parser", None)  # private, but stable since 3.11
    try:
        low, _ = parser.parse(pattern).getwidth()  # type: ignore[union-attr]
    except Exception:  # another Python's parser: leave the check to the endpoint
        return 0
    return int(low)
