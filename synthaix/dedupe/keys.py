"""Which columns a dataset's dedupe looks at, and the exact-key hash of each row."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from synthaix.columns.identity import UuidColumn
from synthaix.columns.llm import LlmColumn
from synthaix.columns.numeric import SequenceColumn

if TYPE_CHECKING:
    from synthaix.config import DatasetConfig

_NULL = "\x00"  # cannot appear in a trimmed, case-folded value of ours, unlike "" or "None"
_SEPARATOR = "\x1f"


def key_columns(config: DatasetConfig) -> list[str]:
    if not config.dedupe.exact:
        return []
    if config.dedupe.key:
        return list(config.dedupe.key)
    return [c.name for c in config.columns if not isinstance(c, UuidColumn | SequenceColumn)]


def text_columns(config: DatasetConfig) -> list[str]:
    """Columns embedded for the near-duplicate check; empty when it is off."""
    settings = config.dedupe
    llm = [c.name for c in config.columns if isinstance(c, LlmColumn)]
    if settings.near is False or (settings.near is None and not llm):
        return []
    if settings.text:
        return list(settings.text)
    strings = [c.name for c in config.columns if pa.types.is_string(c.arrow_type())]
    llm_strings = [name for name in strings if name in llm]
    return llm_strings or strings


def key_hashes(table: pa.Table, columns: list[str]) -> np.ndarray:
    """A 64-bit hash per row of the normalised key columns: strings trimmed and lower-cased,
    other types by their text form. blake2b, so hashes stay valid across library upgrades
    (they are stored with the dataset)."""
    parts = []
    for name in columns:
        column = table[name]
        if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
            column = pc.utf8_lower(pc.utf8_trim_whitespace(column))
        else:
            column = pc.cast(column, pa.string())
        parts.append(pc.fill_null(column, _NULL))
    joined = parts[0] if len(parts) == 1 else pc.binary_join_element_wise(*parts, _SEPARATOR)
    blake = hashlib.blake2b
    digests = b"".join([blake(v.encode(), digest_size=8).digest() for v in joined.to_pylist()])
    return np.frombuffer(digests, dtype=np.int64).copy()


def row_texts(table: pa.Table, columns: list[str]) -> list[str]:
    """The text embedded for a row: its text columns joined (nulls as empty)."""
    parts = [pc.fill_null(table[name].cast(pa.string()), "") for name in columns]
    joined = parts[0] if len(parts) == 1 else pc.binary_join_element_wise(*parts, " \n ")
    return joined.to_pylist()
