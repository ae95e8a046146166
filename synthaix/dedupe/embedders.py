"""Text embedders for near-duplicate search, behind one small interface.

`hashing` (the default) needs no model and no network: character n-grams of the normalised
text are hashed into a fixed number of signed buckets (feature hashing), fully vectorised with
numpy. `openai` asks the provider's embeddings endpoint; `sentence-transformers` runs a local
model (optional extra `st`). Every embedder returns L2-normalised float32 rows, so cosine
similarity is a dot product.
"""

from __future__ import annotations

import re
import unicodedata
from typing import TYPE_CHECKING, Protocol

import numpy as np

from synthaix.errors import ConfigError

if TYPE_CHECKING:
    from synthaix.dedupe.settings import DedupeConfig
    from synthaix.llm.provider import ProviderConfig
    from synthaix.llm.stats import StatsRecorder

_SPACES = re.compile(r"\s+")


class Embedder(Protocol):
    dims: int
    #: What its requests spent (an embeddings endpoint's); None for a local embedder.
    spent: StatsRecorder | None

    def embed(self, texts: list[str]) -> np.ndarray:
        """(len(texts), dims) float32, each row of unit length (or zero for empty text)."""
        ...


def normalise_text(text: str) -> str:
    """What near-duplicate search compares: case, accents' encoding and spacing do not count."""
    return _SPACES.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip()


class HashingEmbedder:
    """Signed feature hashing of character n-grams (n = 3 by default) of the normalised text.

    Each n-gram votes +1 or -1 (a second hash picks the sign) into one of `dims` buckets, so
    collisions cancel out on average instead of inflating similarity. A typo changes about n
    n-grams, swapping two words only those that span the word boundaries, so near-duplicates
    stay close while unrelated texts that share a vocabulary stay far apart.
    """

    spent = None  # local: no spend

    def __init__(self, dims: int = 256, ngram: int = 3) -> None:
        self.dims = dims
        self.ngram = ngram

    def embed(self, texts: list[str]) -> np.ndarray:
        n, size = len(texts), self.ngram
        out = np.zeros((n, self.dims), dtype=np.float32)
        if not n:
            return out
        # Pad each text with spaces so short texts and word edges still make n-grams; code
        # points of all texts in one array, with the owner row of every position.
        padded = [f" {normalise_text(t)} " for t in texts]
        lengths = np.fromiter((len(t) for t in padded), dtype=np.int64, count=n)
        codes = np.frombuffer("".join(padded).encode("utf-32-le"), dtype=np.uint32)
        codes = codes.astype(np.uint64)
        owner = np.repeat(np.arange(n, dtype=np.int64), lengths)
        starts = np.arange(len(codes) - size + 1)
        same_row = owner[starts] == owner[starts + size - 1]
        starts = starts[same_row]
        h = np.zeros(len(starts), dtype=np.uint64)
        with np.errstate(over="ignore"):
            for k in range(size):  # FNV-style mixing of the n code points
                h = (h ^ codes[starts + k]) * np.uint64(0x100000001B3)
            h ^= h >> np.uint64(29)
            h *= np.uint64(0xBF58476D1CE4E5B9)
            h ^= h >> np.uint64(32)
        bucket = (h % np.uint64(self.dims)).astype(np.int64)
        sign = np.where((h >> np.uint64(63)) == 1, -1.0, 1.0)
        flat = np.bincount(
            owner[starts] * self.dims + bucket, weights=sign, minlength=n * self.dims
        )
        out[:] = flat.reshape(n, self.dims)
        return unit_rows(out)


class OpenAIEmbedder:
    """The provider's embeddings endpoint, in batches, with the client's retry rules."""

    def __init__(
        self,
        provider: ProviderConfig,
        model: str,
        dims: int | None,
        price_per_million: float | None,
    ) -> None:
        from synthaix.llm.client import LlmClient
        from synthaix.llm.stats import StatsRecorder

        self.client = LlmClient(provider)
        self.model = model
        self.spent: StatsRecorder | None = StatsRecorder()
        self.price = price_per_million
        self.dims = dims or len(self._request(["dimension probe"], None)[0])
        self._asked_dims = dims

    def _request(self, texts: list[str], dims: int | None) -> list[list[float]]:
        return self.client.embed(texts, self.model, dims, self.spent, self.price)

    def embed(self, texts: list[str]) -> np.ndarray:
        rows: list[list[float]] = []
        for start in range(0, len(texts), 512):
            batch = [normalise_text(t) or " " for t in texts[start : start + 512]]
            rows.extend(self._request(batch, self._asked_dims))
        return unit_rows(np.asarray(rows, dtype=np.float32).reshape(len(texts), self.dims))


class SentenceTransformerEmbedder:
    """A local sentence-transformers model (pip install 'synthaix[st]')."""

    spent = None  # local: no spend

    def __init__(self, model: str) -> None:
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError:
            raise ConfigError(
                "dedupe.embedder 'sentence-transformers' needs the optional package",
                hint="pip install 'synthaix[st]', or use embedder: hashing",
            ) from None
        self.model = SentenceTransformer(model)
        self.dims = int(self.model.get_sentence_embedding_dimension())

    def embed(self, texts: list[str]) -> np.ndarray:
        vectors = self.model.encode([normalise_text(t) for t in texts], batch_size=256)
        return unit_rows(np.asarray(vectors, dtype=np.float32))


def unit_rows(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return np.divide(matrix, norms, out=np.zeros_like(matrix), where=norms > 0)


def make_embedder(settings: DedupeConfig, provider: ProviderConfig) -> Embedder:
    if settings.embedder == "openai":
        model = settings.model or "text-embedding-3-small"
        return OpenAIEmbedder(provider, model, settings.dims, settings.price_per_million)
    if settings.embedder == "sentence-transformers":
        return SentenceTransformerEmbedder(settings.model or "all-MiniLM-L6-v2")
    return HashingEmbedder(settings.dims or 256)
