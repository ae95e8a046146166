"""Schedule-aware data: the `as_of` time a build stands at, relative times that resolve against
it, and a seed derived from it.

A scheduled flow run's as_of is its scheduled start, so an hourly append with
`{start: "-1h", end: "now"}` holds exactly the hour before its slot, and rerunning that slot
(a retry, a resume) makes the same hour again. A relative `end` excludes its own instant:
consecutive windows tile without overlap.

as_of is UTC, like every timestamp a build writes (naive, no time zone).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from typing import Any

import numpy as np
from pydantic import GetCoreSchemaHandler
from pydantic_core import core_schema

_SYNTAX = r"^\s*(now|today)?\s*(?:([+-])\s*(\d+(?:\.\d+)?\s*[a-z]+))?\s*$"
_RELATIVE = re.compile(_SYNTAX)  # on lower-cased text: NOW-1H is now-1h
EXAMPLES = "now, today, -1h, now-30min, today-7d, -1mo"


class Relative(str):
    """A time relative to the build's as_of: `now`, `today` (as_of's midnight), an offset from
    now (`-1h`, `+2d`), or an offset from either (`now-30min`, `today-7d`). Units: s, min, h,
    d, w, mo, y (months and years are calendar ones)."""

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> Any:
        return core_schema.no_info_after_validator_function(
            cls._checked,
            core_schema.str_schema(pattern=_SYNTAX),
            serialization=core_schema.plain_serializer_function_ser_schema(str),
        )

    @classmethod
    def _checked(cls, text: str) -> Relative:
        from synthaix.columns.temporal import not_a_duration, parse_duration

        match = _RELATIVE.fullmatch(text.lower())
        if match is None or (match[1] is None and match[3] is None):
            raise ValueError(
                f"'{text}' is neither a date (YYYY-MM-DD[ HH:MM:SS]) nor a time relative to "
                f"as_of ({EXAMPLES})"
            )
        amount = match[3]
        if amount is not None:
            found = parse_duration(amount)
            if found is None:
                raise ValueError(f"'{text}' is not a relative time: {not_a_duration(amount)}")
            if found[2] and not found[0].is_integer():
                raise ValueError(f"'{amount}': months and years move in whole units")
        return cls(text.strip().lower())

    def resolve(self, as_of: dt.datetime) -> dt.datetime:
        from synthaix.columns.temporal import add_months, parse_duration

        anchor, sign, amount = _RELATIVE.fullmatch(self.lower()).groups()  # type: ignore[union-attr]
        base = as_of if anchor != "today" else dt.datetime.combine(as_of.date(), dt.time())
        if amount is None:
            return base
        size, unit, calendar = parse_duration(amount)  # type: ignore[misc]
        steps = size * unit * (-1 if sign == "-" else 1)
        try:
            if not calendar:
                return base + dt.timedelta(seconds=steps)
            moved = add_months(np.array([np.datetime64(base, "us")]), np.array([int(steps)]))
            found = moved[0].astype(dt.datetime)
        except (OverflowError, ValueError):
            found = None
        if not isinstance(found, dt.datetime):  # numpy gives an int outside 0001..9999
            raise ValueError(f"'{self}' at as_of {as_of} is outside the years 0001 to 9999")
        return found

    @property
    def below_a_day(self) -> bool:
        """Whether it can fall inside a day (a date column cannot)."""
        from synthaix.columns.temporal import parse_duration

        amount = _RELATIVE.fullmatch(self.lower())[3]  # type: ignore[index]
        found = parse_duration(amount) if amount else None
        return found is not None and not found[2] and (found[0] * found[1]) % 86400 != 0


def as_utc(value: dt.datetime) -> dt.datetime:
    """A plain naive UTC datetime, to the second (aware values are converted; a subclass, such
    as Prefect's DateTime of a scheduled start, becomes a datetime YAML and JSON can write)."""
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC)
    return dt.datetime(*value.timetuple()[:6])


def now() -> dt.datetime:
    return as_utc(dt.datetime.now(dt.UTC))


def derived_seed(as_of: dt.datetime) -> int:
    """`seed: as_of`: a seed that differs for every as_of and is the same for the same one
    (the first 63 bits of SHA-256 of its ISO text)."""
    digest = hashlib.sha256(as_utc(as_of).isoformat().encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def settle(model: Any, columns: list[tuple[tuple[str | int, ...], Any]]) -> list[Any]:
    """Fix a validated config's as_of (None unless something uses it: a relative time or
    `seed: as_of`; now if not given) and its seed, and stand every relative column at it.
    `columns`: (location, column) pairs. Returns (location, message) problems of ranges that
    only fail at this as_of."""
    relative = [(loc, c) for loc, c in columns if getattr(c, "uses_as_of", False)]
    problems: list[Any] = []
    # An instance validated again (Prefect checks a flow's config parameter) has the derived
    # seed already: the private flag says where it came from.
    from_as_of = model.seed == "as_of" or model._seed_as_of
    as_of = None
    if relative or from_as_of:
        as_of = as_utc(model.as_of) if model.as_of is not None else now()
    # Frozen models: set once here, during validation, and marked as set so a dump (which
    # overrides re-validate) carries them.
    object.__setattr__(model, "as_of", as_of)
    model.__pydantic_fields_set__.add("as_of")
    if from_as_of:
        object.__setattr__(model, "seed", derived_seed(as_of))  # type: ignore[arg-type]
        model._seed_as_of = True
    for loc, column in relative:
        column.stand_at(as_of)
        problems += [((*loc, "end"), f"at as_of {as_of}: {m}") for m in column.range_problems()]
    return problems
