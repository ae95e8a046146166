"""The `dedupe` block of a dataset config."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from synthaix.columns.base import StrictModel
from synthaix.ownership import not_root_or_home

DEFAULT_DIMS = 256
DEFAULT_THRESHOLD = 0.8


class DedupeConfig(StrictModel):
    """How delivered rows are kept free of exact and near duplicates, across builds too."""

    exact: bool = Field(
        default=True,
        description="Drop rows whose key columns repeat a row of this dataset (after trimming "
        "and case-folding strings).",
    )
    key: list[str] | None = Field(
        default=None,
        min_length=1,
        description="Key columns of the exact check (default: every column except generated "
        "identifiers, i.e. uuid and sequence columns, which would make every row distinct).",
    )
    near: bool | None = Field(
        default=None,
        description="Drop rows whose text is a near duplicate (cosine similarity >= threshold) "
        "of a stored row. Default: on when `text` is given or the dataset has llm columns of "
        "free text (not enum, pattern or format), since sampler text is random by "
        "construction.",
    )
    text: list[str] | None = Field(
        default=None,
        min_length=1,
        description="String columns embedded for the near-duplicate check (default: the llm "
        "columns of free text, else every string column).",
    )
    threshold: float = Field(
        default=DEFAULT_THRESHOLD,
        gt=0,
        le=1,
        description="Cosine similarity at or above which two rows are near duplicates.",
    )
    embedder: Literal["hashing", "openai", "sentence-transformers"] = Field(
        default="hashing",
        description="hashing: offline character n-gram hashing (no model); openai: the "
        "provider's embeddings endpoint; sentence-transformers: a local model (extra 'st').",
    )
    model: str | None = Field(
        default=None,
        description="Embedding model (openai: text-embedding-3-small; sentence-transformers: "
        "all-MiniLM-L6-v2).",
    )
    price_per_million: float | None = Field(
        default=None,
        ge=0,
        description="USD per million tokens embedded (embedder: openai), for the manifest's "
        "embeddings cost (unset: not priced, 0: free; requests and tokens are counted anyway).",
    )
    dims: int | None = Field(
        default=None,
        ge=8,
        le=4096,
        description=f"Vector size (hashing: {DEFAULT_DIMS}; openai: the model's, or shortened).",
    )
    uri: str | None = Field(
        default=None,
        description="LanceDB database holding the dataset's dedupe table: a directory or an "
        "object-store URI such as s3://bucket/dedupe (default: <output dir>/.dedupe).",
    )

    @field_validator("uri")
    @classmethod
    def _not_root_or_home(cls, uri: str | None) -> str | None:
        if uri is not None and "://" not in uri:  # a folder (object stores are not checked)
            not_root_or_home(Path(uri), "out/<name>/.dedupe")
        return uri

    index_rows: int = Field(
        default=50_000,
        ge=1_000,
        description="Stored rows from which an ANN index is built (flat search below that).",
    )
