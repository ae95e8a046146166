"""Dates and datetimes: drawn uniformly from a range, or at an offset from an earlier column.

Offsets are durations: 30s, 15min, 1h, 5d, 2w have fixed lengths; 3mo, 1y are calendar units
(Jan 31 + 1mo = Feb 28 or 29: the day is clamped to the end of the month). A month has no fixed
length, so one offset uses one kind of unit.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any, ClassVar, Literal

import numpy as np
import pyarrow as pa
from pydantic import Field, PrivateAttr, field_validator

from synthaix.asof import EXAMPLES, Relative, now
from synthaix.columns.base import ChunkContext
from synthaix.columns.conditional import fail_at, require
from synthaix.columns.numeric import Anchored, Sampler

_EPOCH = dt.date(1970, 1, 1)
# What a date or datetime column can hold (Python's dates, which the build converts through).
_FIRST, _LAST = (
    np.datetime64("0001-01-01T00:00:00", "us"),
    np.datetime64("9999-12-31T23:59:59.999999", "us"),
)
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([a-z]+)")
_UNITS: dict[str, tuple[int, bool]] = {  # unit -> (seconds or months in one, calendar?)
    **dict.fromkeys(("s", "second", "seconds"), (1, False)),
    **dict.fromkeys(("min", "minute", "minutes"), (60, False)),
    **dict.fromkeys(("h", "hour", "hours"), (3600, False)),
    **dict.fromkeys(("d", "day", "days"), (86400, False)),
    **dict.fromkeys(("w", "week", "weeks"), (604800, False)),
    **dict.fromkeys(("mo", "month", "months"), (1, True)),
    **dict.fromkeys(("y", "year", "years"), (12, True)),
}


def parse_duration(text: str) -> tuple[float, int, bool] | None:
    """'5d' -> (5.0, 86400, False); '3mo' -> (3.0, 1, True): amount, seconds (or months) per
    unit, and whether the unit is a calendar one. None if it is not a duration."""
    match = _DURATION.fullmatch(text.strip().lower())
    if match is None or match[2] not in _UNITS:
        return None
    size, calendar = _UNITS[match[2]]
    return float(match[1]), size, calendar


def not_a_duration(raw: object) -> str:
    match = _DURATION.fullmatch(str(raw).strip().lower())
    if match is not None and match[2] == "m":
        return f"'{raw}': m is ambiguous (minutes or months); write min or mo"
    return f"'{raw}' is not a duration; write e.g. 30s, 15min, 1h, 5d, 2w, 3mo or 1y"


def _when(value: np.datetime64) -> str:
    """A date, or a timestamp to the second (or finer, if it has a fraction), for messages."""
    text = np.datetime_as_string(value, unit="auto")
    return text if value.dtype == "datetime64[D]" or "T" in text else f"{text}T00:00:00"


def add_months(times: np.ndarray, months: np.ndarray) -> np.ndarray:
    """Calendar month arithmetic on datetime64 values: the day of the month is kept, or clamped
    to the last day of the target month, and so is the time of day. Vectorised."""
    day = times.astype("datetime64[D]")
    month = day.astype("datetime64[M]")
    target = month + months.astype("timedelta64[M]")
    length = (target + 1).astype("datetime64[D]") - target.astype("datetime64[D]")
    into = np.minimum(day - month.astype("datetime64[D]"), length - 1)
    moved = (target.astype("datetime64[D]") + into).astype(times.dtype)
    return moved + (times - day.astype(times.dtype))


def _relative_or_value(value: object) -> object:
    """Text that is not an ISO date is a relative time, with one message if it is neither."""
    if isinstance(value, str) and not isinstance(value, Relative):
        try:
            dt.datetime.fromisoformat(value.strip())
        except ValueError:
            return Relative._checked(value)
    return value


class _Temporal(Anchored):
    """What dates and datetimes share; values are whole units (days, seconds) since 1970."""

    _OWN: ClassVar[tuple[str, ...]] = ("start", "end")
    _BASES: ClassVar[str] = "date or datetime columns"
    _EXAMPLE: ClassVar[str] = "5d"
    _UNIT: ClassVar[str]  # numpy unit of one step: D or s
    _VALUE_UNIT: ClassVar[str]  # numpy unit of the values: D, or us (the column's timestamps)
    _SECONDS: ClassVar[int]  # seconds in one step
    _SQL_TYPE: ClassVar[str]
    _UNIT_NAME: ClassVar[str]  # what whole steps are, for messages
    _UNIT_SHORT: ClassVar[str]  # one step as a duration: d, s
    _as_of: dt.datetime | None = PrivateAttr(default=None)  # set by the config (synthaix.asof)

    @property
    def uses_as_of(self) -> bool:
        """Relative start/end, its own or a `by` segment's (params)."""
        own = any(isinstance(getattr(self, f), Relative) for f in ("start", "end"))
        return own or any(v.uses_as_of for _, v in self._valid() if v is not self)

    def stand_at(self, as_of: dt.datetime) -> None:
        """Resolve relative start/end, and each `by` segment's, against this time."""
        self._as_of = as_of
        for _, variant in self._valid():
            variant._as_of = as_of

    def range_problems(self) -> list[str]:
        """Why the range (or a segment's) is empty at as_of; for relative ranges, which are
        checked once as_of is known (synthaix.asof.settle), not when the column is read."""
        found = []
        for key, variant in self._valid():
            if variant.base is not None or not variant.uses_as_of:
                continue
            try:
                variant._check_range()
            except ValueError as exc:
                found.append(f"{exc}" if key is None else f"where {self.by} is {key!r}: {exc}")
        return found

    def bounds(self) -> tuple[Any, Any]:
        """start and end as values: relative ones resolved against as_of; a relative end
        excludes its own instant (the step before it), so consecutive windows never overlap."""
        return self._resolved(self.start, False), self._resolved(self.end, True)  # type: ignore[attr-defined]

    def _resolved(self, value: Any, end: bool) -> Any:
        if not isinstance(value, Relative):
            return value
        moment = value.resolve(self._as_of or now())
        if end:
            moment -= dt.timedelta(seconds=self._SECONDS)
        return self._at(moment)

    def _at(self, moment: dt.datetime) -> Any:
        return moment

    def _check_range(self) -> None:
        require(self, "start", "end")
        if self._as_of is None and self.uses_as_of:
            return  # checked at the build's as_of (range_problems)
        start, end = self.bounds()
        if start > end:
            end_given = self.end  # type: ignore[attr-defined]
            excluded = ""
            if isinstance(end_given, Relative) and start <= self._resolved(end_given, False):
                excluded = (
                    "; a relative end excludes its own instant: to include it, write "
                    f"{end_given}+1{self._UNIT_SHORT}"
                )
            raise ValueError(f"start ({start}) is after end ({end}){excluded}")

    def _units(self, value: Any) -> int:
        raise NotImplementedError

    def _typed(self, units: np.ndarray) -> pa.Array:
        raise NotImplementedError

    def _difference(self, value: str, base: str) -> str:
        """value - base in steps (days, seconds), as SQL."""
        raise NotImplementedError

    def _own_sampler(self) -> Sampler:
        first, last = map(self._units, self.bounds())
        return Sampler("uniform", first, last, integer=True)

    def _draw(self, ctx: ChunkContext) -> pa.Array:
        return self._typed(self._own_sampler().sample(ctx.rng, ctx.rows))

    def _range_capacity(self) -> int | None:
        start, end = self.bounds()
        return self._units(end) - self._units(start) + 1

    def _accepts(self, kind: pa.DataType) -> bool:
        return pa.types.is_date(kind) or pa.types.is_timestamp(kind)

    def _offset_amounts(self) -> dict[str, float]:
        return self._durations()[0]

    def _durations(self) -> tuple[dict[str, float], bool]:
        """The offset's amounts in steps of the column (days, seconds), or in months if it uses
        calendar units, and which of the two; fails at an amount that is not one."""
        parsed: dict[str, tuple[float, int, bool | None]] = {}
        for field in ("min", "max", "mean", "std"):
            raw = getattr(self.offset, field)
            if raw is not None and not isinstance(raw, str) and raw == 0:
                parsed[field] = (0.0, 1, None)  # zero needs no unit
            elif raw is not None:
                if str(raw).strip().startswith("-"):
                    fail_at(("offset", field), f"offsets are never negative; use {self._other}")
                found = parse_duration(raw) if isinstance(raw, str) else None
                if found is None:
                    fail_at(("offset", field), not_a_duration(raw))
                parsed[field] = found
        kinds = {calendar for _, _, calendar in parsed.values() if calendar is not None}
        if len(kinds) > 1:
            fail_at(
                ("offset",),
                "offset mixes months or years with fixed units (s, min, h, d, w); a month has no "
                "fixed length, so use one kind",
            )
        calendar = True in kinds
        amounts = {}
        for field, (amount, size, _) in parsed.items():
            steps = amount * size / (1 if calendar else self._SECONDS)
            finer = not calendar and size < self._SECONDS  # hours for a date
            if (field in ("min", "max") or finer) and not steps.is_integer():
                unit = "months" if calendar else self._UNIT_NAME
                raw = getattr(self.offset, field)
                fail_at(("offset", field), f"'{raw}' is not a whole number of {unit}")
            amounts[field] = steps
        return amounts, calendar

    def _shift(self, base: pa.Array, offsets: np.ndarray, ctx: ChunkContext) -> pa.Array:
        """In the values' own unit (a datetime keeps its microseconds: shifting whole seconds
        of a truncated base could land before it). A result before 0001-01-01 or after
        9999-12-31 is an error naming the row, never a value the build cannot write."""
        unit, calendar = self._VALUE_UNIT, self._durations()[1]
        valid = base.is_valid().to_numpy(zero_copy_only=False)
        first, last = _FIRST.astype(f"datetime64[{unit}]"), _LAST.astype(f"datetime64[{unit}]")
        given = base.to_numpy(zero_copy_only=False).astype(f"datetime64[{unit}]")
        inside = valid & (given >= first) & (given <= last)
        start = np.where(inside, given, first)
        # No offset longer than 0001..9999 can land inside; the rest cannot overflow int64.
        span = 12 * 10_000 if calendar else 10_000 * 366 * 86_400 // self._SECONDS
        far = offsets > span
        steps = np.where(far, 0, offsets).astype(np.int64)
        steps = steps if self.after else -steps
        if calendar:
            moved = add_months(start, steps)
        else:
            step = np.timedelta64(1, self._UNIT).astype(f"timedelta64[{unit}]")
            moved = start + steps * step
        bad = valid & (~inside | far | (moved < first) | (moved > last))
        if bad.any():
            raise self._outside_calendar(ctx, given, offsets, moved, int(np.argmax(bad)), far)
        return pa.array(moved, type=self.arrow_type(), mask=~valid)

    def _outside_calendar(
        self,
        ctx: ChunkContext,
        base: np.ndarray,
        offsets: np.ndarray,
        moved: np.ndarray,
        row: int,
        far: np.ndarray,
    ) -> Exception:
        calendar = self._durations()[1]
        unit = "months" if calendar else "days" if self._UNIT == "D" else "s"
        value = "far outside" if far[row] else _when(moved[row])
        sign = "+" if self.after else "-"
        what = f"{self.base} {_when(base[row])} {sign} offset {int(offsets[row])} {unit} = {value}"
        limit = f"outside what a {self.type} column can hold (0001-01-01 to 9999-12-31)"  # type: ignore[attr-defined]
        return self._out_of_range(ctx, row, what, limit)

    def _offset_sql(self, value: str, base: str) -> str:
        base = f"CAST({base} AS {self._SQL_TYPE})"  # the base's date, or its midnight
        if not self._durations()[1]:
            return self._difference(value, base)
        months = f"date_diff('month', {base}, {value})"
        # NULL unless the value is exactly that many calendar months away (the day clamped).
        exact = f"{value} = {base} + to_months(CAST({months} AS INTEGER))"
        return f"(CASE WHEN {exact} THEN {months} END)"


class DateColumn(_Temporal):
    """A calendar date between `start` and `end`, both included; or at an offset from an
    earlier date or datetime column (`after`/`before`)."""

    type: Literal["date"] = "date"
    start: dt.date | Relative | None = Field(
        default=None,
        union_mode="left_to_right",
        description="First possible date (YYYY-MM-DD), or relative to the build's as_of "
        f"({EXAMPLES}); not with after/before.",
    )
    end: dt.date | Relative | None = Field(
        default=None,
        union_mode="left_to_right",
        description="Last possible date (YYYY-MM-DD); a relative one (e.g. today) is excluded "
        "itself. Not with after/before.",
    )

    _UNIT: ClassVar[str] = "D"
    _VALUE_UNIT: ClassVar[str] = "D"
    _SECONDS: ClassVar[int] = 86400
    _SQL_TYPE: ClassVar[str] = "DATE"
    _UNIT_SHORT: ClassVar[str] = "d"
    _UNIT_NAME: ClassVar[str] = "days (a date has no time of day)"

    @field_validator("start", "end", mode="before")
    @classmethod
    def _relative(cls, value: object) -> object:
        return _relative_or_value(value)

    @field_validator("start", "end")
    @classmethod
    def _whole_days(cls, value: object) -> object:
        if isinstance(value, Relative) and value.below_a_day:
            raise ValueError(f"'{value}': a date column moves in whole days, e.g. today-7d")
        return value

    def _at(self, moment: dt.datetime) -> Any:
        return moment.date()

    def arrow_type(self) -> pa.DataType:
        return pa.date32()

    def _units(self, value: dt.date) -> int:
        return (value - _EPOCH).days

    def _typed(self, units: np.ndarray) -> pa.Array:
        return pa.array(units.astype(np.int32), type=pa.date32())

    def _value_sql(self, column: str) -> str:
        return f"CAST({column} - DATE '1970-01-01' AS DOUBLE)"

    def _difference(self, value: str, base: str) -> str:
        return f"({self._value_sql(value)} - {self._value_sql(base)})"


class DatetimeColumn(_Temporal):
    """A timestamp (whole seconds, no time zone) between `start` and `end`, both included; or
    at an offset from an earlier date or datetime column (`after`/`before`)."""

    type: Literal["datetime"] = "datetime"
    start: dt.datetime | Relative | None = Field(
        default=None,
        union_mode="left_to_right",
        description="Earliest timestamp, e.g. 2024-01-01 00:00:00, or relative to the build's "
        f"as_of ({EXAMPLES}); not with after/before.",
    )
    end: dt.datetime | Relative | None = Field(
        default=None,
        union_mode="left_to_right",
        description="Latest timestamp, e.g. 2024-12-31 23:59:59; a relative one (e.g. now) is "
        "excluded itself, so `-1h` to `now` is the hour before as_of. Not with after/before.",
    )

    _UNIT: ClassVar[str] = "s"
    _VALUE_UNIT: ClassVar[str] = "us"
    _SECONDS: ClassVar[int] = 1
    _SQL_TYPE: ClassVar[str] = "TIMESTAMP"
    _UNIT_SHORT: ClassVar[str] = "s"
    _UNIT_NAME: ClassVar[str] = "seconds"

    @field_validator("start", "end", mode="before")
    @classmethod
    def _date_means_midnight(cls, value: object) -> object:
        if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
            return dt.datetime.combine(value, dt.time())
        return _relative_or_value(value)

    def _check_range(self) -> None:
        require(self, "start", "end")
        if any(getattr(v, "tzinfo", None) is not None for v in (self.start, self.end)):
            raise ValueError("start and end must have no time zone (values are naive timestamps)")
        super()._check_range()

    def arrow_type(self) -> pa.DataType:
        return pa.timestamp("us")  # Parquet has no seconds unit; us round-trips exactly

    def _units(self, value: dt.datetime) -> int:
        return int(value.replace(tzinfo=dt.UTC).timestamp())

    def _typed(self, units: np.ndarray) -> pa.Array:
        return pa.array(units.astype(np.int64) * 1_000_000, type=pa.timestamp("us"))

    def _value_sql(self, column: str) -> str:
        return f"epoch({column})"

    def _difference(self, value: str, base: str) -> str:
        # In whole microseconds: two epoch() doubles near 2**31 s lose the last microseconds.
        return f"((epoch_us({value}) - epoch_us({base})) / 1000000)"
