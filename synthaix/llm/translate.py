"""Plain words -> a dataset config: ask the LLM for tables and column specs, repair what does
not validate, and write a commented YAML file the user can edit and build.

One table in the answer gives a single-table config (DatasetConfig); several give a multi-table
one (RelationalConfig, `tables:`), whose parents, keys, references and counts are put right by
construction before it is validated, so the model's slips cost a note, not the translation.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from itertools import pairwise
from typing import Any

import yaml
from pydantic import TypeAdapter, ValidationError

from synthaix.columns import REGISTRY, ColumnSpec
from synthaix.columns.llm import LlmColumn
from synthaix.config import DatasetConfig, parse_any_config, parse_config
from synthaix.errors import ConfigError, ProviderError
from synthaix.llm.client import LlmClient
from synthaix.llm.parse import extract_payload
from synthaix.llm.prompts import closed_object
from synthaix.llm.provider import ProviderConfig
from synthaix.llm.stats import StatsRecorder
from synthaix.relational.config import CountConfig, RelationalConfig

AnyConfig = DatasetConfig | RelationalConfig

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
    "to": _TEXT,  # reference: table.column
    "alias": _TEXT,
    "zipf": _NULLABLE,  # reference weights {zipf: s}; null is uniform
    "of": _TEXT,  # aggregate: the child table
    "default": _NULLABLE,
}
_COLUMN = closed_object(
    {
        "name": {"type": "string"},
        "type": {"type": "string", "enum": list(REGISTRY)},
        "description": {"type": "string"},
        "unique": {"type": "boolean"},
        "primary_key": {"type": "boolean"},
        **_PARAMS,
    }
)
_COLUMNS = {"type": "array", "items": _COLUMN, "minItems": 1, "maxItems": 40}
_CONSTRAINTS = {"type": "array", "items": {"type": "string"}, "maxItems": 10}
_TABLE = closed_object(
    {
        "name": {"type": "string"},
        "description": {"type": "string"},
        "rows": {"type": ["integer", "null"]},
        "parent": _TEXT,
        "count_mean": _NULLABLE,
        "count_max": {"type": ["integer", "null"]},
        "count_by": _TEXT,
        "count_params": {
            "type": ["array", "null"],
            "items": closed_object({"value": {"type": "string"}, "mean": {"type": "number"}}),
        },
        "columns": _COLUMNS,
        "constraints": _CONSTRAINTS,
    }
)
SCHEMA = closed_object(
    {
        "name": {"type": "string"},
        "tables": {"type": "array", "items": _TABLE, "minItems": 1, "maxItems": 8},
    }
)
PROMPT = """Design a synthetic dataset: {description}

Use one table, unless the description names several kinds of things that belong to each other
(customers, their orders, the items of an order): then one table for each kind.
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
Tables: a table whose rows each belong to a row of another (orders of a customer, items of an
order) names that table as parent, with count_mean children per parent row (count_max at most;
count_by, a category column of the parent, with count_params to vary the mean per value), and
has a reference column to it (type reference, to customers.customer_id). Other tables have rows:
few for catalogues and lookups (50 products). A referenced table has a key: a sequence or uuid
column with primary_key true. A reference to a table other than the parent looks up one of its
rows (zipf 1.1 makes some rows popular; an alias when two references point at one table).
Columns read the fields of the parent and looked-up rows as table.column, and through those rows
their own parents and lookups: a review of an order item may prompt with {{{{ products.name }}}}
and {{{{ customers.tier }}}}, a price may be sql products.price, a date after
customers.signup_date. A parent's value over its children is an aggregate column: of the child
table, expr sum(quantity * unit_price), default 0.
Unused parameters are null."""
MAX_ASKS = 3
_LATE = ("reference", "aggregate")  # column types that need `tables:`
_RELATIONS = {"by", "params", "after", "before", "offset", "from", "correlated_with", "rho", "expr"}
_COLUMN_SPEC: TypeAdapter[Any] = TypeAdapter(ColumnSpec)


def translate(
    description: str, provider: ProviderConfig, rows: int = 1000, name: str | None = None
) -> tuple[AnyConfig, list[str]]:
    """A valid config for the description, and notes on what had to be repaired: one table
    gives a DatasetConfig, several a RelationalConfig whose root tables have up to `rows` rows
    (see `_size`)."""
    if not description.strip():
        raise ConfigError(
            "the description is empty",
            hint='describe the dataset, e.g. "an online shop with customers, orders and reviews"',
        )
    client, recorder = LlmClient(provider), StatsRecorder()
    client.check()  # a wrong URL, key or model in seconds, not after the retries of an ask
    prompt = PROMPT.format(description=description.strip(), types=", ".join(REGISTRY))
    feedback = ""
    broken: tuple[Any, list[dict[str, Any]], str] | None = None  # the first repaired answer
    for _ in range(MAX_ASKS):
        messages = [
            {"role": "system", "content": "You design dataset schemas. Answer with JSON only."},
            {"role": "user", "content": prompt + feedback},
        ]
        try:
            answer = client.complete(messages, SCHEMA, provider.max_tokens, recorder)
        except ProviderError as exc:
            if exc.cause.startswith("http_4") and "llm columns" in (exc.hint or ""):
                # That hint is of a build's columns; translate sends its own design schema.
                exc.hint = (
                    "the endpoint may not take this request's JSON schema: try another model, "
                    "or a server with structured output"
                )
            raise
        payload, repaired = extract_payload(answer.text)
        tables = _tables_of(payload)
        cut = answer.finish_reason == "length"
        if tables and not (repaired or cut):
            return _design(payload, tables, description, provider, rows, name)
        # A cut or broken answer repairs into a valid config that lacks whatever came after
        # the break (measured: a shop of three tables came back as two): asked again.
        if tables and broken is None:
            broken = (payload, tables, "cut short" if cut else "not valid JSON")
        feedback = (
            "\n\nYour last answer was cut short: answer again, more briefly."
            if cut
            else '\n\nYour last answer was not valid JSON of the form {"name": ..., "tables": '
            '[{"name": ..., "columns": [...]}, ...]}.'
        )
    if broken is not None:
        payload, tables, why = broken
        config, notes = _design(payload, tables, description, provider, rows, name)
        note = (
            f"no answer in {MAX_ASKS} tries was whole (the first usable one was {why}): this "
            "config is repaired from it; check that no table or column is missing"
        )
        return config, [note, *notes]
    raise ProviderError(
        f"the model gave no usable column list after {MAX_ASKS} tries",
        hint="try a more capable model, or describe the columns more explicitly",
    )


def _design(
    payload: Any,
    tables: list[dict[str, Any]],
    description: str,
    provider: ProviderConfig,
    rows: int,
    name: str | None,
) -> tuple[AnyConfig, list[str]]:
    if len(tables) > 1:
        return _repair_tables(payload, tables, description, provider, rows, name)
    return _repair(tables[0], description, provider, rows, name)


def _tables_of(payload: Any) -> list[dict[str, Any]]:
    """The answer's tables that have a column list; an answer in the single-table shape of
    earlier versions ({"name", "columns"}) is one table."""
    if not isinstance(payload, dict):
        return []
    if isinstance(payload.get("columns"), list):
        return [payload]
    found = payload.get("tables")
    tables = [t for t in found if isinstance(t, dict)] if isinstance(found, list) else []
    tables = [t for t in tables if isinstance(t.get("columns"), list) and t["columns"]]
    if len(tables) == 1 and not tables[0].get("name"):
        tables[0] = {**tables[0], "name": payload.get("name")}
    return tables


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
        if raw.get("type") in _LATE:
            notes.append(f"{column_name}: dropped; {raw['type']} columns need several tables")
            continue
        columns.append(_column(column_name, raw, notes))
    if not columns:
        columns.append(_column("text", {"type": "llm", "prompt": description.strip()}, notes))
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
            fixed = _fix_constraint(data, str(exc), notes) or _fix_dedupe(data, str(exc), notes)
            if not fixed and not _fix_cross_column(data["columns"], str(exc), notes, rows):
                raise
    return parse_config(data), notes  # raises the ConfigError that is left


def _column(
    name: str, raw: dict[str, Any], notes: list[str], label: str | None = None
) -> dict[str, Any]:
    """A column spec that validates on its own: the answer's, or an llm column in its place.
    `label` names the column in notes (`table.column` in a multi-table answer)."""
    raw = _nested(raw)
    kind = raw.get("type") if raw.get("type") in REGISTRY else "llm"
    fields = REGISTRY[kind].model_fields
    accepted = set(fields) | {f.alias for f in fields.values() if f.alias}
    if kind != "pattern":  # an llm column's `pattern` constrains its answers: not this one
        accepted.discard("pattern")
    spec = {k: v for k, v in raw.items() if k in accepted and v not in (None, "", [])}
    spec.update(name=name, type=kind)
    for flag in ("unique", "primary_key"):
        if not spec.get(flag):
            spec.pop(flag, None)
    try:
        _COLUMN_SPEC.validate_python(spec)
        return spec
    except ValidationError as exc:
        problem = exc.errors()[0]["msg"].removeprefix("Value error, ")
    fallback = {"name": name, "type": "llm", "description": raw.get("description") or name}
    fallback["prompt"] = raw.get("prompt") or _realistic(name)
    notes.append(
        f"{label or name}: the suggested {kind} spec was invalid ({problem}); an llm column now"
    )
    return fallback


def _realistic(name: str) -> str:
    return f"A realistic {name.replace('_', ' ')}"


def _nested(raw: dict[str, Any]) -> dict[str, Any]:
    """The answer's flat offset and segment list in the config's own shape."""
    raw = dict(raw)
    offset = {k: raw.pop(f"offset_{k}", None) for k in ("min", "max")}
    if any(v not in (None, "") for v in offset.values()):
        raw["offset"] = {k: v for k, v in offset.items() if v not in (None, "")}
    zipf = raw.pop("zipf", None)
    if isinstance(zipf, int | float) and not isinstance(zipf, bool) and 0 < zipf <= 10:
        raw["weights"] = {"zipf": zipf}
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


def _fix_dedupe(data: dict[str, Any], message: str, notes: list[str]) -> bool:
    """A design whose columns are all narrow (a rating and an age) cannot make `rows`
    distinct rows: its rows may repeat. A composite primary key then holds nothing."""
    if "holds only when the exact dedupe compares" in message:
        keys = [c for c in data["columns"] if c.get("primary_key")]
        for column in keys:
            column.pop("primary_key")
        said = ", ".join(c["name"] for c in keys)
        notes.append(f"{said}: dropped primary_key (rows may repeat: no composite key holds)")
        return bool(keys)
    if "the exact-dedupe key (" not in message or data.get("dedupe") == {"exact": False}:
        return False
    data["dedupe"] = {"exact": False}
    notes.append("dedupe: exact off (the columns cannot make that many distinct rows)")
    return True


def _fix_cross_column(
    columns: list[dict[str, Any]], message: str, notes: list[str], rows: int
) -> bool:
    for column in columns:
        if f"({column['name']})" not in message:
            continue
        narrow = re.search(
            rf"\({re.escape(column['name'])}\)[^\n]*a primary key can take only .*? but "
            r"([\d,]+) rows are asked for",
            message,
        )
        if narrow and column.get("primary_key"):
            needed = max(rows, int(narrow[1].replace(",", "")))
            low = column.get("min") if isinstance(column.get("min"), int) else 1
            if column["type"] == "integer" and column.get("max") != low + 10 * needed - 1:
                column.update(min=low, max=low + 10 * needed - 1)  # an id too narrow: widened
                notes.append(f"{column['name']}: range widened to {low}..{low + 10 * needed - 1}")
            else:
                column.pop("primary_key")
                column.pop("unique", None)
                notes.append(f"{column['name']}: dropped primary_key (too few distinct values)")
            return True
        own = "\n".join(line for line in message.splitlines() if f"({column['name']})" in line)
        if "unique column can take only" in own and column.get("unique"):
            column.pop("unique")
            notes.append(f"{column['name']}: dropped unique (too few distinct values)")
            return True
        if "references" in own and column["type"] in ("expression", "llm"):
            prompt = column.pop("template", None) or column.pop("prompt", None)
            column.update(type="llm", prompt=re.sub(r"{{.*?}}", "", prompt or column["name"]))
            notes.append(f"{column['name']}: referenced unknown columns; an llm column now")
            return True
        if "references" in own and _RELATIONS & column.keys():
            plain = {k: v for k, v in column.items() if k not in _RELATIONS}
            column.clear()
            column.update(_column(plain["name"], plain, notes))
            notes.append(f"{column['name']}: referenced unknown columns; made without them")
            return True
    return False


# -- several tables --------------------------------------------------------------------------
_TABLE_AT = re.compile(r"tables\[(\d+)\](?: \([^)]*\))?")
_LOOKUP_DEFAULT_ROWS = 100


def _repair_tables(
    payload: dict[str, Any],
    answered: list[dict[str, Any]],
    description: str,
    provider: ProviderConfig,
    rows: int,
    name: str | None,
) -> tuple[RelationalConfig, list[str]]:
    """A multi-table config from the answer's tables. The graph (parents, keys, references,
    parent links, counts) is made consistent first, then validation errors are fixed one
    column or constraint at a time, as for a single table."""
    notes: list[str] = []
    taken: set[str] = set()
    names = [
        _identifier(str(t.get("name") or ""), f"table_{i + 1}", taken)
        for i, t in enumerate(answered)
    ]
    find = _table_finder(names)
    tables: list[dict[str, Any]] = []
    for table_name, raw in zip(names, answered, strict=True):
        seen: set[str] = set()
        columns = [
            {**c, "name": _identifier(str(c.get("name") or ""), f"column_{j + 1}", seen)}
            for j, c in enumerate(c for c in raw["columns"] if isinstance(c, dict))
        ]
        parent = find(raw.get("parent"))
        if raw.get("parent") and parent in (None, table_name):
            notes.append(f"{table_name}: parent '{raw['parent']}' is not another table; dropped")
            parent = None
        rules = [c for c in raw.get("constraints") or [] if isinstance(c, str) and c]
        tables.append(
            {
                "name": table_name,
                "description": str(raw.get("description") or "") or None,
                "parent": parent,
                "columns": columns,
                "constraints": rules,
            }
        )
    _drop_parent_cycles(tables, notes)
    by_name = {t["name"]: t for t in tables}
    aliases = {str(c.get("alias")) for t in tables for c in t["columns"] if c.get("alias")}
    for table in tables:  # where each reference points, before keys are chosen
        for column in table["columns"]:
            _respell(column, find, aliases)
            if column.get("type") == "reference":
                column["to"] = find(str(column.get("to") or "").partition(".")[0])
    referenced = {t["parent"] for t in tables if t["parent"]}
    referenced |= {c["to"] for t in tables for c in t["columns"] if c.get("to") and _is_ref(c)}
    keys = {n: _key(by_name[n], notes) for n in names if n in referenced}
    for table in tables:
        _references(table, keys, notes)
        _aggregates(table, tables, notes)
        _aliases(table, _parent_link(table, keys, notes))
    for table, raw in zip(tables, answered, strict=True):
        label = table["name"]
        table["columns"] = [
            _column(c["name"], c, notes, f"{label}.{c['name']}") for c in table["columns"]
        ]
        _size(table, raw, tables, by_name, rows, notes)
        if not table["columns"]:  # every column referred to nothing: the key at least
            _key(table, notes)
    data = {
        "name": name or _identifier(str(payload.get("name") or ""), "dataset", set()),
        "description": description.strip(),
        "seed": 0,
        "chunk_size": min(rows, 1000),
        "tables": [{k: v for k, v in t.items() if v is not None} for t in tables],
        "provider": provider.model_dump(exclude_defaults=True),
    }
    problems = sum(3 * len(t["columns"]) + len(t["constraints"]) + 1 for t in tables)
    for _ in range(problems + 1):  # each pass fixes one, as for a single table
        try:
            return parse_any_config(data), notes
        except ConfigError as exc:
            if not _fix_tables(data["tables"], str(exc), notes):
                raise
    return parse_any_config(data), notes  # raises the ConfigError that is left


def _is_ref(column: dict[str, Any]) -> bool:
    return column.get("type") == "reference"


def _respell(column: dict[str, Any], find: Callable[[Any], str | None], aliases: set[str]) -> None:
    """Related fields spelt with another form of a table's name (`customers.tier` for table
    `customer`) renamed to the table's, in every field that reads them; aliases stay."""

    def table_name(found: re.Match[str]) -> str:
        head, table = found[1], find(found[1])
        return f"{table}." if table not in (None, head) and head not in aliases else found[0]

    for field in ("prompt", "template", "expr", "after", "before", "by"):
        if isinstance(column.get(field), str):
            column[field] = re.sub(r"\b([A-Za-z_]\w*)\.(?=[A-Za-z_])", table_name, column[field])


def _table_finder(names: list[str]) -> Callable[[Any], str | None]:
    """The table a name in the answer means: exact, or the singular/plural of a table's name
    (a model writes `to: customer.id` as readily as `customers.id`)."""
    spellings = {name: name for name in names}  # a table's own name first: `order` and `orders`
    for name in names:
        for spelling in (_singular(name), f"{name}s"):
            spellings.setdefault(spelling, name)

    def find(text: Any) -> str | None:
        key = re.sub(r"[^a-z0-9]+", "_", str(text or "").lower()).strip("_")
        return (spellings.get(key) or spellings.get(_singular(key))) if key else None

    return find


def _singular(name: str) -> str:
    if name.endswith("ies"):
        return name[:-3] + "y"
    return name[:-1] if name.endswith("s") and not name.endswith("ss") else name


def _drop_parent_cycles(tables: list[dict[str, Any]], notes: list[str]) -> None:
    parents = {t["name"]: t["parent"] for t in tables}
    for table in tables:
        seen, node = {table["name"]}, table["parent"]
        while node is not None and node not in seen:
            seen.add(node)
            node = parents[node]
        if node is not None:  # the parent chain comes back to this table
            notes.append(f"{table['name']}: parents went round in a circle; now a root table")
            table["parent"] = parents[table["name"]] = None


def _key(table: dict[str, Any], notes: list[str]) -> str:
    """The one-column key other tables reference: the marked primary key, else the first
    sequence or uuid column (marked now), else a new sequence column."""
    columns = table["columns"]
    marked = [c for c in columns if c.get("primary_key")]
    ids = [c for c in columns if c.get("type") in ("sequence", "uuid") and _usable(c)]
    if len(marked) == 1 and _usable(marked[0]):
        return marked[0]["name"]
    chosen = next((c for c in marked if c in ids), None) or (ids[0] if ids else None)
    if chosen is None:
        taken = {c["name"] for c in columns}
        chosen = {"name": _identifier(f"{_singular(table['name'])}_id", "id", taken)}
        chosen["type"] = "sequence"
        columns.insert(0, chosen)
        notes.append(f"{table['name']}: added the key {chosen['name']} (others refer to it)")
    for column in marked:  # a composite key cannot be referenced: one key column instead
        column["primary_key"] = False
    chosen["primary_key"] = True
    return str(chosen["name"])


def _usable(column: dict[str, Any]) -> bool:
    """Whether the column keeps its own type (a key written by the LLM instead is no key)."""
    said: list[str] = []
    _column(column["name"], column, said)
    return not said


def _references(table: dict[str, Any], keys: dict[str, str], notes: list[str]) -> None:
    kept = []
    for column in table["columns"]:
        label = f"{table['name']}.{column['name']}"
        if not _is_ref(column):
            kept.append(column)
        elif column["to"] is None:
            notes.append(f"{label}: dropped; it refers to no table of this dataset")
        else:
            column["to"] = f"{column['to']}.{keys[column['to']]}"
            kept.append(column)
    table["columns"] = kept


def _parent_link(
    table: dict[str, Any], keys: dict[str, str], notes: list[str]
) -> dict[str, Any] | None:
    """A child table's reference to its parent: the answer's, or a new one after the key."""
    parent = table["parent"]
    if parent is None:
        return None
    columns = table["columns"]
    to_parent = [c for c in columns if _is_ref(c) and c["to"].split(".")[0] == parent]
    link = next((c for c in to_parent if not c.get("alias")), None)
    if link is None and to_parent:
        link = to_parent[0]
        link.pop("alias")  # the parent's row is read under its table's name
    if link is None:
        taken = {c["name"] for c in columns}
        key = keys[parent]
        name = _identifier(key if key.endswith("_id") else f"{_singular(parent)}_id", "id", taken)
        link = {"name": name, "type": "reference", "to": f"{parent}.{key}"}
        at = next((i for i, c in enumerate(columns) if not c.get("primary_key")), len(columns))
        columns.insert(at, link)
        notes.append(f"{table['name']}: added {name}, the reference to its parent {parent}")
    for field in ("zipf", "weights", "nullable"):  # a child row always has its own parent
        link.pop(field, None)
    return link


def _aliases(table: dict[str, Any], link: dict[str, Any] | None) -> None:
    """Each related row is read under its own name, which no column of the table has: a
    second reference to one table gets an alias from its column name (manager_id -> manager).
    The parent link keeps the parent's name."""
    used = {c["name"] for c in table["columns"]}
    others = [c for c in table["columns"] if _is_ref(c) and c is not link]
    for column in [link] if link else []:
        used.add(column["to"].split(".")[0])
    for column in others:
        target = column["to"].split(".")[0]
        if target == table["name"]:
            continue  # a self reference is read by no column
        reads_as = column.get("alias") or target
        if reads_as in used:
            base = column["name"].removesuffix("_id")
            base = base if base != column["name"] else f"{base}_row"
            column["alias"] = _identifier(base, "row", used)
        else:
            used.add(reads_as)


def _aggregates(table: dict[str, Any], tables: list[dict[str, Any]], notes: list[str]) -> None:
    children = [t["name"] for t in tables if t["parent"] == table["name"]]
    find = _table_finder(children)
    kept = []
    for column in table["columns"]:
        if column.get("type") == "aggregate":
            child = find(column.get("of"))
            if child is None:
                label = f"{table['name']}.{column['name']}"
                notes.append(f"{label}: dropped; an aggregate needs a child table to sum over")
                continue
            column["of"] = child
        kept.append(column)
    table["columns"] = kept


def _size(
    table: dict[str, Any],
    raw: dict[str, Any],
    tables: list[dict[str, Any]],
    by_name: dict[str, dict[str, Any]],
    rows: int,
    notes: list[str],
) -> None:
    """Rows of a root table, count of a child. `rows` sizes the root tables, except those
    only looked up (a catalogue), which keep the answer's size up to `rows`."""
    parent = table["parent"]
    if parent is None:
        name = table["name"]
        has_children = any(t["parent"] == name for t in tables)
        looked_up = any(
            _is_ref(c) and c["to"].split(".")[0] == name
            for t in tables
            if t["name"] != name
            for c in t["columns"]
        )
        asked = raw.get("rows")
        if looked_up and not has_children:
            size = asked if isinstance(asked, int) and asked > 0 else _LOOKUP_DEFAULT_ROWS
            table["rows"] = min(size, rows)
        else:
            table["rows"] = rows
        return
    mean = raw.get("count_mean")
    if not isinstance(mean, int | float) or isinstance(mean, bool) or not 0 < mean <= 1000:
        notes.append(f"{table['name']}: no usable count_mean; 3 per {parent} row")
        mean = 3
    count: dict[str, Any] = {"mean": mean}
    high = raw.get("count_max")
    if isinstance(high, int) and not isinstance(high, bool) and high >= mean:
        count["max"] = high
    by, params = raw.get("count_by"), raw.get("count_params")
    parent_columns = {c["name"] for c in by_name[parent]["columns"]}
    if by in parent_columns and isinstance(params, list):
        means = {
            str(p["value"]): {"mean": p["mean"]}
            for p in params
            if isinstance(p, dict) and p.get("value") and isinstance(p.get("mean"), int | float)
        }
        if means:
            count.update(by=by, params=means)
    try:
        CountConfig.model_validate(count)
    except ValidationError:
        count = {"mean": mean}
    table["count"] = count


def _fix_tables(tables: list[dict[str, Any]], message: str, notes: list[str]) -> bool:
    """Fix the first problem of `message` that names a table: a cycle of lookups, a constraint,
    or a column (as for one table; else a reference or aggregate is dropped, and any other
    column is written by the LLM instead)."""
    for line in message.splitlines():
        found = _TABLE_AT.search(line)
        if not found or int(found[1]) >= len(tables):
            continue
        table, rest = tables[int(found[1])], line[found.end() :]
        cycle = re.search(r"in a cycle: (.+?);", rest)
        if cycle:
            return _break_cycle(tables, cycle[1].split(" -> "), notes)
        before = len(notes)
        rows = table.get("rows") if isinstance(table.get("rows"), int) else 1000
        fixed = (
            _fix_constraint(table, rest, notes)
            or _fix_dedupe(table, rest, notes)
            or _fix_cross_column(table["columns"], rest, notes, rows)
        )
        if not fixed:
            fixed = _replace_column(table, rest, notes)
        notes[before:] = [
            f"{table['name']}: {n}" if n.startswith("constraint") else f"{table['name']}.{n}"
            for n in notes[before:]
        ]
        if fixed:
            return True
    return False


def _replace_column(table: dict[str, Any], problem: str, notes: list[str]) -> bool:
    at = re.search(r"columns\[(\d+)\](?: \([^)]*\))?[^:]*: (.*)", problem)
    if not at or int(at[1]) >= len(table["columns"]):
        return False
    column = table["columns"][int(at[1])]
    if (column["type"] in _LATE or column.get("primary_key")) and len(table["columns"]) > 1:
        table["columns"].remove(column)
        notes.append(f"{column['name']}: dropped ({at[2]})")
    else:
        name = column["name"]
        prompt = re.sub(r"{{.*?}}", "", str(column.get("prompt") or column.get("template") or ""))
        column.clear()
        column.update(name=name, type="llm", prompt=prompt.strip() or _realistic(name))
        notes.append(f"{name}: an llm column now ({at[2]})")
    return True


def _break_cycle(tables: list[dict[str, Any]], path: list[str], notes: list[str]) -> bool:
    """Drop the lookups that close a cycle of tables reading each other."""
    by_name = {t["name"]: t for t in tables}
    for name, target in pairwise(path):
        table = by_name.get(name)
        if table is None:
            continue
        lookups = [
            c
            for c in table["columns"]
            if _is_ref(c)
            and c["to"].split(".")[0] == target
            and (target != table.get("parent") or c.get("alias"))
        ]
        for column in lookups:
            table["columns"].remove(column)
            notes.append(f"{name}.{column['name']}: dropped; {name} and {target} read each other")
        if lookups:
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


def to_yaml(config: AnyConfig, notes: list[str]) -> str:
    """The config as a commented YAML file: one line per column, its description above it;
    a multi-table config lists its tables, each with its parent and count or rows."""
    dump = config.model_dump(mode="json", by_alias=True, exclude_defaults=True)
    lines = [
        "# yaml-language-server: $schema=synthaix.schema.json",
        "# Generated by `synthaix translate` from:",
        *[f"#   {line}" for line in (config.description or "").splitlines()],
        "# Edit freely, then: synthaix validate <this file> && synthaix build <this file>",
    ]
    lines += [f"# repaired: {note}" for note in notes]
    if isinstance(config, RelationalConfig):
        lines.append(_block({key: getattr(config, key) for key in ("name", "description", "seed")}))
        lines.append("tables:")
        for table, data in zip(config.tables, dump["tables"], strict=True):
            head = {"name": table.name, "description": table.description}
            head |= {"rows": table.rows, "parent": table.parent}
            lines.append(_indent(_block({k: v for k, v in head.items() if v is not None}), "  - "))
            if "count" in data:
                lines.append(f"    count: {_flow(data['count'])}")
            lines.append("    columns:")
            lines += _column_lines(table.columns, data["columns"], "      ")
            lines += _constraint_lines(table.constraints, "    ")
    else:
        head = {key: getattr(config, key) for key in ("name", "description", "rows", "seed")}
        lines += [_block(head), "columns:"]
        lines += _column_lines(config.columns, dump["columns"], "  ")
        lines += _constraint_lines(config.constraints, "")
    tail = {"chunk_size": config.chunk_size, "provider": dump.get("provider", {})}
    tail["output"] = {"dir": f"out/{config.name}"}
    lines.append(_block(tail))
    return "\n".join(lines) + "\n"


def _column_lines(columns: list[Any], dumps: list[dict[str, Any]], indent: str) -> list[str]:
    lines = []
    for column, data in zip(columns, dumps, strict=True):
        if not isinstance(column, LlmColumn):  # an llm column's description is in its prompt
            data.pop("description", None)
            if column.description:
                lines.append(f"{indent}# {column.description}")
        lines.append(f"{indent}- {_flow({'name': column.name, 'type': column.type, **data})}")
    return lines


def _constraint_lines(constraints: list[Any], indent: str) -> list[str]:
    if not constraints:
        return []
    rules = [c.check if c.name is None else {"name": c.name, "check": c.check} for c in constraints]
    return [_indent(_block({"constraints": rules}), indent)]


def _flow(value: dict[str, Any]) -> str:
    return yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=10**6).strip()


def _indent(text: str, first: str) -> str:
    """`text` indented by the width of `first`, whose text starts the first line (`  - `)."""
    rest = " " * len(first)
    return "\n".join((first if i == 0 else rest) + line for i, line in enumerate(text.splitlines()))


def _block(value: dict[str, Any]) -> str:
    return yaml.safe_dump(value, sort_keys=False, allow_unicode=True, width=100).rstrip()
