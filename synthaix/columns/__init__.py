"""Column types: the registry maps each YAML `type:` to the class that validates and fills it."""

from __future__ import annotations

from typing import Annotated, Union, get_args

from pydantic import Field

from synthaix.columns.base import ChunkContext, Column, StrictModel
from synthaix.columns.choice import BooleanColumn, CategoryColumn
from synthaix.columns.expression import ExpressionColumn
from synthaix.columns.identity import UuidColumn
from synthaix.columns.llm import LlmColumn
from synthaix.columns.numeric import FloatColumn, IntegerColumn, SequenceColumn
from synthaix.columns.pattern import PatternColumn
from synthaix.columns.people import (
    FakerColumn,
    FakerMethodColumn,
    HandleColumn,
    LoremColumn,
    NameColumn,
)
from synthaix.columns.reference import AggregateColumn, ReferenceColumn
from synthaix.columns.sql import SqlColumn
from synthaix.columns.temporal import DateColumn, DatetimeColumn

COLUMN_CLASSES: tuple[type[Column], ...] = (
    UuidColumn,
    SequenceColumn,
    IntegerColumn,
    FloatColumn,
    CategoryColumn,
    BooleanColumn,
    DateColumn,
    DatetimeColumn,
    NameColumn,
    HandleColumn,
    FakerColumn,
    FakerMethodColumn,
    PatternColumn,
    LoremColumn,
    ExpressionColumn,
    SqlColumn,
    LlmColumn,
    ReferenceColumn,
    AggregateColumn,
)


def _type_names(cls: type[Column]) -> tuple[str, ...]:
    return get_args(cls.model_fields["type"].annotation)


REGISTRY: dict[str, type[Column]] = {
    name: cls for cls in COLUMN_CLASSES for name in _type_names(cls)
}

ColumnSpec = Annotated[Union[COLUMN_CLASSES], Field(discriminator="type")]  # noqa: UP007

__all__ = ["REGISTRY", "ChunkContext", "Column", "ColumnSpec", "StrictModel"]
