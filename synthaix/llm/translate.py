"""Plain words -> a dataset config: ask the LLM for column specs, repair what does not validate,
and write a commented YAML file the user can edit and build."""

from __future__ import annotations

import re
from typing import Any

import yaml
from pydantic import TypeAdapter, ValidationError

from synthaix.columns import REGISTRY, ColumnSpec
from synthaix.config import DatasetConfig, parse_config
from synthaix.errors import ConfigError, ProviderError
from synthaix.llm.client import LlmClient
from synthaix.llm.parse import extract_payload
from synthaix.llm.prompts import closed_object
from synthaix.llm.provider import ProviderConfig
from synthaix.llm.stats import StatsRecorder

_NULLABLE = {"type": ["number", "null"]}
_TEXT = {"type": ["string", "null"]}
_PARAMS = {
    "min": _NULLABLE,
    "max": _NULLABLE,
    "values": {"type": ["array", "null"], "items": {"type": "string"}},
    "start": _TEXT,
    "end": _TEXT,
    "template": _TEXT,
    "prompt": _TEXT,
    "max_length": {"type": ["integer", "null"]},
    "p": _NULLABLE,
    "expr": _TEXT,
    "as": _TEXT,
    "after": _TEXT,
    "before": _TEXT,
    "offset_min": _TEXT,  # flat, not an `offset` object: strict JSON schemas need fixed keys
    "offset_max": _TEXT,
    "by": _TEXT,
    "params": {
        "type": ["array", "null"],
        "items": closed_object(
            {
                "value": {"type": "string"},
                "values": {"type": ["array", "null"], "items": {"type": "string"}},
                "min": _NULLABLE,
                "max": _NULLABLE,
                "p": _NULLABLE,
            }
        ),
    },
    "from": {"type": ["array", "null"], "items": {"type": "string"}},
    "method": _TEXT,
    "pattern": _TEXT,
    "correlated_with": _TEXT,
    "rho": _NULLABLE,
}
_COLUMN = closed_object(
    {
        "name": {"type": "string"},
        "type": {"type": "string", "enum": list(REGISTRY)},
        "description": {"type": "string"},
        "unique": {"type": "boolean"},
        **_PARAMS,
    }
)
_COLUMNS = {"type": "array", "items": _COLUMN, "minItems": 1, "maxItems": 40}
_CONSTRAINTS = {"type": "array", "items": {"type": "string"}, "maxItems": 10}
SCHEMA = closed_object(
    {"name": {"type": "string"}, "columns": _COLUMNS, "constraints": _CONSTRAINTS}
)
PROMPT = """Design the columns of a synthetic dataset: {description}

Column types: {types}.
Prefer sampler types (no LLM needed): person.* for names/emails/phones, address.* for places,
integer/float with min and max for numbers, category with values for fixed sets, date/datetime
with start and end (YYYY-MM-DD), expression with a Jinja2 template over earlier columns, uuid or
sequence for ids. Use llm (with a prompt, which may use {{{{ earlier_column }}}}) only for free
text a sampler cannot make, such as reviews or descriptions. Names are snake_case.
Make the columns of a row hold together, by construction: sql with expr, a DuckDB expression
over earlier columns (round(quantity * unit_price, 2)), for derived values; after (or before)
an earlier date/datetime/number column with offset_min and offset_max (1h, 5d, 3mo) for values
that follow it; by an earlier category column with params, one entry per value, for values
that depend on it (a subcategory, a price per category); person.email with from [first_name,
last_name] for emails that match the names; pattern for codes such as ORD-[A-Z]{{3}}-[0-9]{{5}};
correlated_with and rho for numbers that rise with another. constraints: DuckDB boolean
expressions every row satisfies (discount <= total), only for rules construction cannot make.
Unused parameters are null."""
MAX_ASKS = 3
_RELATIONS = {"by", "params", "after", "before", "offset", "from", "correlated_with", "rho", "expr"}
_COLUMN_SPEC: TypeAdapter[Any] = TypeAdapter(ColumnSpec)


def translate(
    description: str, provider: ProviderConfig, rows: int = 1000, name: str | None = None
) -> tuple[DatasetConfig, list[str]]:
    """A valid config for the description, and notes on what had to be repaired."""
    client, recorder = LlmClient(provider), StatsRecorder()
    prompt = PROMPT.format(description=description.strip(), types=", ".join(REGISTRY))
    feedback = ""
    for _ in range(MAX_ASKS):
        messages = [
            {"role": "system", "content": "You design dataset schemas. Answer with JSON only."},
            {"role": "user", "content": prompt + feedback},
        ]
        answer = client.complete(messages, SCHEMA, provider.max_tokens, recorder)
        payload, _ = extract_payload(answer.text)
        if isinstance(payload, dict) and isinstance(payload.get("columns"), list):
            return _repair(payload, description, provider, rows, name)
        feedback = '\n\nYour last answer was not JSON of the form {"name": ..., "columns": [...]}.'
    raise ProviderError(
        f"the model gave no usable column list after {MAX_ASKS} tries",
        hint="try a more capable model, or describe the columns more explicitly",
    )


def _repair(
    payload: dict[str, Any],
    description: str,
    provider: ProviderConfig,
    rows: int,
    name: str | None,
) -> tuple[DatasetConfig, list[str]]:
    notes: list[str] = []
    columns: list[dict[str, Any]] = []
    taken: set[str] = set()
    for index, raw in enumerate(c for c in payload["columns"] if isinstance(c, dict)):
        column_name = _identifier(str(raw.get("name") or ""), f"column_{index + 1}", taken)
        columns.append(_column(column_name, raw, notes))
    data = {
        "name": name or _identifier(str(payload.get("name") or ""), "dataset", set()),
        "description": description.strip(),
        "rows": rows,
        "seed": 0,
        "chunk_size": min(rows, 1000),
        "columns": columns,
        "constraints": [c for c in payload.get("constraints") or [] if isinstance(c, str) and c],
        "provider": provider.model_dump(exclude_defaults=True),
    }
    # Each pass fixes at least one problem, and a column can have a few (an unknown reference
    # and too few values for `unique`), so this bounds the passes without cutting one short.
    for _ in range(3 * len(columns) + 1):
        try:
            return parse_config(data), notes
        except ConfigError as exc:
            fixed = _fix_constraint(data, str(exc), notes)
            if not fixed and not _fix_cross_column(data["columns"], str(exc), notes):
                raise
    return parse_config(data), notes  # raises the ConfigError that is left


def _column(name: str, raw: dict[str, Any], notes: list[str]) -> dict[str, Any]:
    raw = _nested(raw)
    kind = raw.get("type") if raw.get("type") in REGISTRY else "llm"
    fields = REGISTRY[kind].model_fields
    accepted = set(fields) | {f.alias for f in fields.values() if f.alias}
    if kind != "pattern":  # an llm column's `pattern` constrains its answers: not this one
        accepted.discard("pattern")
    spec = {k: v for k, v in raw.items() if k in accepted and v not in (None, "", [])}
    spec.update(name=name, type=kind)
    if not spec.get("unique"):
        spec.pop("unique", None)
    try:
        _COLUMN_SPEC.validate_python(spec)
        return spec
    except ValidationError as exc:
        problem = exc.errors()[0]["msg"].removeprefix("Value error, ")
    fallback = {"name": name, "type": "llm", "description": raw.get("description") or name}
    fallback["prompt"] = raw.get("prompt") or f"A realistic {name.replace('_', ' ')}"
    notes.append(f"{name}: the suggested {kind} spec was invalid ({problem}); an llm column now")
    return fallback


def _nested(raw: dict[str, Any]) -> dict[str, Any]:
    """The answer's flat offset and segment list in the config's own shape."""
    raw = dict(raw)
    offset = {k: raw.pop(f"offset_{k}", None) for k in ("min", "max")}
    if any(v not in (None, "") for v in offset.values()):
        raw["offset"] = {k: v for k, v in offset.items() if v not in (None, "")}
    if isinstance(raw.get("params"), list):
        segments = [s for s in raw["params"] if isinstance(s, dict) and s.get("value")]
        raw["params"] = {
            str(s["value"]): {k: v for k, v in s.items() if k != "value" and v not in (None, [])}
            for s in segments
        }
    return raw


def _fix_constraint(data: dict[str, Any], message: str, notes: list[str]) -> bool:
    found = re.search(r"constraints\[(\d+)\]", message)
    if not found or int(found[1]) >= len(data["constraints"]):
        return False
    dropped = data["constraints"].pop(int(found[1]))
    notes.append(f"constraint '{dropped}' dropped: it did not validate")
    return True


def _fix_cross_column(columns: list[dict[str, Any]], message: str, notes: list[str]) -> bool:
    for column in columns:
        if f"({column['name']})" not in message:
            continue
        if "unique column can take only" in message and column.get("unique"):
            column.pop("unique")
            notes.append(f"{column['name']}: dropped unique (too few distinct values)")
            return True
        if "references" in message and column["type"] in ("expression", "llm"):
            prompt = column.pop("template", None) or column.pop("prompt", None)
            column.update(type="llm", prompt=re.sub(r"{{.*?}}", "", prompt or column["name"]))
            notes.append(f"{column['name']}: referenced unknown columns; an llm column now")
            return True
        if "references" in message and _RELATIONS & column.keys():
            plain = {k: v for k, v in column.items() if k not in _RELATIONS}
            column.clear()
            column.update(_column(plain["name"], plain, notes))
            notes.append(f"{column['name']}: referenced unknown columns; made without them")
            return True
    return False


def _identifier(text: str, default: str, taken: set[str]) -> str:
    name = re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")[:48] or default
    if name[0].isdigit():
        name = f"c_{name}"
    base, n = name, 2
    while name in taken:
        name, n = f"{base}_{n}", n + 1
    taken.add(name)
    return name


def to_yaml(config: DatasetConfig, notes: list[str]) -> str:
    """The config as a commented YAML file: one line per column, its description above it."""
    dump = config.model_dump(mode="json", by_alias=True, exclude_defaults=True)
    lines = [
        "# yaml-language-server: $schema=synthaix.schema.json",
        "# Generated by `synthaix translate` from:",
        *[f"#   {line}" for line in (config.description or "").splitlines()],
        "# Edit freely, then: synthaix validate <this file> && synthaix build <this file>",
    ]
    lines += [f"# repaired: {note}" for note in notes]
    head = {key: getattr(config, key) for key in ("name", "description", "rows", "seed")}
    lines += [_block(head), "columns:"]
    for column, data in zip(config.columns, dump["columns"], strict=True):
        data.pop("description", None)
        if column.description:
            lines.append(f"  # {column.description}")
        data = {"name": column.name, "type": column.type, **data}  # type: ignore[attr-defined]
        flow = yaml.safe_dump(data, default_flow_style=True, sort_keys=False, width=10**6)
        lines.append(f"  - {flow.strip()}")
    if config.constraints:
        rules = [
            c.check if c.name is None else {"name": c.name, "check": c.check}
            for c in config.constraints
        ]
        lines.append(_block({"constraints": rules}))
    tail = {"chunk_size": config.chunk_size, "provider": dump.get("provider", {})}
    tail["output"] = {"dir": f"out/{config.name}"}
    lines.append(_block(tail))
    return "\n".join(lines) + "\n"


def _block(value: dict[str, Any]) -> str:
    return yaml.safe_dump(value, sort_keys=False, allow_unicode=True, width=100).rstrip()
