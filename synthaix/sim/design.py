"""The simulator's answer to a dataset design request (`synthaix translate`): for a description
that lists several things it knows (customers, products, orders, order items, reviews), a
plausible multi-table design; for anything else, one table of schema-valid random columns, as
the simulator answers every other schema.

The description is read from the request's first line, after its first colon ("Design a
synthetic dataset: ..."). Every key of the requested schema is filled (unused ones null), so
the answer is valid against the strict schema it was asked with.
"""

from __future__ import annotations

import random
import re
from typing import Any

from synthaix.sim.values import fake_value

# Entities the designer knows, the words that name them, and their columns. A column reading
# another table only appears when that table is part of the design (`needs`).
_WORDS = {
    "customers": ("customer", "client", "buyer", "shopper"),
    "products": ("product", "catalogue", "catalog", "article"),
    "orders": ("order", "purchase"),
    "items": ("order item", "line item", "item", "order line"),
    "reviews": ("review", "rating"),
}
_CATEGORIES = ["kitchen", "garden", "electronics", "toys"]


def is_design_request(schema: dict[str, Any] | None) -> bool:
    """Whether `schema` asks for tables of columns (the translate schema)."""
    tables = ((schema or {}).get("properties") or {}).get("tables") or {}
    item = (tables.get("items") or {}).get("properties") or {}
    return "columns" in item and "parent" in item


def design(schema: dict[str, Any], prompt: str, rng: random.Random) -> dict[str, Any]:
    """An answer to the design request `prompt` that is valid against `schema`."""
    table_schema = schema["properties"]["tables"]["items"]
    description = prompt.split("\n", 1)[0].partition(":")[2].strip() or prompt
    kinds = _entities(description)
    if len(kinds) < 2:  # one thing: its fields listed after "with", else random columns
        column_schema = table_schema["properties"]["columns"]["items"]
        head, _, fields = description.lower().partition(" with ")
        name = re.sub(r"[^a-z0-9]+", "_", re.sub(r"^(?:an?|the)\s+", "", head)).strip("_")
        columns = [_field(word) for word in re.split(r",|\band\b", fields) if word.strip()]
        if not columns:
            table = fake_value(table_schema, rng)
            return {"name": fake_value({"type": "string"}, rng), "tables": [table]}
        table = {"name": name or "records", "rows": 1000, "columns": columns}
        table["columns"] = [_complete(c, column_schema, rng) for c in table["columns"]]
        return {"name": table["name"], "tables": [_complete(table, table_schema, rng)]}
    tables = [_table(kind, kinds) for kind in _ORDER if kind in kinds]
    column_schema = table_schema["properties"]["columns"]["items"]
    for table in tables:
        table["columns"] = [_complete(c, column_schema, rng) for c in table["columns"]]
    head = description.lower().partition(" with ")[0]
    name = re.sub(r"^(?:an?|the)\s+", "", head.strip()) or "dataset"
    return {"name": name, "tables": [_complete(t, table_schema, rng) for t in tables]}


_ORDER = ["customers", "products", "orders", "items", "reviews"]


def _entities(description: str) -> set[str]:
    """The known things a description lists after "with" ("An online shop with customers,
    orders ..."); none when the text before "with" names one (then the rest are its fields:
    "Customers with name, email and a review")."""
    text = description.lower()
    head, _, tail = text.partition(" with ")
    if not tail or _mentions(head):
        return set()
    kinds = _mentions(tail)
    if "items" in kinds:
        kinds |= {"orders", "products"}  # an item is a line of an order, of a product
    if "reviews" in kinds and "product" in tail:
        kinds.add("products")
    return kinds


def _mentions(text: str) -> set[str]:
    found = set()
    for kind, words in _WORDS.items():
        for word in words:
            pattern = rf"\b{word}s?\b"
            if kind == "orders":  # "order items" names items, not orders
                pattern = rf"\b{word}s?\b(?! (?:items?|lines?)\b)"
            if re.search(pattern, text):
                found.add(kind)
                break
    return found


# A listed field's words -> its column (the first that matches); anything else is LLM text.
_FIELDS: list[tuple[str, dict[str, Any]]] = [
    (r"e-?mail", {"name": "email", "type": "person.email"}),
    (r"company|employer", {"name": "company", "type": "company.name"}),
    (r"first name", {"name": "first_name", "type": "person.first_name"}),
    (r"last name|surname", {"name": "last_name", "type": "person.last_name"}),
    (r"name", {"name": "name", "type": "person.full_name"}),
    (r"phone", {"name": "phone", "type": "person.phone"}),
    (r"age", {"name": "age", "type": "integer", "min": 18, "max": 90}),
    (r"city", {"name": "city", "type": "address.city"}),
    (r"country", {"name": "country", "type": "address.country"}),
    (r"address", {"name": "address", "type": "address.full"}),
    (r"job|title|role", {"name": "job", "type": "person.job"}),
    (r"rating|score|stars", {"name": "rating", "type": "integer", "min": 1, "max": 5}),
    (r"price|amount|total", {"name": "price", "type": "float", "min": 1, "max": 500}),
    (
        r"date|day|joined|signup",
        {"name": "date", "type": "date", "start": "2023-01-01", "end": "2024-12-31"},
    ),
]


def _field(words: str) -> dict[str, Any]:
    text = re.sub(r"^\s*(?:an?|the|their|its|some)\s+", "", words.strip())
    for pattern, column in _FIELDS:
        if re.search(rf"\b(?:{pattern})\b", text):
            return dict(column)
    name = re.sub(r"[^a-z0-9]+", "_", text).strip("_")[:40] or "text"
    return {"name": name, "type": "llm", "prompt": f"A realistic {text}", "max_length": 200}


def _table(kind: str, kinds: set[str]) -> dict[str, Any]:
    match kind:
        case "customers":
            return {
                "name": "customers",
                "description": "People who shop here",
                "rows": 1000,
                "columns": [
                    {"name": "customer_id", "type": "sequence", "primary_key": True},
                    {"name": "first_name", "type": "person.first_name"},
                    {"name": "last_name", "type": "person.last_name"},
                    {
                        "name": "email",
                        "type": "person.email",
                        "from": ["first_name", "last_name"],
                        "unique": True,
                    },
                    {"name": "tier", "type": "category", "values": ["basic", "silver", "gold"]},
                    {
                        "name": "signup_date",
                        "type": "date",
                        "start": "2022-01-01",
                        "end": "2024-12-31",
                    },
                ],
            }
        case "products":
            return {
                "name": "products",
                "description": "The shop's catalogue",
                "rows": 50,
                "columns": [
                    {"name": "product_id", "type": "sequence", "primary_key": True},
                    {"name": "category", "type": "category", "values": _CATEGORIES},
                    {
                        "name": "name",
                        "type": "llm",
                        "prompt": "A short product name for a {{ category }} product",
                        "max_length": 60,
                    },
                    {
                        "name": "price",
                        "type": "float",
                        "min": 5,
                        "max": 200,
                        "by": "category",
                        "params": [{"value": "electronics", "min": 20, "max": 900}],
                    },
                ],
            }
        case "orders":
            table: dict[str, Any] = {
                "name": "orders",
                "description": "Orders placed by customers",
                "columns": [{"name": "order_id", "type": "sequence", "primary_key": True}],
            }
            if "customers" in kinds:
                table.update(parent="customers", count_mean=3, count_max=15, count_by="tier")
                table["count_params"] = [{"value": "gold", "mean": 6}]
                table["columns"] += [
                    {"name": "customer_id", "type": "reference", "to": "customers.customer_id"},
                    {
                        "name": "ordered_at",
                        "type": "datetime",
                        "after": "customers.signup_date",
                        "offset_min": "1h",
                        "offset_max": "365d",
                    },
                ]
            else:
                table["rows"] = 3000
                table["columns"].append(
                    {
                        "name": "ordered_at",
                        "type": "datetime",
                        "start": "2023-01-01",
                        "end": "2024-12-31",
                    }
                )
            table["columns"].append(
                {"name": "status", "type": "category", "values": ["placed", "shipped", "returned"]}
            )
            if "items" in kinds:
                table["columns"].append(
                    {
                        "name": "total",
                        "type": "aggregate",
                        "of": "items",
                        "expr": "sum(quantity * unit_price)",
                        "default": 0,
                    }
                )
            return table
        case "items":
            return {
                "name": "items",
                "description": "Lines of an order",
                "parent": "orders",
                "count_mean": 2,
                "count_max": 6,
                "columns": [
                    {"name": "item_id", "type": "sequence", "primary_key": True},
                    {"name": "order_id", "type": "reference", "to": "orders.order_id"},
                    {
                        "name": "product_id",
                        "type": "reference",
                        "to": "products.product_id",
                        "zipf": 1.1,
                    },
                    {"name": "quantity", "type": "integer", "min": 1, "max": 5},
                    {"name": "unit_price", "type": "sql", "expr": "products.price"},
                ],
            }
        case _:
            return _reviews(kinds)


def _reviews(kinds: set[str]) -> dict[str, Any]:
    """Reviews of what was bought: of an item if there are items, else of an order or by a
    customer, with a product looked up when the parent has none."""
    parent = next((k for k in ("items", "orders", "customers") if k in kinds), None)
    columns: list[dict[str, Any]] = [{"name": "review_id", "type": "sequence", "primary_key": True}]
    table: dict[str, Any] = {"name": "reviews", "description": "Reviews written by buyers"}
    if parent is None:
        table["rows"] = 500
    else:
        key = f"{parent[:-1]}_id"
        table.update(parent=parent, count_mean=0.3, count_max=2)
        columns.append({"name": key, "type": "reference", "to": f"{parent}.{key}"})
    if "products" in kinds and parent != "items":
        columns.append(
            {"name": "product_id", "type": "reference", "to": "products.product_id", "zipf": 1.1}
        )
    columns.append({"name": "stars", "type": "integer", "min": 1, "max": 5})
    about = "of {{ products.name }} ({{ products.category }})" if "products" in kinds else ""
    by = "by a {{ customers.tier }}-tier customer" if "customers" in kinds else ""
    prompt = " ".join(p for p in ("A {{ stars }}-star review", about, by) if p)
    columns.append({"name": "review", "type": "llm", "prompt": prompt, "max_length": 300})
    table["columns"] = columns
    return table


def _complete(value: dict[str, Any], schema: dict[str, Any], rng: random.Random) -> dict:
    """`value` with every other property of the closed `schema`: null where the schema allows
    it, else a random valid value (a boolean flag false, a text empty)."""
    out = {}
    for name, sub in schema.get("properties", {}).items():
        kinds = sub.get("type")
        if name in value:
            out[name] = value[name]
        elif isinstance(kinds, list) and "null" in kinds:
            out[name] = None
        elif kinds == "boolean":
            out[name] = False
        elif kinds == "array":
            out[name] = []
        elif kinds == "string" and "enum" not in sub:
            out[name] = ""
        else:
            out[name] = fake_value(sub, rng)
    return out
