"""Values that satisfy a JSON schema, for the simulator's answers."""

from __future__ import annotations

import random
import string
from typing import Any

# fmt: off
_WORDS = [
    "quick", "delivery", "friendly", "staff", "great", "value", "broken", "arrived", "late",
    "refund", "works", "perfectly", "easy", "setup", "battery", "lasts", "sturdy", "cheap",
    "flimsy", "recommend", "again", "support", "helpful", "slow", "shipping", "excellent",
    "quality", "poor", "packaging", "colour", "size", "fits", "love", "hate", "okay", "decent",
    "amazing", "terrible", "price", "product", "order", "service", "app", "update", "crash",
    "login", "account", "invoice",
]
# fmt: on


def fake_value(schema: dict[str, Any], rng: random.Random) -> Any:
    """A random value valid against the subset of JSON Schema the project uses."""
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return rng.choice(schema["enum"])
    for key in ("anyOf", "oneOf"):
        if schema.get(key):
            options = [s for s in schema[key] if s.get("type") != "null"] or schema[key]
            return fake_value(options[0], rng)
    kind = schema.get("type", "string")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    match kind:
        case "object":
            props = schema.get("properties", {})
            return {name: fake_value(sub, rng) for name, sub in props.items()}
        case "array":
            low = int(schema.get("minItems", 1))
            high = int(schema.get("maxItems", max(low, 3)))
            items = schema.get("items", {"type": "string"})
            return [fake_value(items, rng) for _ in range(rng.randint(low, high))]
        case "integer":
            low = int(schema.get("minimum", 0))
            return rng.randint(low, int(schema.get("maximum", low + 1000)))
        case "number":
            low = float(schema.get("minimum", 0.0))
            return round(rng.uniform(low, float(schema.get("maximum", low + 1000.0))), 2)
        case "boolean":
            return rng.random() < 0.5
        case "null":
            return None
    return _text(schema, rng)


def _text(schema: dict[str, Any], rng: random.Random) -> str:
    limit = int(schema.get("maxLength", 120))
    low = int(schema.get("minLength", 1))
    if schema.get("format") == "date":
        return f"20{rng.randint(10, 29)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
    if schema.get("format") == "email":
        return "".join(rng.choices(string.ascii_lowercase, k=8)) + "@example.com"
    words = [rng.choice(_WORDS) for _ in range(rng.randint(4, 14))]
    text = " ".join(words).capitalize() + f" #{rng.randint(1000, 9999)}."
    text = text[:limit]
    return text if len(text) >= low else text.ljust(low, "x")
