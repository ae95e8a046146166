"""What every column type shares: config fields, and the contract for generating values."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, Self

import numpy as np
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, model_validator

if TYPE_CHECKING:
    import duckdb

IDENTIFIER = r"^[A-Za-z_][A-Za-z0-9_]*$"


class StrictModel(BaseModel):
    """Config models reject unknown keys: a typo must be an error, not silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


#: The longest value a template (or a Faker method) may render, and the longest string or list
#: it may make on the way. A real value is a name, an address, a sentence or a paragraph.
MAX_RENDERED_CHARS = 100_000
#: Rows a Python-side relation check holds at a time.
ROWS_PER_BATCH = 65_536


@dataclass(frozen=True)
class RelationCheck:
    """A declared relation of a column (a derived value, an offset, a per-group distribution, a
    correlation), verified on the output by querying it, never by trusting the generator.

    `sql` is one SELECT over the dataset's table, named `data`, that returns one row of two
    columns: `failed` (rows or groups that break the relation; 0 means it holds) and
    `observed` (text for the report, e.g. "0 of 20,000 rows outside [1h, 5d]").
    """

    column: str
    relation: str  # as declared, for people: "shipped_at = ordered_at + [1h, 5d]"
    sql: str
    shape: bool = False  # a distribution (not each row): a filter on its columns reshapes it
    #: For a relation SQL cannot state (a Jinja2 template), in place of `sql`: reads the view
    #: `data` in batches of ROWS_PER_BATCH and returns (failed, observed) as the SQL would.
    #: None: not checkable on this output (an input is not stored).
    verify: Callable[[duckdb.DuckDBPyConnection], tuple[int, str] | None] | None = None

    def run(self, con: duckdb.DuckDBPyConnection) -> tuple[int, str] | None:
        """(failed, observed) over the view `data` of `con`, or None if not checkable."""
        if self.verify is not None:
            return self.verify(con)
        # fetchall: a result left open (fetchone) makes DuckDB refuse the next con.sql(),
        # which the checks of templates and gendered names run.
        failed, observed = con.execute(self.sql).fetchall()[0]
        return failed, observed


@dataclass
class ChunkContext:
    """Everything a column needs to fill one chunk.

    `rng` is this column's own stream for this chunk (derived from the dataset seed, the
    chunk's first row and the column name), so adding a column never changes another.
    """

    rows: int
    first_row: int
    rng: np.random.Generator
    locale: str = "en_US"
    values: dict[str, pa.Array] = field(default_factory=dict)


class Column(StrictModel):
    """Fields shared by every column type."""

    type_name: ClassVar[str]

    name: str = Field(pattern=IDENTIFIER, description="Column name (a SQL-friendly identifier).")
    description: str | None = Field(
        default=None, description="What the column means; shown in reports and LLM prompts."
    )
    nullable: float = Field(
        default=0.0, ge=0.0, le=1.0, description="Share of rows set to null (0 to 1)."
    )
    unique: bool = Field(
        default=False,
        description="Every non-null value appears once in the dataset (duplicates are redrawn).",
    )
    primary_key: bool = Field(
        default=False,
        description="Part of the table's primary key: unique and never null (one column is "
        "unique; several make a composite key, the exact-dedupe key); declared as PRIMARY KEY "
        "in DuckDB for multi-table datasets.",
    )

    @model_validator(mode="after")
    def _key_never_null(self) -> Self:
        if self.primary_key and self.nullable > 0:
            raise ValueError(
                "a primary key is never null: drop nullable (or primary_key, for a column "
                "that may be empty)"
            )
        return self

    @property
    def is_late(self) -> bool:
        """Filled after the table is built (aggregates, self references): unreadable."""
        return False

    def references(self) -> set[str]:
        """Names of other columns this column reads; they must come earlier in the list."""
        return set()

    def problems(self, earlier: dict[str, Column]) -> list[tuple[tuple[str | int, ...], str]]:
        """Problems only the earlier columns reveal (an offset from a column of another type,
        a `by` value with no parameters): (path inside this column, message) each."""
        return []

    def relation_checks(self, locale: str = "en_US") -> list[RelationCheck]:
        """The relations this column declares, for the report and the tests to verify
        (`locale`: the dataset's, for columns whose relation depends on it)."""
        return []

    def arrow_type(self) -> pa.DataType:
        raise NotImplementedError

    def capacity(self, earlier: Mapping[str, int | None], locale: str) -> int | None:
        """How many distinct values this column can take, or None when unbounded/unknown.

        `earlier` holds the capacities of earlier columns, for columns derived from them.
        """
        return None

    @property
    def costly_capacity(self) -> bool:
        """Whether `capacity` loads something (Faker's lists: 65 ms of `validate`), so a check
        that may stop early asks the other columns first."""
        return False

    def generate(self, ctx: ChunkContext) -> pa.Array:
        """Return `ctx.rows` values (nulls are applied afterwards from `nullable`)."""
        raise NotImplementedError
