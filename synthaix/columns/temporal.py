"""Dates and datetimes drawn uniformly from a range."""

from __future__ import annotations

import datetime as dt
from typing import Literal, Self

import numpy as np
import pyarrow as pa
from pydantic import Field, field_validator, model_validator

from synthaix.columns.base import ChunkContext, Column

_EPOCH = dt.date(1970, 1, 1)


class DateColumn(Column):
    """A calendar date between `start` and `end`, both included."""

    type: Literal["date"] = "date"
    start: dt.date = Field(description="First possible date (YYYY-MM-DD).")
    end: dt.date = Field(description="Last possible date (YYYY-MM-DD).")

    @model_validator(mode="after")
    def _check_range(self) -> Self:
        if self.start > self.end:
            raise ValueError(f"start ({self.start}) is after end ({self.end})")
        return self

    def arrow_type(self) -> pa.DataType:
        return pa.date32()

    def capacity(self, earlier: dict[str, int | None], locale: str) -> int | None:
        return (self.end - self.start).days + 1

    def generate(self, ctx: ChunkContext) -> pa.Array:
        first = (self.start - _EPOCH).days
        days = ctx.rng.integers(first, (self.end - _EPOCH).days, size=ctx.rows, endpoint=True)
        return pa.array(days.astype(np.int32), type=pa.date32())


class DatetimeColumn(Column):
    """A timestamp (whole seconds, no time zone) between `start` and `end`, both included."""

    type: Literal["datetime"] = "datetime"
    start: dt.datetime = Field(description="Earliest timestamp, e.g. 2024-01-01 00:00:00.")
    end: dt.datetime = Field(description="Latest timestamp, e.g. 2024-12-31 23:59:59.")

    @field_validator("start", "end", mode="before")
    @classmethod
    def _date_means_midnight(cls, value: object) -> object:
        if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
            return dt.datetime.combine(value, dt.time())
        return value

    @model_validator(mode="after")
    def _check_range(self) -> Self:
        if self.start.tzinfo is not None or self.end.tzinfo is not None:
            raise ValueError("start and end must have no time zone (values are naive timestamps)")
        if self.start > self.end:
            raise ValueError(f"start ({self.start}) is after end ({self.end})")
        return self

    def arrow_type(self) -> pa.DataType:
        return pa.timestamp("us")  # Parquet has no seconds unit; us round-trips exactly

    def capacity(self, earlier: dict[str, int | None], locale: str) -> int | None:
        return int((self.end - self.start).total_seconds()) + 1

    def generate(self, ctx: ChunkContext) -> pa.Array:
        first, last = (int(t.replace(tzinfo=dt.UTC).timestamp()) for t in (self.start, self.end))
        seconds = ctx.rng.integers(first, last, size=ctx.rows, endpoint=True)
        return pa.array(seconds.astype(np.int64) * 1_000_000, type=pa.timestamp("us"))
