"""Text drawn from a pattern: `{name: order_no, type: pattern, pattern: "ORD-[A-Z]{3}-[0-9]{5}"}`.

The pattern language is the part of regular expressions that describes a finite set of
strings position by position: literal characters, `\\d`, `\\w`, escaped punctuation, classes
with ranges (`[A-Z0-9_]`), and `{n}`, `{n,m}` or `?` after any of them. Every such pattern is
also a valid RE2 and Python regex for exactly the strings it makes, which is how the output is
checked. Values are made with numpy, one matrix of code points per part, no loop over rows.
"""

from __future__ import annotations

import re
import string
from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Literal

import numpy as np
import pyarrow as pa
from pydantic import Field, field_validator

from synthaix.columns.base import ChunkContext, Column, RelationCheck

MAX_LENGTH = 1000  # longest value a pattern may make: ids and codes, not prose
_CLASS_ESCAPES = {"d": string.digits, "w": string.ascii_letters + string.digits + "_"}
_GROUPS = "groups and alternation are not supported; use a category column for fixed choices"
_UNBOUNDED = "unbounded repeats are not supported; use {n,m}"
_ANCHOR = "anchors are not needed: a pattern always spans the whole value"
_ORPHAN = "a repeat must follow a character, an escape or a [class]"
_WHY = {
    "(": _GROUPS,
    ")": _GROUPS,
    "|": _GROUPS,
    ".": "'.' (any character) is not supported; use a class such as [A-Za-z0-9]",
    "*": _UNBOUNDED,
    "+": _UNBOUNDED,
    "^": _ANCHOR,
    "$": _ANCHOR,
    "?": _ORPHAN,
    "{": _ORPHAN,
    "}": "escape it as \\}",
    "]": "escape it as \\]",
}
_REPEAT = re.compile(r"\{(\d+)(?:,(\d+))?\}")
_SUPPORTED = (
    "supported: literal characters, \\d, \\w, escaped punctuation (\\- \\. \\\\), classes "
    "with ranges ([A-Z0-9_]), and {n}, {n,m} or ? after one of them"
)


@dataclass(frozen=True)
class Part:
    """One element of a pattern: `low` to `high` characters, each one of `chars`."""

    chars: str
    low: int = 1
    high: int = 1


class PatternError(ValueError):
    def __init__(self, pattern: str, at: int, why: str) -> None:
        shown = pattern[at : at + 1] or "the end"
        super().__init__(f"'{shown}' at position {at + 1}: {why} ({_SUPPORTED})")


def parse(pattern: str) -> list[Part]:
    """The parts of a pattern; PatternError names the first unsupported piece."""
    parts, at = [], 0
    while at < len(pattern):
        chars, at = _atom(pattern, at)
        low = high = 1
        if pattern.startswith("?", at):
            low, at = 0, at + 1
        elif (repeat := _REPEAT.match(pattern, at)) is not None:
            low, high = int(repeat[1]), int(repeat[2] or repeat[1])
            if not 1 <= high <= MAX_LENGTH or low > high:
                raise PatternError(pattern, at, f"{{{low},{high}}} needs 0 <= n <= m, 1 <= m")
            at = repeat.end()
        elif pattern.startswith("{", at):
            raise PatternError(pattern, at, "a repeat is {n} or {n,m}; " + _UNBOUNDED)
        parts.append(Part(chars, low, high))
    if sum(part.high for part in parts) > MAX_LENGTH:
        raise PatternError(pattern, len(pattern), f"values may be {MAX_LENGTH:,} long at most")
    return parts


def _atom(pattern: str, at: int) -> tuple[str, int]:
    char = pattern[at]
    if char == "\\":
        return _escape(pattern, at, in_class=False)
    if char == "[":
        return _class(pattern, at)
    if char in _WHY:
        raise PatternError(pattern, at, _WHY[char])
    if not char.isprintable():
        raise PatternError(pattern, at, "control characters are not supported")
    return char, at + 1


def _escape(pattern: str, at: int, in_class: bool) -> tuple[str, int]:
    escaped = pattern[at + 1 : at + 2]
    if escaped in _CLASS_ESCAPES:
        return _CLASS_ESCAPES[escaped], at + 2
    if escaped and escaped in string.punctuation:
        return escaped, at + 2
    where = "inside a class " if in_class else ""
    raise PatternError(pattern, at, f"\\{escaped} {where}is not a supported escape")


def _class(pattern: str, start: int) -> tuple[str, int]:
    """`[...]` from its `[`: the characters it allows, sorted, and where it ends."""
    at, chars = start + 1, set()
    if pattern.startswith(("^", "]"), at):
        why = "negated classes are not supported" if pattern[at] == "^" else "empty class"
        raise PatternError(pattern, at, why)
    while not pattern.startswith("]", at):
        if at >= len(pattern):
            raise PatternError(pattern, start, "the class is not closed with ]")
        if pattern[at] == "[":
            raise PatternError(pattern, at, "escape it as \\[ inside a class")
        first, at = _escape(pattern, at, True) if pattern[at] == "\\" else (pattern[at], at + 1)
        if not pattern.startswith("-", at) or pattern[at + 1 : at + 2] in ("", "]"):
            chars.update(first)
            continue
        last, after = (
            _escape(pattern, at + 1, True) if pattern[at + 1] == "\\" else (pattern[at + 1], at + 2)
        )
        if len(first) != 1 or len(last) != 1 or ord(last) < ord(first):
            raise PatternError(pattern, at, f"'{first}-{last}' is not a range")
        chars.update(map(chr, range(ord(first), ord(last) + 1)))
        at = after
    if any(not char.isprintable() for char in chars):
        raise PatternError(pattern, start, "the class holds control characters")
    return "".join(sorted(chars)), at + 1


def distinct_strings(parts: list[Part], limit: int = 10_000) -> int | None:
    """How many different strings the parts make (`a?a?` makes 3, not 4), or None past
    `limit` automaton states. Counts the paths of the deterministic automaton of the
    pattern, built one character at a time; characters that every part treats alike
    (in the same classes) are counted together."""
    end = len(parts)

    def closure(states: set[tuple[int, int]]) -> frozenset[tuple[int, int]]:
        # (i, n): n characters of part i read; past its minimum, part i+1 may start.
        todo, found = list(states), set(states)
        while todo:
            i, n = todo.pop()
            if i < end and n >= parts[i].low and (i + 1, 0) not in found:
                found.add((i + 1, 0))
                todo.append((i + 1, 0))
        return frozenset(found)

    alphabet = set().union(*(part.chars for part in parts))
    kinds = Counter(tuple(char in part.chars for part in parts) for char in alphabet)
    layer: dict[frozenset[tuple[int, int]], int] = {closure({(0, 0)}): 1}
    total = 0
    while layer:
        following: dict[frozenset[tuple[int, int]], int] = defaultdict(int)
        for states, ways in layer.items():
            total += ways if (end, 0) in states else 0
            for kind, size in kinds.items():
                moved = {(i, n + 1) for i, n in states if i < end and kind[i] and n < parts[i].high}
                if moved:
                    following[closure(moved)] += ways * size
        if len(following) > limit:
            return None
        layer = following
    return total


class PatternColumn(Column):
    """Text that fits a pattern, e.g. "ORD-[A-Z]{3}-[0-9]{5}" (see the module for the syntax)."""

    type: Literal["pattern"] = "pattern"
    pattern: str = Field(
        min_length=1,
        description="Literal characters, \\d, \\w, escaped punctuation (\\- \\. \\\\), classes "
        "with ranges ([A-Z0-9_]), each optionally followed by {n}, {n,m} or ?. No groups, "
        "alternation, '.', * or +.",
    )

    @field_validator("pattern")
    @classmethod
    def _check_pattern(cls, pattern: str) -> str:
        parse(pattern)
        return pattern

    @cached_property
    def parts(self) -> list[Part]:
        return parse(self.pattern)

    def arrow_type(self) -> pa.DataType:
        return pa.string()

    def capacity(self, earlier: Mapping[str, int | None], locale: str) -> int | None:
        return distinct_strings(self.parts)

    def relation_checks(self, locale: str = "en_US") -> list[RelationCheck]:
        name, regex = f'"{self.name}"', "'" + self.pattern.replace("'", "''") + "'"
        sql = (
            f"SELECT count(*) FILTER (WHERE NOT regexp_full_match({name}, {regex})) AS failed, "
            f"format('{{:,}} of {{:,}} values do not match', failed, count({name})) AS observed "
            "FROM data"
        )
        return [RelationCheck(self.name, f"{self.name} matches {self.pattern}", sql)]

    def generate(self, ctx: ChunkContext) -> pa.Array:
        codes, used = [], []
        for part in self.parts:
            table = np.array([ord(char) for char in part.chars], dtype="<u4")
            codes.append(table[ctx.rng.integers(0, len(table), size=(ctx.rows, part.high))])
            lengths = np.arange(part.low, part.high + 1)
            # Each length as likely as the strings it makes: \d{1,3} is mostly 3 digits, as
            # 900 of its 1,110 values are, so unique columns do not run out of short ones.
            weights = np.exp((lengths - part.high) * np.log(len(table)))
            drawn = ctx.rng.choice(lengths, size=ctx.rows, p=weights / weights.sum())
            used.append(np.arange(part.high) < drawn[:, None])
        code, keep = np.concatenate(codes, axis=1), np.concatenate(used, axis=1)
        # Move each row's used characters to its front; the NUL padding left behind is what
        # ends a numpy string, so the matrix reads as one fixed-width string per row.
        packed = np.zeros_like(code)
        rows, columns = np.nonzero(keep)
        packed[rows, np.cumsum(keep, axis=1)[rows, columns] - 1] = code[rows, columns]
        return pa.array(packed.view(f"<U{code.shape[1]}").ravel())
