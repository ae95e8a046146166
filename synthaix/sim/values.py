"""Values that satisfy a JSON schema, for the simulator's answers.

A string `pattern` is read by the `pattern` column's parser (synthaix.columns.pattern), so the
simulator writes the patterns that column does (literals, \\d, \\w, escaped punctuation,
[classes], {n}, {n,m}, ?), plus `^` and `$` at the ends, which change nothing as its values span
the whole string. Any other pattern, or one no string of minLength to maxLength matches, raises
UnsupportedSchema, which the server answers with a 400: text ignoring the pattern would be
rejected row by row by the client, and the build would spend its requests before failing.
"""

from __future__ import annotations

import random
import string
import uuid
from functools import lru_cache
from typing import Any

from synthaix.columns.pattern import MAX_LENGTH, Part, PatternError, parse

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


class UnsupportedSchema(ValueError):
    """A schema the simulator cannot write valid values for (a pattern outside its language)."""


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
            high = _at_least(low, int(schema.get("maxItems", max(low, 3))), "minItems", "maxItems")
            items = schema.get("items", {"type": "string"})
            return [fake_value(items, rng) for _ in range(rng.randint(low, high))]
        case "integer":
            low = int(schema.get("minimum", 0))
            high = _at_least(low, int(schema.get("maximum", low + 1000)), "minimum", "maximum")
            return rng.randint(low, high)
        case "number":
            low = float(schema.get("minimum", 0.0))
            high = _at_least(low, float(schema.get("maximum", low + 1000.0)), "minimum", "maximum")
            return round(rng.uniform(low, high), 2)
        case "boolean":
            return rng.random() < 0.5
        case "null":
            return None
    return _text(schema, rng)


def _at_least(low: Any, high: Any, low_name: str, high_name: str) -> Any:
    """`high`, or a 400 for bounds no value meets (it crashed, dropping the connection)."""
    if low > high:
        raise UnsupportedSchema(f"no value meets {low_name} {low} and {high_name} {high}")
    return high


def _text(schema: dict[str, Any], rng: random.Random) -> str:
    limit = int(schema.get("maxLength", 120))
    low = int(schema.get("minLength", 1))
    if "maxLength" in schema:
        _at_least(low, limit, "minLength", "maxLength")
    if isinstance(schema.get("pattern"), str):
        return _matching(schema["pattern"], low, int(schema.get("maxLength", MAX_LENGTH)), rng)
    date = f"20{rng.randint(10, 29)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
    time = f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}"
    match schema.get("format"):
        case "date":
            return date
        case "date-time":
            return f"{date}T{time}Z"
        case "time":
            return time
        case "uuid":
            return str(uuid.UUID(int=rng.getrandbits(128), version=4))
        case "email":
            return "".join(rng.choices(string.ascii_lowercase, k=8)) + "@example.com"
    words = [rng.choice(_WORDS) for _ in range(rng.randint(4, 14))]
    text = " ".join(words).capitalize() + f" #{rng.randint(1000, 9999)}."
    text = text[:limit]
    return text if len(text) >= low else text.ljust(low, "x")


def _matching(pattern: str, low: int, high: int, rng: random.Random) -> str:
    """A string matching `pattern` whole and `low` to `high` characters long."""
    parts = _parts(pattern)
    counts = [part.low for part in parts]
    shortest, longest = sum(counts), sum(part.high for part in parts)
    if max(low, shortest) > min(high, longest):
        raise UnsupportedSchema(
            f"the simulator cannot write text matching '{pattern}' ({shortest} to {longest} "
            f"characters) in {low} to {high} characters"
        )
    # A length allowed by both, then parts lengthened at random up to it: unlike the pattern
    # column's draw, which favours the longest strings, this keeps within maxLength.
    for _ in range(rng.randint(max(low, shortest), min(high, longest)) - shortest):
        grow = rng.choice([i for i, part in enumerate(parts) if counts[i] < part.high])
        counts[grow] += 1
    drawn = zip(parts, counts, strict=True)
    return "".join(rng.choice(part.chars) for part, n in drawn for _ in range(n))


@lru_cache(maxsize=256)
def _parts(pattern: str) -> tuple[Part, ...]:
    """The pattern column's parse of `pattern`, its `^` and `$` anchors aside."""
    bare = pattern.removeprefix("^")
    escapes = len(bare) - 1 - len(bare[:-1].rstrip("\\"))  # backslashes before a final $
    if bare.endswith("$") and escapes % 2 == 0:
        bare = bare[:-1]
    try:
        parts = parse(bare)
    except PatternError as exc:
        shown = f"'{pattern}'" if bare == pattern else f"'{pattern}' (in '{bare}')"
        raise UnsupportedSchema(f"the simulator cannot write text matching {shown}: {exc}") from exc
    if not parts:
        raise UnsupportedSchema(f"the simulator cannot write text matching '{pattern}'")
    return tuple(parts)
