"""Fault rates of the simulator, and the ways it spoils an otherwise good answer."""

from __future__ import annotations

import copy
import random
from dataclasses import dataclass, fields
from typing import Any


@dataclass(frozen=True)
class FaultRates:
    """Probability, per request, of each misbehaviour (0 to 1)."""

    malformed: float = 0.0  # truncated or broken JSON
    fences: float = 0.0  # answer wrapped in ```json fences
    chatter: float = 0.0  # prose before the JSON
    rate_limit: float = 0.0  # 429 with Retry-After
    server_error: float = 0.0  # 500/502/503
    dropped: float = 0.0  # connection closed without an answer
    slow: float = 0.0  # three times the latency
    duplicates: float = 0.0  # a row repeated, exactly or nearly
    wrong_types: float = 0.0  # a field of the wrong JSON type
    missing_fields: float = 0.0  # a required field left out
    short: float = 0.0  # fewer rows than asked
    refusal: float = 0.0  # prose and no JSON at all ("Sorry, I cannot help with that.")

    @classmethod
    def parse(cls, text: str) -> FaultRates:
        """`"malformed=0.3,rate_limit=0.1"` -> FaultRates; names as the fields above."""
        known = {f.name for f in fields(cls)}
        values: dict[str, float] = {}
        for item in filter(None, (p.strip() for p in text.split(","))):
            name, _, rate = item.partition("=")
            if name not in known:
                raise ValueError(f"unknown fault '{name}'; known: {', '.join(sorted(known))}")
            values[name] = float(rate)
        return cls(**values)


def spoil_rows(rows: list[dict[str, Any]], faults: FaultRates, rng: random.Random) -> list[str]:
    """Damage rows in place as the rates say; returns the names of the faults applied."""
    applied = []
    if rows and rng.random() < faults.short and len(rows) > 1:
        del rows[rng.randint(1, len(rows) - 1) :]
        applied.append("short")
    if len(rows) > 1 and rng.random() < faults.duplicates:
        twin = copy.deepcopy(rows[0])
        if rng.random() < 0.5:
            twin = {k: (_nearly(v, rng) if isinstance(v, str) else v) for k, v in twin.items()}
        if "id" in twin:
            twin["id"] = rows[-1].get("id", twin["id"])
        rows[-1] = twin
        applied.append("duplicates")
    if rows and rng.random() < faults.wrong_types:
        row = rng.choice(rows)
        key = rng.choice([k for k in row if k != "id"] or list(row))
        row[key] = 12345 if isinstance(row[key], str) else "not a number"
        applied.append("wrong_types")
    if rows and rng.random() < faults.missing_fields:
        row = rng.choice(rows)
        key = rng.choice([k for k in row if k != "id"] or list(row))
        del row[key]
        applied.append("missing_fields")
    return applied


def spoil_text(text: str, faults: FaultRates, rng: random.Random) -> tuple[str, list[str]]:
    applied = []
    if rng.random() < faults.refusal:
        return "Sorry, I cannot help with that.", ["refusal"]
    if rng.random() < faults.malformed:
        applied.append("malformed")
        if rng.random() < 0.5:
            text = text[: rng.randint(len(text) // 3, max(len(text) // 3, len(text) - 2))]
        else:
            text = text.replace('"', "'", 2).replace("}", "},", 1)
    if rng.random() < faults.fences:
        applied.append("fences")
        text = f"```json\n{text}\n```"
    if rng.random() < faults.chatter:
        applied.append("chatter")
        text = f"Sure! Here are the rows you asked for:\n{text}\nLet me know if you need more."
    return text, applied


def _nearly(value: str, rng: random.Random) -> str:
    """A near-duplicate: case, spacing or one typo."""
    choice = rng.randrange(3)
    if choice == 0:
        return value.upper()
    if choice == 1:
        return "  " + value.replace(" ", "  ") + " "
    if len(value) > 3:
        i = rng.randrange(1, len(value) - 1)
        return value[:i] + value[i + 1] + value[i] + value[i + 2 :]
    return value + "!"
