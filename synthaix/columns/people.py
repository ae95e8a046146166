"""Person, address, company and text values from Faker, in any of its locales.

Faker makes one value per call at 1-150 µs, too slow for millions of rows. So names are drawn
with numpy straight from the locale's (weighted) name lists, which is exactly Faker's own
distribution (a full name takes both parts from one gender where family names have one, as
Faker's `name()` does; a locale that makes names its own way gets Faker's per row); phone
numbers are filled into the locale's formats with numpy, as Faker fills them; the other types
draw from a per-chunk pool of Faker values (`pool`).
Emails and usernames with `from` are made from the row's own name columns, vectorised.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import difflib
import inspect
import re
import sys
import threading
import types
import typing
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from decimal import Context, Decimal, InvalidOperation
from functools import cache
from typing import TYPE_CHECKING, Any, Literal, Self

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import ConfigDict, Field, ValidationInfo, field_validator, model_validator

from synthaix.columns.base import (
    MAX_RENDERED_CHARS,
    ROWS_PER_BATCH,
    ChunkContext,
    Column,
    RelationCheck,
)
from synthaix.columns.conditional import quote
from synthaix.columns.refs import not_a_column
from synthaix.errors import ConfigError

if TYPE_CHECKING:  # Faker is imported when a value is made: 65 ms of every CLI start else
    import duckdb
    from faker import Faker

_FAKER_METHODS = {
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
    if locale is None or locale == "en_US":  # Faker's default: listing locales imports all
        return
    from faker.config import AVAILABLE_LOCALES

    if locale not in AVAILABLE_LOCALES:
        close = [name for name in AVAILABLE_LOCALES if name.split("_")[0] == locale.split("_")[0]]
        suggestion = f"; did you mean one of {', '.join(sorted(close))}?" if close else ""
        raise ValueError(
            f"unknown locale '{locale}'{suggestion} (Faker locales, e.g. en_US, de_DE)"
        )


def faker_for(locale: str, seed: int) -> Faker:
    """A seeded Faker for this thread: instances are not thread-safe, and cost ~30 ms to make."""
    from faker import Faker

    cached: dict[str, Faker] = _local.__dict__.setdefault("fakers", {})
    if locale not in cached:
        cached[locale] = Faker(locale)
    fake = cached[locale]
    fake.seed_instance(seed)
    return fake


@cache
def _providers(locale: str) -> tuple[Any, ...]:
    """The providers of one unseeded Faker of the locale, only read (name lists, methods):
    one instance for all of them, not one per list asked for."""
    from faker import Faker

    return tuple(Faker(locale).providers)


Names = tuple[tuple[str, ...], np.ndarray]  # a name list and its probabilities


@cache
def name_source(locale: str, method: str) -> Names | str:
    """Where Faker's `method` (first_name, last_name_female, ...) of the locale takes its
    values: a name list with probabilities, drawn with numpy, or the method's name when the
    locale makes them its own way (pl_PL's last names, is_IS's -son/-dóttir, ja_JP's pairs),
    called per row. A list the locale inherits from Faker's base provider is a placeholder
    (`['Doe']`): its gendered lists stand in when it has them."""
    from faker.providers.person import Provider as Person

    person = next((p for p in _providers(locale) if isinstance(p, Person)), None)
    if person is None:
        return method
    if getattr(type(person), method) is not getattr(Person, method):
        return method
    attribute = method.replace("_name", "_names")  # first_name_male -> first_names_male
    values = getattr(person, attribute, None)
    if values is not None and values is not getattr(Person, attribute, None):
        return _name_weights(values)
    if method.endswith(("_male", "_female")):  # Faker's base falls back to the plain method
        return name_source(locale, method.rsplit("_", 1)[0])
    male, female = name_source(locale, f"{method}_male"), name_source(locale, f"{method}_female")
    if isinstance(male, tuple) and isinstance(female, tuple):
        return male[0] + female[0], np.concatenate([male[1], female[1]]) / 2
    return method


def _name_weights(values: Any) -> Names:
    names = tuple(values)
    raw = list(values.values()) if isinstance(values, dict) else [1.0] * len(names)
    weights = np.array(raw, dtype=np.float64)
    return names, weights / weights.sum()


def gendered(locale: str) -> bool:
    """Whether the locale's family names differ by gender (ru_RU Иванов, Иванова): a full
    name then takes both of its parts from one gender, as Faker's own `name()` does."""
    male, female = name_source(locale, "last_name_male"), name_source(locale, "last_name_female")
    if isinstance(male, str) or isinstance(female, str):
        return male != female
    return male[0] != female[0] or not np.array_equal(male[1], female[1])


@cache
def phone_formats(locale: str) -> tuple[bytes, ...] | None:
    """The locale's phone formats, when Faker makes a number by only filling digits into one
    (# 0-9, % 1-9, $ 2-9): 93 of its 111 locales. None: the locale has its own way."""
    from faker.providers.phone_number import Provider as Phones

    for provider in _providers(locale):
        if isinstance(provider, Phones):
            formats = tuple(getattr(provider, "formats", ()))
            plain = all(f.isascii() and not re.search(r"[!@{}]", f) for f in formats)
            if formats and plain and type(provider).phone_number is Phones.phone_number:
                return tuple(f.encode() for f in formats)
            return None
    return None


_TWO_NAMES = re.compile(r"\{\{(first|last)_name\w*\}\}(\W*)\{\{(first|last)_name\w*\}\}")


@cache
def name_order(locale: str) -> tuple[bool, str]:
    """Whether the locale writes the family name first, and what stands between the names:
    as most of Faker's own formats of exactly a given and a family name do (ja_JP `{{last_name}}
    {{first_name}}`, zh_CN and ko_KR without a space); given name first, a space, without one."""
    from faker.providers.person import Provider as Person

    for provider in _providers(locale):
        if isinstance(provider, Person):
            found: Counter[tuple[bool, str]] = Counter()
            for attribute in ("formats", "formats_female", "formats_male", "formats_nonbinary"):
                for text in getattr(provider, attribute, None) or ():
                    two = _TWO_NAMES.fullmatch(text)
                    if two and two[1] != two[3]:
                        found[(two[1] == "last", two[2])] += 1
            if found:
                return found.most_common(1)[0][0]
            break
    return False, " "


_DIGITS = {ord("#"): ord("0"), ord("%"): ord("1"), ord("$"): ord("2")}  # placeholder: lowest


def numerified(formats: tuple[bytes, ...], rng: np.random.Generator, rows: int) -> pa.Array:
    """Faker's `numerify(random_element(formats))` for every row at once: a format drawn per
    row (uniformly, as Faker does), its placeholders filled with digits: 0.3 µs a value
    against Faker's ~30, so every row gets its own number instead of one from a pool."""
    drawn = rng.integers(0, len(formats), size=rows)
    arrays, rows_of = [], []
    for index, text in enumerate(formats):
        which = np.flatnonzero(drawn == index)
        if not len(which):
            continue
        template = np.frombuffer(text, dtype=np.uint8)
        chars = np.tile(template, (len(which), 1))
        for mark, lowest in _DIGITS.items():
            at = np.flatnonzero(template == mark)
            if len(at):
                size = (len(which), len(at))
                chars[:, at] = rng.integers(lowest, ord("9") + 1, size=size, dtype=np.uint8)
        offsets = np.arange(len(which) + 1, dtype=np.int32) * len(template)
        buffers = [None, pa.py_buffer(offsets), pa.py_buffer(chars.tobytes())]
        arrays.append(pa.Array.from_buffers(pa.string(), len(which), buffers))
        rows_of.append(which)
    if not arrays:
        return pa.array([], pa.string())
    at = np.empty(rows, dtype=np.int64)
    at[np.concatenate(rows_of)] = np.arange(rows)
    return pa.concat_arrays(arrays).take(pa.array(at))


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

    @property
    def costly_capacity(self) -> bool:
        return True


# Values of a gender column, any case: the rest (and nulls) get names of either gender.
FEMALE = ("female", "f", "woman", "w")
MALE = ("male", "m", "man")


class NameColumn(_LocaleColumn):
    """First, last or full names, with the locale's real name frequencies."""

    type: Literal["person.first_name", "person.last_name", "person.full_name"]
    gender: str | None = Field(
        default=None,
        description="The names' gender: female, male, or an earlier column holding each row's "
        "(female/f/woman/w or male/m/man, any case; other values and nulls get either). First "
        "names follow it, and family names where they differ by gender (ru_RU, pl_PL).",
    )

    @field_validator("gender")
    @classmethod
    def _fixed_gender(cls, gender: str | None) -> str | None:
        fixed = (gender or "").strip().lower()
        return fixed if fixed in ("female", "male") else gender  # Female, not a column

    def references(self) -> set[str]:
        return set() if self.gender in (None, "female", "male") else {self.gender}  # type: ignore[arg-type]

    def problems(self, earlier: dict[str, Column]) -> list[tuple[tuple[str | int, ...], str]]:
        column = earlier.get(self.gender or "")
        if column is None or not self.references():
            return []
        if not pa.types.is_string(kind := column.arrow_type()):
            return [(("gender",), f"'{self.gender}' is {kind}, not text (female, male, ...)")]
        labels = getattr(column, "labels", None)
        if labels is None:
            return []
        known = [v for v in labels() if str(v).strip().lower() in FEMALE + MALE]
        if not known:
            return [
                (
                    ("gender",),
                    f"none of '{self.gender}''s values {labels()} says a gender: name them "
                    f"female/f/woman/w or male/m/man (any case)",
                )
            ]
        return []

    def arrow_type(self) -> pa.DataType:
        return pa.string()

    def capacity(self, earlier: Mapping[str, int | None], locale: str) -> int | None:
        locale = self.locale or locale
        total = 0
        for methods in self._methods(locale):
            sources = [name_source(locale, m) for m in methods]
            if not all(isinstance(found, tuple) for found in sources):
                return None
            total += int(np.prod([len(set(found[0])) for found in sources]))  # type: ignore[index]
        return total

    def _methods(self, locale: str) -> list[tuple[str, ...]]:
        """The Faker methods each gender's names come from, male then female (one entry: no
        split)."""
        parts = {
            "person.first_name": ("first_name",),
            "person.last_name": ("last_name",),
            "person.full_name": ("first_name", "last_name"),
        }[self.type]
        split = self.gender is not None or (self.type == "person.full_name" and gendered(locale))
        if not split:
            return [parts]
        genders = [g for g in ("male", "female") if self.gender in (None, g) or self.references()]
        return [tuple(f"{part}_{gender}" for part in parts) for gender in genders]

    def generate(self, ctx: ChunkContext) -> pa.Array:
        locale = self._locale(ctx)
        genders = self._methods(locale)
        # One gender per row, drawn first, when the parts must agree or a column says it; else
        # no draw (the values of locales whose names do not split stay as they were).
        female = ctx.rng.random(ctx.rows) < 0.5 if len(genders) > 1 else None
        if female is not None and self.references():
            female = self._said(ctx.values[self.gender], female)  # type: ignore[index]
        drawn = [self._draw(locale, methods, ctx) for methods in genders]
        parts = drawn[0]
        if female is not None:
            mask = pa.array(female)
            parts = [pc.if_else(mask, f, m) for m, f in zip(drawn[0], drawn[1], strict=True)]
        if len(parts) == 1:
            return parts[0]
        family_first, between = name_order(locale)
        return pc.binary_join_element_wise(*(parts[::-1] if family_first else parts), between)

    @staticmethod
    def _said(genders: pa.Array, drawn: np.ndarray) -> np.ndarray:
        """Female where the gender column says so, male where it says that, else `drawn`."""
        codes = _gender_codes(genders)
        return np.where(codes < 0, drawn, codes == 1)

    def relation_checks(self, locale: str = "en_US") -> list[RelationCheck]:
        if self.gender is None:
            return []
        relation = f"{self.name} are {self.gender} names"
        if self.references():
            relation = f"{self.name} follows the gender in {self.gender}"
        return [
            RelationCheck(
                self.name, relation, "", verify=lambda con: self._verify_gender(con, locale)
            )
        ]

    def _verify_gender(self, con: duckdb.DuckDBPyConnection, locale: str) -> tuple[int, str] | None:
        """Each stored name against the locale's lists of its row's gender (either list where
        the row says none); None where the locale makes names its own way (no list)."""
        locale = self.locale or locale
        parts = (
            ("first_name", "last_name")
            if self.type == "person.full_name"
            else (self.type.removeprefix("person."),)
        )
        lists: dict[int, list[set[str]]] = {}
        for code, gender in ((0, "male"), (1, "female")):
            found = [name_source(locale, f"{part}_{gender}") for part in parts]
            if any(isinstance(f, str) for f in found):
                return None
            lists[code] = [set(f[0]) for f in found]  # type: ignore[index]
        family_first, between = name_order(locale)
        value = quote(self.name)
        said = quote(self.gender) if self.references() else f"'{self.gender}'"
        query = f"SELECT {value}, {said} FROM data WHERE {value} IS NOT NULL"
        failed = checked = 0
        example = ""
        reader = con.sql(query).to_arrow_reader(ROWS_PER_BATCH)
        for batch in reader:
            codes = _gender_codes(batch.column(1))
            for name, code in zip(batch.column(0).to_pylist(), codes.tolist(), strict=True):
                genders = (0, 1) if code < 0 else (code,)
                if not any(_fits(name, lists[g], family_first, between) for g in genders):
                    failed += 1
                    example = example or f"; e.g. {name!r}"
            checked += batch.num_rows
        reader.close()  # the connection runs one query at a time
        return failed, f"{failed:,} of {checked:,} names not of their gender{example}"

    def _draw(self, locale: str, methods: tuple[str, ...], ctx: ChunkContext) -> list[pa.Array]:
        drawn = []
        for method in methods:
            found = name_source(locale, method)
            if isinstance(found, str):  # the locale's own way: Faker itself, per row
                fake = faker_for(locale, int(ctx.rng.integers(2**63)))
                drawn.append(pa.array([getattr(fake, found)() for _ in range(ctx.rows)]))
                continue
            names, p = found
            picks = ctx.rng.choice(len(names), size=ctx.rows, p=p)
            drawn.append(pa.array(names).take(pa.array(picks)))
        return drawn


def _gender_codes(genders: pa.Array) -> np.ndarray:
    """1 where a gender column's value says female, 0 male, -1 neither (or null)."""
    said = pc.utf8_lower(pc.utf8_trim_whitespace(genders.cast(pa.string())))
    female = pc.fill_null(pc.is_in(said, pa.array(FEMALE)), False).to_numpy(False)
    male = pc.fill_null(pc.is_in(said, pa.array(MALE)), False).to_numpy(False)
    return np.where(female, 1, np.where(male, 0, -1)).astype(np.int8)


def _fits(name: str, lists: list[set[str]], family_first: bool, between: str) -> bool:
    """Whether `name` is one of a list's names, or (two lists) a given and a family name
    joined as the locale writes them: split where the separator stands."""
    if len(lists) == 1:
        return name in lists[0]
    first, last = lists[::-1] if family_first else lists
    cuts = (
        range(1, len(name))
        if not between
        else [m.start() for m in re.finditer(re.escape(between), name)]
    )
    return any(name[:cut] in first and name[cut + len(between) :] in last for cut in cuts)


class _PooledColumn(_LocaleColumn):
    pool: int = Field(
        default=2000,
        ge=0,
        description="Faker values made per chunk, then drawn from at random (fast). 0, or "
        "unique: true, makes one Faker value per row (exact, ~10-150 µs a row). person.phone "
        "uses it only in the few locales whose numbers are not plain digit formats.",
    )

    def _pooled(
        self,
        ctx: ChunkContext,
        method: str,
        kwargs: dict[str, Any],
        convert: Callable[[Any], Any],
        arrow_type: pa.DataType,
    ) -> pa.Array:
        fake = faker_for(self._locale(ctx), int(ctx.rng.integers(2**63)))
        make = getattr(fake, method)
        per_row = self.unique or self.pool == 0 or self.pool >= ctx.rows
        size = ctx.rows if per_row else self.pool
        pool = pa.array([convert(make(**kwargs)) for _ in range(size)], type=arrow_type)
        if per_row:
            return pool
        return pool.take(pa.array(ctx.rng.integers(0, size, size=ctx.rows)))


class FakerColumn(_PooledColumn):
    """Phone, job, street, full address, city, country, postcode or company name."""

    type: Literal[
        "person.phone",
        "person.job",
        "address.street",
        "address.full",
        "address.city",
        "address.country",
        "address.postcode",
        "company.name",
    ]

    def arrow_type(self) -> pa.DataType:
        return pa.string()

    def generate(self, ctx: ChunkContext) -> pa.Array:
        if self.type == "person.phone" and (formats := phone_formats(self._locale(ctx))):
            return numerified(formats, ctx.rng, ctx.rows)
        one_line: Callable[[str], str] = lambda v: v.replace("\n", ", ")  # noqa: E731
        return self._pooled(ctx, _FAKER_METHODS[self.type], {}, one_line, pa.string())


class LoremColumn(_PooledColumn):
    """Placeholder prose: a text of up to `max_chars` characters."""

    type: Literal["text.lorem"] = "text.lorem"
    max_chars: int = Field(default=200, ge=5, description="Longest text, in characters.")

    def arrow_type(self) -> pa.DataType:
        return pa.string()

    def generate(self, ctx: ChunkContext) -> pa.Array:
        one_line: Callable[[str], str] = lambda v: v.replace("\n", " ")  # noqa: E731
        kwargs = {"max_nb_chars": self.max_chars}
        return self._pooled(ctx, "text", kwargs, one_line, pa.string())


# -- emails and usernames ----------------------------------------------------------------------

Weighted = str | list[str] | dict[str, float]
# A style is one or two name parts (first, last, or their initials f, l) and what joins them.
_STYLE = re.compile(r"(first|last|f|l)([._-]?)(first|last|f|l)?")
_DOMAIN = re.compile(r"(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\.)+[a-z]{2,63}")
# The first word of a full name, and its last word when it has two or more. The same RE2
# patterns make the values (Arrow) and check them (DuckDB), so the two cannot disagree.
_FIRST_WORD = r"^\s*(?P<w>\S+)"
_LAST_WORD = r"\S\s+(?P<w>\S+)\s*$"
_NULL = pa.scalar(None, pa.string())


class HandleColumn(_PooledColumn):
    """An email or username. With `from`, made from the row's own names (Ann Lee ->
    ann.lee@example.com); without, a Faker value from a per-chunk pool."""

    model_config = ConfigDict(populate_by_name=True)

    type: Literal["person.email", "person.username"]
    from_: list[str] | None = Field(
        default=None,
        alias="from",
        min_length=1,
        max_length=2,
        description="Earlier name columns to derive the value from: [first, last], or one "
        "full-name column. Without it, Faker makes the value (unrelated to other columns).",
    )
    style: Weighted = Field(
        default="first.last",
        description="How the name parts are joined: first, last or their initials f, l, "
        "joined by '.', '_', '-' or nothing (first.last, flast, first_last, lastf, first); "
        "a list or a mapping style -> weight mixes styles across rows. Needs `from`.",
    )
    domain: Weighted = Field(
        default="example.com",
        description="Email domain, or a list or mapping domain -> weight to draw from. "
        "Needs `from`; person.email only.",
    )
    unique: bool = Field(
        default=False,
        description="Every non-null value appears once. With `from`, a repeated value gets a "
        "number (ann.lee2@example.com) instead of its row being redrawn.",
    )

    @field_validator("from_", mode="before")
    @classmethod
    def _one_column(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @model_validator(mode="after")
    def _check_options(self) -> Self:
        # By value, not by model_fields_set: a dumped and re-read config sets every field.
        fields = type(self).model_fields
        set_here = {key for key in ("style", "domain") if getattr(self, key) != fields[key].default}
        if self.from_ is None and set_here:
            verb = "need" if len(set_here) > 1 else "needs"
            raise ValueError(f"{' and '.join(sorted(set_here))} {verb} `from` (the name columns)")
        if self.type == "person.username" and "domain" in set_here:
            raise ValueError("domain is for person.email; a username has none")
        if self.from_ is not None and len(set(self.from_)) < len(self.from_):
            raise ValueError("from names the same column twice")
        for style in _weighted(self.style, "style")[0]:
            match = _STYLE.fullmatch(style)
            if match is None or (match[2] and not match[3]):
                raise ValueError(
                    f"style '{style}' is not first, last, f or l, optionally joined to another "
                    "by '.', '_', '-' or nothing, e.g. first.last, flast, first_last"
                )
        for domain in _weighted(self.domain, "domain")[0]:
            if not _DOMAIN.fullmatch(domain):
                raise ValueError(f"domain '{domain}' is not a lowercase domain like example.com")
        return self

    def references(self) -> set[str]:
        return set(self.from_ or ())

    def problems(self, earlier: dict[str, Column]) -> list[tuple[tuple[str | int, ...], str]]:
        found: list[tuple[tuple[str | int, ...], str]] = []
        for name in self.from_ or ():
            column = earlier.get(name)
            if column is None:
                found.append((("from",), not_a_column(name)))
            elif not pa.types.is_string(kind := column.arrow_type()):
                found.append((("from",), f"'{name}' is {kind}, not text (a name column)"))
        return found

    def arrow_type(self) -> pa.DataType:
        return pa.string()

    @property
    def repairs_duplicates(self) -> bool:
        """A repeated value is made unique with `make_unique` instead of being redrawn."""
        return self.unique and self.from_ is not None

    def make_unique(self, value: str, n: int) -> str:
        """The value numbered n (the assembler counts n up from 2 until the value is new)."""
        if self.type == "person.email":
            local, _, domain = value.rpartition("@")
            return f"{local}{n}@{domain}"
        return f"{value}{n}"

    def generate(self, ctx: ChunkContext) -> pa.Array:
        if self.from_ is None:
            method = "email" if self.type == "person.email" else "user_name"
            return self._pooled(ctx, method, {}, _same, pa.string())
        first, last, valid = self._name_parts(ctx.values)
        self._check_script(ctx, first, last, valid)
        styles, p = _weighted(self.style)
        made = [_style_values(style, first, last) for style in styles]
        local = made[0] if len(made) == 1 else pc.choose(_draw(ctx, p), *made)
        local = pc.if_else(pc.and_(valid, pc.not_equal(local, "")), local, _NULL)
        if self.type == "person.username":
            return local
        domains, p = _weighted(self.domain)
        at = pa.array([f"@{domain}" for domain in domains])
        return pc.binary_join_element_wise(local, at.take(_draw(ctx, p)), "")

    def _name_parts(self, values: dict[str, pa.Array]) -> tuple[pa.Array, pa.Array, pa.Array]:
        """Normalised first and last names ('' where missing), and the rows with every name."""
        sources = [values[name] for name in self.from_ or ()]
        valid = pc.is_valid(sources[0])
        for source in sources[1:]:
            valid = pc.and_(valid, pc.is_valid(source))
        if len(sources) == 1:
            sources = [pc.struct_field(pc.extract_regex(sources[0], w), [0]) for w in _WORDS]
        first, last = (_normalised(source) for source in sources)
        return first, last, valid

    def _check_script(
        self, ctx: ChunkContext, first: pa.Array, last: pa.Array, valid: pa.Array
    ) -> None:
        """Names that fold to nothing (Cyrillic, CJK, ...) would lose their part of the value;
        a stray one may, but a locale or a column of them is a config to fix, not data."""
        lost = pc.equal(first, "")
        if len(self.from_ or ()) == 2:  # (one full name may lack a last word)
            lost = pc.or_(lost, pc.equal(last, ""))
        lost = pc.and_(valid, lost)
        if 2 * (pc.sum(lost).as_py() or 0) > (pc.sum(valid).as_py() or 0):
            examples = [ctx.values[name].filter(lost)[0].as_py() for name in self.from_ or ()]
            raise ConfigError(
                f"column '{self.name}': most names in {', '.join(self.from_ or ())} have no "
                f"Latin letters (e.g. {' '.join(examples)!r}), so they cannot make "
                f"{'an email' if self.type == 'person.email' else 'a username'}",
                hint="use a Latin-script locale for the name columns, or drop `from` for "
                "Faker's own (transliterated) values",
            )

    def _name_terms(self) -> tuple[str, str]:
        """SQL of the first and last name a `from` handle is made of, normalised."""
        assert self.from_ is not None
        if len(self.from_) == 2:
            first, last = (_normalised_sql(quote(column)) for column in self.from_)
            return first, last
        full = quote(self.from_[0])
        first, last = (_normalised_sql(f"regexp_extract({full}, '{w}', 1)") for w in _WORDS)
        return first, last

    def null_by_inputs_sql(self) -> str:
        """SQL over the row: true where the names may leave no handle to make (a name null,
        or names that fold to nothing in a style the row may have drawn): a null there is
        the inputs', not `nullable`'s."""
        if self.from_ is None:
            return "false"
        first, last = self._name_terms()
        empty = " OR ".join(
            f"coalesce({_style_sql(s, first, last)} = '', true)" for s in _weighted(self.style)[0]
        )
        return " OR ".join([*(f"{quote(name)} IS NULL" for name in self.from_), empty])

    def relation_checks(self, locale: str = "en_US") -> list[RelationCheck]:
        if self.from_ is None:
            return []
        name = quote(self.name)
        first, last = self._name_terms()
        styles, _ = _weighted(self.style)
        expected = ", ".join(f"{_style_sql(s, first, last)} AS e{i}" for i, s in enumerate(styles))
        matches = " OR ".join(
            f"(e{i} <> '' AND starts_with(local, e{i}) "
            f"AND regexp_full_match(substr(local, length(e{i}) + 1), '[0-9]*'))"
            for i in range(len(styles))
        )
        relation = f"{self.name} = {' | '.join(styles)} of {', '.join(self.from_)} (+ a number)"
        local, domain_ok = name, "true"
        if self.type == "person.email":
            domains, _ = _weighted(self.domain)
            local = f"split_part({name}, '@', 1)"
            domain_ok = f"split_part({name}, '@', 2) IN ({', '.join(map(repr, domains))})"
            relation += f" @ {' | '.join(domains)}"
        sql = (
            f"SELECT count(*) FILTER (WHERE NOT ({domain_ok} AND ({matches}))) AS failed, "
            "format('{:,} of {:,} values do not match their names', failed, count(*)) "
            f"AS observed FROM (SELECT {name}, {local} AS local, {expected} "
            f"FROM data WHERE {name} IS NOT NULL)"
        )
        return [RelationCheck(self.name, relation, sql)]


_WORDS = (_FIRST_WORD, _LAST_WORD)


def _weighted(value: Weighted, what: str = "value") -> tuple[list[str], np.ndarray]:
    """The choices and their probabilities; ValueError when a list or mapping is unusable."""
    if isinstance(value, str):
        return [value], np.ones(1)
    if not value:
        raise ValueError(f"{what} must not be empty")
    if isinstance(value, list):
        if len(set(value)) < len(value):
            raise ValueError(f"{what} lists a value twice")
        return value, np.full(len(value), 1 / len(value))
    weights = np.array(list(value.values()), dtype=np.float64)
    if not (weights > 0).all():
        raise ValueError(f"{what} weights must be positive")
    return list(value), weights / weights.sum()


def _draw(ctx: ChunkContext, p: np.ndarray) -> pa.Array:
    if len(p) == 1:  # one choice draws nothing: the column's stream is as without the option
        return pa.array(np.zeros(ctx.rows, dtype=np.int64))
    return pa.array(ctx.rng.choice(len(p), size=ctx.rows, p=p))


# Latin letters that Unicode does not decompose into a letter and accents, and ligatures,
# spelt in ASCII as in emails: Heß -> hess, Łukasz -> lukasz, Þórður -> thordur. Applied after
# the canonical decomposition, so ǿ (ø + acute) is o as well.
_SPELLED = {
    **dict.fromkeys("ßẞ", "ss"),
    **dict.fromkeys("æÆ", "ae"),
    **dict.fromkeys("œŒ", "oe"),
    **dict.fromkeys("þÞ", "th"),
    **dict.fromkeys("ĳĲ", "ij"),
    **dict.fromkeys("ŋŊ", "ng"),
    **dict.fromkeys("ǆǅǄǳǲǱ", "dz"),
    **dict.fromkeys("ǉǈǇ", "lj"),
    **dict.fromkeys("ǌǋǊ", "nj"),
    "ﬀ": "ff",
    "ﬁ": "fi",
    "ﬂ": "fl",
    "ﬃ": "ffi",
    "ﬄ": "ffl",
    **dict.fromkeys("ﬅﬆ", "st"),
    **dict.fromkeys("łŁŀĿƚ", "l"),
    **dict.fromkeys("øØ", "o"),
    **dict.fromkeys("đĐðÐɖƉ", "d"),
    "\u0131": "i",  # dotless i (İ decomposes to I and a dot)
    **dict.fromkeys("əƏɛƐ", "e"),
    **dict.fromkeys("ɔƆ", "o"),
    **dict.fromkeys("ħĦ", "h"),
    **dict.fromkeys("ŧŦ", "t"),
    **dict.fromkeys("ƒƑ", "f"),
    "ĸ": "k",
}
_SPELLED_CLASS = "[" + "".join(_SPELLED) + "]"


def _normalised(names: pa.Array) -> pa.Array:
    """Lowercase ASCII letters and digits only: accents stripped (canonical decomposition,
    NFD), the letters of `_SPELLED` spelt out, everything else dropped. Not NFKD: it also
    folds compatibility forms (Ⅻ -> xii, full-width letters), which DuckDB's strip_accents
    leaves as they are; dropping them is what lets the relation check agree everywhere."""
    folded = pc.utf8_lower(_spelled(pc.utf8_normalize(names, "NFD")))
    return pc.fill_null(pc.replace_substring_regex(folded, "[^a-z0-9]", ""), "")


def _spelled(names: pa.Array) -> pa.Array:
    hit = pc.fill_null(pc.match_substring_regex(names, _SPELLED_CLASS), False)
    if not pc.any(hit).as_py():
        return names  # the usual case: one scan
    part = names.filter(hit)
    for letter, spelling in _SPELLED.items():
        part = pc.replace_substring(part, letter, spelling)
    return pc.replace_with_mask(names, hit, part)


def _normalised_sql(term: str) -> str:
    """`_normalised` in DuckDB. strip_accents is the canonical decomposition without the
    accents; the two agree on every Unicode character (a test checks them all)."""
    spelled = f"strip_accents(coalesce({term}, ''))"
    for letter, spelling in _SPELLED.items():
        spelled = f"replace({spelled}, '{letter}', '{spelling}')"
    return f"regexp_replace(lower({spelled}), '[^a-z0-9]', '', 'g')"


def _style_values(style: str, first: pa.Array, last: pa.Array) -> pa.Array:
    one, joiner, two = _style_parts(style)
    parts = {"first": first, "last": last}
    parts |= {"f": pc.utf8_slice_codeunits(first, 0, 1), "l": pc.utf8_slice_codeunits(last, 0, 1)}
    if two is None:
        return parts[one]
    # The joiner goes only between two parts: "Cher" alone is cher, not cher.
    both = pc.and_(pc.not_equal(parts[one], ""), pc.not_equal(parts[two], ""))
    return pc.binary_join_element_wise(parts[one], pc.if_else(both, joiner, ""), parts[two], "")


def _style_sql(style: str, first: str, last: str) -> str:
    one, joiner, two = _style_parts(style)
    parts = {"first": first, "last": last, "f": f"left({first}, 1)", "l": f"left({last}, 1)"}
    if two is None:
        return parts[one]
    return f"concat_ws('{joiner}', nullif({parts[one]}, ''), nullif({parts[two]}, ''))"


def _style_parts(style: str) -> tuple[str, str, str | None]:
    match = _STYLE.fullmatch(style)
    assert match is not None  # checked when the config was validated
    return match[1], match[2], match[3]


def _same(value: Any) -> Any:
    return value


# -- any Faker method --------------------------------------------------------------------------

# Arrow type of each scalar Faker returns. Decimal becomes float unless `as: decimal(p,s)`:
# Faker's decimals vary in scale from value to value, which no one decimal type holds exactly.
_VALUE_TYPES: dict[type, pa.DataType] = {
    bool: pa.bool_(),
    int: pa.int64(),
    float: pa.float64(),
    Decimal: pa.float64(),
    str: pa.string(),
    dt.datetime: pa.timestamp("us"),
    dt.date: pa.date32(),
    dt.time: pa.time64("us"),
    dt.timedelta: pa.duration("us"),
}
_AS = re.compile(r"text|double|decimal\((\d+), *(\d+)\)")
# Integer arguments size a value (lengths, digits, row counts) unless they bound it (min, max,
# step, *_value); sizes are capped so a config cannot ask for gigabytes per value.
_BOUND_ARG = re.compile(r"min|max|step|.*_value")
MAX_SIZE_ARG = 1000
_PROBES = 20


@dataclass(frozen=True)
class FakerMethod:
    """A checked Faker method: the Arrow type of its values, and how to convert each one."""

    arrow_type: pa.DataType
    convert: Callable[[Any], Any]


_checked: dict[tuple[str, str, str, str | None], FakerMethod] = {}


def faker_method(locale: str, method: str, args: dict[str, Any], as_: str | None) -> FakerMethod:
    """`method` of `locale`'s Faker, checked: a public provider method that takes `args` and
    makes scalar values of one type (found by calling it). ValueError says what is wrong."""
    key = (locale, method, repr(sorted(args.items())), as_)
    if key not in _checked:
        _checked[key] = _probe(locale, method, args, as_)
    return _checked[key]


@cache
def _provider_methods(locale: str) -> tuple[str, ...]:
    return tuple(
        sorted(
            {
                name
                for provider in _providers(locale)
                for name in dir(provider)
                if not name.startswith("_") and callable(getattr(provider, name))
            }
        )
    )


def _probe(locale: str, method: str, args: dict[str, Any], as_: str | None) -> FakerMethod:
    if method.startswith(("_", "seed")):
        raise ValueError(f"'{method}' is refused: private and seeding methods make no values")
    if method not in _provider_methods(locale):
        close = difflib.get_close_matches(method, _provider_methods(locale), n=3)
        guess = f"; did you mean {', '.join(close)}?" if close else ""
        raise ValueError(
            f"Faker has no method '{method}' in locale {locale}{guess} (another locale's "
            "methods need `locale:` on the column)"
        )
    make = getattr(faker_for(locale, 0), method)
    try:
        inspect.signature(make).bind(**args)
    except TypeError as exc:
        raise ValueError(f"args do not fit {method}{inspect.signature(make)}: {exc}") from None
    for arg, value in args.items():
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if number and not _BOUND_ARG.fullmatch(arg) and abs(value) > MAX_SIZE_ARG:
            raise ValueError(f"args.{arg} is {value:,}; sizes are at most {MAX_SIZE_ARG:,}")
    try:
        with _clock_reads() as read:
            samples = [make(**args) for _ in range(_PROBES)]
    except Exception as exc:  # whatever Faker raises, the method cannot run with these args
        raise ValueError(f"{method}() fails: {type(exc).__name__}: {exc}") from None
    typed = _typed(method, samples, as_)
    if read:
        raise ValueError(
            f"{method}() reads the clock ({read[0]}()), so the same config and seed would make "
            "other values tomorrow, or in another time zone; use a date or datetime column "
            "instead (start and end fixed, or relative to as_of, such as start: -30d)"
        )
    return typed


# Faker's date methods (and those built on them: ssn, passport dates, card expiry) draw around
# the machine's clock and time zone, which no seed fixes. A profile hook sees every call of a
# C function, these included, whichever provider makes it.
_CLOCKS = {("datetime", "now"), ("datetime", "utcnow"), ("datetime", "today"), ("date", "today")}
_CLOCKS |= {("time", name) for name in ("time", "time_ns", "localtime", "ctime", "strftime")}


@contextlib.contextmanager
def _clock_reads() -> Iterator[list[str]]:
    """The clock functions called in the block (on this thread), in order."""
    read: list[str] = []

    def watch(frame: types.FrameType, event: str, arg: Any) -> None:
        # Faker asks the clock for the local zone only to convert its draw there and back:
        # a draw between fixed dates is the same in every zone.
        if event == "c_call" and frame.f_code.co_name != "_get_local_timezone":
            owner = getattr(getattr(arg, "__self__", None), "__name__", None)
            if (owner, getattr(arg, "__name__", None)) in _CLOCKS:
                read.append(f"{owner}.{arg.__name__}")

    previous = sys.getprofile()
    sys.setprofile(watch)
    try:
        yield read
    finally:
        sys.setprofile(previous)


def _dated_args(locale: str, method: str, args: dict[str, Any]) -> dict[str, Any]:
    """`args` with ISO dates written as text ("2020-01-01", quoted or from JSON) made dates
    where the method takes a date: Faker's own parser reads only offsets such as -30d."""
    if method not in _provider_methods(locale):
        return args  # the probe says what is wrong
    params = inspect.signature(getattr(faker_for(locale, 0), method)).parameters
    dated = dict(args)
    for arg, value in args.items():
        hint = params[arg].annotation if arg in params else None
        if not isinstance(value, str) or dt.date not in typing.get_args(hint):
            continue
        with contextlib.suppress(ValueError):
            day = dt.datetime.fromisoformat(value)
            plain = len(value) == 10 and day == dt.datetime.combine(day.date(), dt.time())
            dated[arg] = day.date() if plain else day
    return dated


def _typed(method: str, samples: list[Any], as_: str | None) -> FakerMethod:
    kinds = {type(v) for v in samples if v is not None}
    if not kinds or kinds - _VALUE_TYPES.keys():
        what = ", ".join(sorted(k.__name__ for k in kinds - _VALUE_TYPES.keys())) or "None"
        raise ValueError(
            f"{method}() returns {what}, not one scalar (text, number, boolean, date, time)"
        )
    if any(isinstance(v, str) and len(v) > MAX_RENDERED_CHARS for v in samples):
        raise ValueError(f"{method}() makes values over {MAX_RENDERED_CHARS:,} characters")
    if as_ is not None:
        arrow, convert = _declared(as_)
    elif len(kinds) > 1:
        names = ", ".join(sorted(k.__name__ for k in kinds))
        raise ValueError(f"{method}() returns several types ({names}); declare as: text")
    else:
        kind = kinds.pop()
        arrow, convert = _VALUE_TYPES[kind], float if kind is Decimal else _same
        if kind is dt.datetime and any(v.tzinfo for v in samples if v is not None):
            arrow = pa.timestamp("us", tz="UTC")
    checked = FakerMethod(arrow, lambda v: None if v is None else convert(v))
    try:
        pa.array([checked.convert(v) for v in samples], type=arrow)
    except (ArithmeticError, TypeError, ValueError, pa.ArrowException) as exc:
        why = "too many digits" if isinstance(exc, InvalidOperation) else exc
        raise ValueError(f"{method}() values do not convert to {as_ or arrow}: {why}") from None
    return checked


def _declared(as_: str) -> tuple[pa.DataType, Callable[[Any], Any]]:
    if as_ == "text":
        return pa.string(), str
    if as_ == "double":
        return pa.float64(), float
    precision, scale = (int(g) for g in _AS.fullmatch(as_).groups())  # type: ignore[union-attr]
    step, digits = Decimal(1).scaleb(-scale), Context(prec=precision)
    return pa.decimal128(precision, scale), lambda v: Decimal(str(v)).quantize(step, context=digits)


class FakerMethodColumn(_PooledColumn):
    """Any public Faker provider method, with keyword arguments: iban, ean13, pydecimal, ..."""

    model_config = ConfigDict(populate_by_name=True)

    type: Literal["faker"] = "faker"
    method: str = Field(description="Faker provider method, e.g. iban, ean13, pydecimal.")
    args: dict[str, Any] = Field(
        default_factory=dict,
        description="Keyword arguments of the method, e.g. {left_digits: 3, right_digits: 2}.",
    )
    as_: str | None = Field(
        default=None,
        alias="as",
        description="Type of the values: text, double or decimal(p,s) (rounded to s places). "
        "Default: the method's own (str, int, float, bool, date, datetime, time, timedelta; "
        "Decimal becomes double).",
    )

    @field_validator("as_")
    @classmethod
    def _check_as(cls, as_: str | None) -> str | None:
        match = _AS.fullmatch(as_ or "text")
        if match is None or (match[1] and not int(match[2]) <= int(match[1]) in range(1, 39)):
            raise ValueError(f"as: '{as_}' is not text, double or decimal(p,s), s <= p <= 38")
        return as_

    @field_validator("args")
    @classmethod
    def _dates(cls, args: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        locale = info.data.get("locale") or "en_US"
        try:
            check_locale(locale)
        except ValueError:
            return args  # the locale's own error says what is wrong
        if "method" not in info.data:  # as does the method's
            return args
        return _dated_args(locale, info.data["method"], args)

    @model_validator(mode="after")
    def _check_method(self) -> Self:
        # Checked in the column's locale; the dataset's is unknown here, so one the method
        # lacks is reported when the first chunk is made.
        self._method(self.locale or "en_US")
        return self

    def _method(self, locale: str) -> FakerMethod:
        return faker_method(locale, self.method, self.args, self.as_)

    def arrow_type(self) -> pa.DataType:
        return self._method(self.locale or "en_US").arrow_type

    def generate(self, ctx: ChunkContext) -> pa.Array:
        try:
            method = self._method(self._locale(ctx))
        except ValueError as exc:
            raise ConfigError(
                f"column '{self.name}': {exc}", hint="set `locale:` on the column"
            ) from None
        return self._pooled(ctx, self.method, self.args, method.convert, method.arrow_type)
