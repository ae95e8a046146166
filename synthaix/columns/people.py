"""Person, address, company and text values from Faker, in any of its locales.

Faker makes one value per call at 1-150 µs, too slow for millions of rows. So names are drawn
with numpy straight from the locale's (weighted) name lists, which is exactly Faker's own
distribution, and the other types draw from a per-chunk pool of Faker values (`pool`).
"""

from __future__ import annotations

import threading
from functools import cache
from typing import Literal, Self

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from faker import Faker
from faker.config import AVAILABLE_LOCALES
from pydantic import Field, model_validator

from synthaix.columns.base import ChunkContext, Column

_FAKER_METHODS = {
    "person.email": "email",
    "person.phone": "phone_number",
    "person.job": "job",
    "address.street": "street_address",
    "address.full": "address",
    "address.city": "city",
    "address.country": "country",
    "address.postcode": "postcode",
    "company.name": "company",
}
_local = threading.local()


def check_locale(locale: str | None) -> None:
    if locale is not None and locale not in AVAILABLE_LOCALES:
        close = [name for name in AVAILABLE_LOCALES if name.split("_")[0] == locale.split("_")[0]]
        suggestion = f"; did you mean one of {', '.join(sorted(close))}?" if close else ""
        raise ValueError(
            f"unknown locale '{locale}'{suggestion} (Faker locales, e.g. en_US, de_DE)"
        )


def faker_for(locale: str, seed: int) -> Faker:
    """A seeded Faker for this thread: instances are not thread-safe, and cost ~30 ms to make."""
    cached: dict[str, Faker] = _local.__dict__.setdefault("fakers", {})
    if locale not in cached:
        cached[locale] = Faker(locale)
    fake = cached[locale]
    fake.seed_instance(seed)
    return fake


@cache
def name_list(locale: str, attribute: str) -> tuple[tuple[str, ...], np.ndarray] | None:
    """The locale's name list with probabilities, or None if the locale has no such list."""
    for provider in Faker(locale).providers:
        values = getattr(provider, attribute, None)
        if values:
            if isinstance(values, dict):
                names = tuple(values)
                weights = np.array(list(values.values()), dtype=np.float64)
            else:
                names = tuple(values)
                weights = np.ones(len(names))
            return names, weights / weights.sum()
    return None


class _LocaleColumn(Column):
    locale: str | None = Field(
        default=None, description="Faker locale, e.g. en_US, de_DE (default: the dataset's)."
    )

    @model_validator(mode="after")
    def _check_locale(self) -> Self:
        check_locale(self.locale)
        return self

    def _locale(self, ctx: ChunkContext) -> str:
        return self.locale or ctx.locale


class NameColumn(_LocaleColumn):
    """First, last or full names, with the locale's real name frequencies."""

    type: Literal["person.first_name", "person.last_name", "person.full_name"]

    def arrow_type(self) -> pa.DataType:
        return pa.string()

    def capacity(self, earlier: dict[str, int | None], locale: str) -> int | None:
        sizes = [
            len(set(found[0])) if found else None for found in self._lists(self.locale or locale)
        ]
        if None in sizes:
            return None
        return int(np.prod(sizes))

    def _lists(self, locale: str) -> list[tuple[tuple[str, ...], np.ndarray] | None]:
        parts = {"person.first_name": ["first_names"], "person.last_name": ["last_names"]}
        return [name_list(locale, a) for a in parts.get(self.type, ["first_names", "last_names"])]

    def generate(self, ctx: ChunkContext) -> pa.Array:
        locale = self._locale(ctx)
        drawn = []
        for found, method in zip(self._lists(locale), ("first_name", "last_name"), strict=False):
            if found is None:  # locale builds names from formats: fall back to Faker itself
                fake = faker_for(locale, int(ctx.rng.integers(2**63)))
                drawn.append(pa.array([getattr(fake, method)() for _ in range(ctx.rows)]))
                continue
            names, p = found
            picks = ctx.rng.choice(len(names), size=ctx.rows, p=p)
            drawn.append(pa.array(names).take(pa.array(picks)))
        return drawn[0] if len(drawn) == 1 else pc.binary_join_element_wise(*drawn, " ")


class FakerColumn(_LocaleColumn):
    """Email, phone, job, street, full address, city, country, postcode or company name."""

    type: Literal[
        "person.email",
        "person.phone",
        "person.job",
        "address.street",
        "address.full",
        "address.city",
        "address.country",
        "address.postcode",
        "company.name",
    ]
    pool: int = Field(
        default=2000,
        ge=0,
        description="Faker values made per chunk, then drawn from at random (fast). 0, or "
        "unique: true, makes one Faker value per row (exact, ~10-150 µs a row).",
    )

    def arrow_type(self) -> pa.DataType:
        return pa.string()

    def generate(self, ctx: ChunkContext) -> pa.Array:
        return _pooled(self, ctx, _FAKER_METHODS[self.type], {}, line_break=", ")


class LoremColumn(_LocaleColumn):
    """Placeholder prose: a text of up to `max_chars` characters."""

    type: Literal["text.lorem"] = "text.lorem"
    max_chars: int = Field(default=200, ge=5, description="Longest text, in characters.")
    pool: int = Field(default=2000, ge=0, description="As for other Faker columns.")

    def arrow_type(self) -> pa.DataType:
        return pa.string()

    def generate(self, ctx: ChunkContext) -> pa.Array:
        return _pooled(self, ctx, "text", {"max_nb_chars": self.max_chars}, line_break=" ")


def _pooled(
    column: FakerColumn | LoremColumn,
    ctx: ChunkContext,
    method: str,
    kwargs: dict,
    line_break: str,
) -> pa.Array:
    fake = faker_for(column._locale(ctx), int(ctx.rng.integers(2**63)))
    make = getattr(fake, method)
    per_row = column.unique or column.pool == 0 or column.pool >= ctx.rows
    size = ctx.rows if per_row else column.pool
    pool = pa.array(
        [make(**kwargs).replace("\n", line_break) for _ in range(size)], type=pa.string()
    )
    if per_row:
        return pool
    return pool.take(pa.array(ctx.rng.integers(0, size, size=ctx.rows)))
