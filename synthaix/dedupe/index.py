"""The dataset's persistent dedupe table in LanceDB, and the checks made against it.

One table per dataset (named after it) in a LanceDB database beside the output, or at
`dedupe.uri`; a dataset with exact keys alone and no `dedupe.uri` keeps key files instead
(`keyfile.py`). A row of it is a delivered row: `row_id` (the generator's row number, so a
chunk run again is recognised and never inserted twice), `build`, `key_hash` (exact check)
and `vector` (near-duplicate check).

- Exact keys never touch the vector path: their hashes (and the stored row ids) are held in
  sorted numpy runs, 16 bytes a row, so checking a batch is a binary search.
- Near duplicates: rows covered by the table's IVF_RQ index are searched by LanceDB, one
  batched call per 1,024 rows, with `fast_search` (indexed rows only). Rows the index does not
  cover yet (recent builds, this build) are held in memory and searched with a numpy product,
  as is each sub-batch against itself. Measured with lancedb 0.40 on 2 cores: LanceDB's own
  flat search of unindexed rows costs ~17 ms a query (5k unindexed rows made a 1,024-query
  batch take 18 s), and compacting after indexing slows indexed search ~8x, so the table is
  compacted only just before the index is rebuilt, and rebuilt once the unindexed rows grow
  past a quarter of the indexed ones.
- Each committed build tags the table version it left (`synthaix-<build>`); the manifest names
  the tag. A build that crashed or was killed leaves rows that no manifest names; the next
  build restores the tagged version, so only delivered rows ever count as seen.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import math
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from synthaix.assemble import batch_rows
from synthaix.build.manifest import DedupeTable
from synthaix.config import DatasetConfig
from synthaix.dedupe import keyfile
from synthaix.dedupe.embedders import Embedder, make_embedder
from synthaix.dedupe.hashset import SortedRuns
from synthaix.dedupe.keys import (
    hash_version,
    key_columns,
    key_hashes,
    row_texts,
    text_columns,
)
from synthaix.dedupe.target import owner_metadata
from synthaix.errors import OutputError
from synthaix.llm.stats import LlmStats
from synthaix.ownership import os_errors

# IVF_RQ (RaBitQ, 1 bit a dimension), sqrt(N) partitions, 20 probed. Measured at 1M rows of
# 256 dims on 2 cores: ~2,900 queries/s in 1,000-query calls, 99.6 % of planted near
# duplicates found, 0.3 GB; its `_distance` is ~2 * (1 - cosine) (p99 error 0.09). IVF_FLAT
# (exact distances) managed ~900/s at the same recall, IVF_PQ's distances were unusable
# without refine_factor, and refine_factor cost 8x.
NPROBES = 20
KMEANS_ITERATIONS = 20
REINDEX_FRACTION = 0.25  # rebuild the index when unindexed rows pass this share of the table
SEARCH_BATCH = 1024  # queries per LanceDB search call, and the size of within-batch matrices
SIMILARITY_SLICE = 16_384  # stored rows compared at once in memory: a 64 MiB matrix
FLUSH_ROWS = 50_000  # accepted rows buffered before they are written to LanceDB


@dataclass
class DedupeStats:
    exact: int = 0
    near: int = 0


class DedupeIndex:
    """Admits rows that repeat nothing delivered before, and remembers them across builds."""

    def __init__(
        self, config: DatasetConfig, embedder: Embedder | None = None, persistent: bool = True
    ) -> None:
        """`persistent=False`: checks within this build only, held in memory (a preview)."""
        self.config = config
        self.persistent = persistent
        self.keys = key_columns(config)
        self.texts = text_columns(config)
        self.threshold = config.dedupe.threshold
        self.embedder = embedder
        if self.texts and embedder is None:
            self.embedder = make_embedder(config.dedupe, config.provider)
        self.uri = config.dedupe.uri or str(config.output_dir / ".dedupe")
        self.lance = bool(self.texts or config.dedupe.uri)
        self.name = config.name
        self.stats = DedupeStats()
        self.build_id = ""
        self._table: Any = None
        self._start_tag: str | None = None
        self._hashes = SortedRuns()  # key hashes delivered
        self._ids = SortedRuns()  # row ids delivered
        self._pending: list[pa.Table] = []  # accepted rows not yet written to LanceDB
        self._pending_rows = 0
        self._unindexed: list[np.ndarray] = []  # vectors the LanceDB index does not cover
        self._unindexed_builds: list[str] = []  # builds whose rows the index does not cover
        self._has_index = False
        self._files: list[str] = []  # key files (no LanceDB) of the rows this build adds to
        self._new: list[tuple[np.ndarray, np.ndarray]] = []  # (row ids, hashes) to write

    @property
    def enabled(self) -> bool:
        return bool(self.keys or self.texts)

    @property
    def dims(self) -> int:
        return self.embedder.dims if self.embedder is not None else 0

    @property
    def embedding_spend(self) -> LlmStats:
        """What this build's embedding requests spent (an embeddings endpoint's; else none)."""
        spent = self.embedder.spent if self.embedder is not None else None
        return spent.stats.model_copy() if spent is not None else LlmStats()

    def signature(self) -> dict[str, Any]:
        """What stored hashes and vectors depend on; a change means rebuilding the table."""
        settings = self.config.dedupe
        return {
            "key": self.keys,
            "key_hash": hash_version() if self.keys else None,
            "text": self.texts,
            "embedder": settings.embedder if self.texts else None,
            "model": settings.model if self.texts else None,
            "dims": self.dims,
        }

    # -- lifecycle ---------------------------------------------------------------------------
    def open(self, build_id: str, previous: DedupeTable | None, existing: list[Path]) -> None:
        """Open or create the table. `previous` is the dedupe section of the current output's
        manifest; `existing` the parts an append build adds to (empty for overwrite)."""
        self.build_id = build_id
        if not self.enabled or not self.persistent:
            return
        if not self.lance:
            self._open_keys(previous, existing)
            return
        import lancedb  # here, not at the top: a preview or a validate never loads it

        try:
            db = lancedb.connect(self.uri)
            names = set(db.table_names(limit=1_000_000))
        except Exception as exc:  # lancedb raises plain ValueError/OSError for bad URIs
            raise OutputError(
                f"cannot open the dedupe database at {self.uri}: {exc}",
                hint="fix dedupe.uri (a directory, or an object-store URI such as s3://...)",
            ) from None
        tag = _usable_tag(previous, self.uri, self.name, self.signature())
        if self.name in names:
            table = db.open_table(self.name)
            tags = table.tags.list()
            self._start_tag = tag if tag in tags else None
            if existing and self._start_tag:
                if table.version != tags[self._start_tag]["version"]:
                    table.restore(self._start_tag)  # drop rows of a build that never committed
                self._table = table
                assert previous is not None
                self._unindexed_builds = list(previous.unindexed_builds)
                self._has_index = previous.indexed
                self._load()
                return
        self._table = db.create_table(self.name, schema=self._schema(), mode="overwrite")
        if existing:
            self._backfill(existing)

    def admit(
        self,
        table: pa.Table,
        row_ids: np.ndarray,
        limit: int,
        hashes: np.ndarray | None = None,
        fits: Callable[[np.ndarray], np.ndarray] | None = None,
    ) -> pa.Table:
        """The rows (at most `limit`, in order) that duplicate nothing stored, nothing of this
        build and nothing earlier in `table`; they are stored. Rows already stored under the
        same row id (a chunk run twice) are kept and not stored again. `hashes`: the rows' key
        hashes when the chunk task computed them already. `fits(rows)`: of the rows that pass
        the checks, those a child table's per-parent counts still take."""
        if not self.enabled or table.num_rows == 0:
            rows = np.arange(table.num_rows)
            self.kept = (rows if fits is None else rows[fits(rows)])[:limit]
            return _taken(table, self.kept)
        rerun = self._ids.contains(row_ids)
        if hashes is None:
            hashes = self._key_hashes(table)
        keep, offered = ~rerun, rerun  # offered: the rerun rows the counts still take
        # With the near check, the counts are asked after it: a parent whose first candidate
        # is near a stored row keeps its next one (the exact check alone asks them within).
        counted = None if self.texts else fits
        if self.keys:
            keep, offered, over = self._exact_fresh(hashes, rerun, counted)
            self.stats.exact += int((~rerun & ~keep & ~over).sum())
        elif counted is not None:
            keep, offered, _ = _fitting(keep, offered, counted)
        vectors = np.zeros((table.num_rows, self.dims), dtype=np.float32)
        if self.texts:  # with counts, a later candidate may be the one they take
            wanted = limit if fits is None else table.num_rows
            keep = self._near_fresh(table, keep, offered, wanted, vectors)
            if fits is not None:
                keep, offered, _ = _fitting(keep, offered, fits)
        delivered = np.flatnonzero(keep | offered)[:limit]
        self.kept = delivered  # which rows of `table` were admitted, for the caller
        fresh = delivered[~rerun[delivered]]
        if len(fresh):
            self._remember(row_ids[fresh], hashes[fresh], vectors[fresh])
        return _taken(table, delivered)

    def store(self, table: pa.Table, row_ids: np.ndarray) -> None:
        """Remember rows without checking them: data already delivered (an existing dataset
        that has no dedupe table yet)."""
        if not self.enabled or table.num_rows == 0:
            return
        hashes = self._key_hashes(table)
        vectors = np.zeros((table.num_rows, self.dims), dtype=np.float32)
        if self.texts:
            assert self.embedder is not None
            vectors = self.embedder.embed(row_texts(table, self.texts))
        self._remember(row_ids, hashes, vectors)

    def finish(self) -> DedupeTable | None:
        """Write what is pending, (re)build the ANN index when due, tag the version; the
        returned section goes into the manifest."""
        if not self.enabled or not self.persistent:
            return None
        if not self.lance:
            return self._finish_keys()
        self._flush()
        table = self._table
        rows = table.count_rows()
        if self._unindexed and self.build_id not in self._unindexed_builds:
            self._unindexed_builds.append(self.build_id)
        tag = f"synthaix-{self.build_id}"
        _tag(table, tag)
        return DedupeTable(
            uri=self.uri,
            table=self.name,
            tag=tag,
            rows=rows,
            indexed=self._has_index,
            unindexed_builds=self._unindexed_builds,
            signature=self.signature(),
        )

    def committed(self) -> None:
        """After the dataset is published: the old tag is no longer needed. (Old versions are
        pruned when the table is next compacted, just before an index rebuild.)"""
        if not self.lance and self._files:
            keyfile.remove_unlisted(Path(self.uri), self.name, self._files)
        if self._table is None:
            return
        if self._start_tag and self._start_tag in self._table.tags.list():
            self._table.tags.delete(self._start_tag)

    def abort(self) -> None:
        """A failed build: put the table back as the last committed build left it."""
        if not self.lance and self.build_id:
            keyfile.discard(Path(self.uri), self.name, self.build_id)
        if self._table is None:
            return
        with contextlib.suppress(Exception):  # best effort; the next build restores anyway
            if self._start_tag:
                self._table.restore(self._start_tag)

    # -- checks ------------------------------------------------------------------------------
    def _key_hashes(self, table: pa.Table) -> np.ndarray:
        """Exact-key hashes of the rows; zeros (stored, never compared) when `exact` is off."""
        if not self.keys:
            return np.zeros(table.num_rows, np.int64)
        return key_hashes(table, self.keys)

    def _exact_fresh(
        self,
        hashes: np.ndarray,
        rerun: np.ndarray,
        fits: Callable[[np.ndarray], np.ndarray] | None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(kept, rerun rows offered, rows over their parent's count): a row is kept when its
        key is not stored and it is the first of its kind in the batch, among the rows its
        parent's count takes (`fits`: a child table's). A row over the count claims no key:
        a later row of that key, another parent's candidate, may take it (the first row of a
        key dropped for its full parent made every other one a duplicate of nothing stored)."""
        # One sort for every check: not np.unique(return_index=True), whose stable sort is
        # ~5x slower.
        order = np.argsort(hashes)
        ordered = hashes[order]
        starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
        n = len(hashes)
        stored = np.empty(n, dtype=bool)
        stored[order] = self._hashes.contains_sorted(ordered)
        over, offered = np.zeros(n, dtype=bool), rerun
        while True:
            claims = np.where(over[order], n, order)  # the rows over the count claim nothing
            first = np.zeros(n + 1, dtype=bool)
            first[np.minimum.reduceat(claims, starts)] = True
            keep = first[:n] & ~stored & ~rerun
            if fits is None:
                return keep, offered, over
            keep, offered, newly = _fitting(keep, offered, fits)
            if not newly.any():
                return keep, offered, over
            over |= newly

    def _near_fresh(
        self, table: pa.Table, keep: np.ndarray, rerun: np.ndarray, limit: int, out: np.ndarray
    ) -> np.ndarray:
        """Greedy in row order: a row is dropped when a stored row, a row accepted earlier in
        this build, or an earlier kept row of this batch is at least `threshold` similar.
        Writes the vectors of the rows it keeps into `out`."""
        assert self.embedder is not None
        keep = keep.copy()
        texts = row_texts(table, self.texts)
        accepted = int(rerun.sum())
        earlier: list[np.ndarray] = []  # kept vectors of earlier sub-batches of this call
        for start in range(0, table.num_rows, SEARCH_BATCH):
            if accepted >= limit:
                keep[start:] = False  # not needed: left for a later round, not counted dropped
                break
            rows = np.flatnonzero(keep[start : start + SEARCH_BATCH]) + start
            if not len(rows):
                continue
            vectors = self.embedder.embed([texts[i] for i in rows])
            best = np.maximum(
                self._stored_similarity(vectors),
                _best_similarity(vectors, self._unindexed + earlier),
            )
            ok = best < self.threshold
            within = vectors @ vectors.T
            for i in np.flatnonzero(ok):
                if i and (within[i, :i][ok[:i]] >= self.threshold).any():
                    ok[i] = False
            keep[rows[~ok]] = False
            self.stats.near += int((~ok).sum())
            out[rows[ok]] = vectors[ok]
            earlier.append(vectors[ok])
            accepted += int(ok.sum())
        return keep

    def _stored_similarity(self, vectors: np.ndarray) -> np.ndarray:
        """Best similarity of each vector to the rows the LanceDB index covers."""
        best = np.full(len(vectors), -1.0, dtype=np.float32)
        if not self._has_index:
            return best
        hits = (
            self._table.search(vectors, vector_column_name="vector")
            .distance_type("cosine")
            .limit(1)
            .nprobes(NPROBES)
            .fast_search()  # indexed rows only; the others are searched in memory
            .select(["row_id", "_distance"])
            .to_arrow()
        )
        if hits.num_rows:
            query = hits["query_index"].to_numpy()
            similarity = 1.0 - hits["_distance"].to_numpy() / 2.0  # RaBitQ: ~2 * (1 - cos)
            np.maximum.at(best, query, similarity.astype(np.float32))
        return best

    # -- storage -----------------------------------------------------------------------------
    def _schema(self) -> pa.Schema:
        fields = [
            pa.field("row_id", pa.int64(), nullable=False),
            pa.field("build", pa.string()),
            pa.field("key_hash", pa.int64()),
        ]
        if self.texts:
            fields.append(pa.field("vector", pa.list_(pa.float32(), self.dims)))
        return pa.schema(fields, metadata=owner_metadata(self.config.output_dir))

    def _remember(self, row_ids: np.ndarray, hashes: np.ndarray, vectors: np.ndarray) -> None:
        self._hashes.add(hashes)
        self._ids.add(row_ids)
        if not self.lance:
            self._new.append((row_ids, hashes))
            return
        columns: dict[str, Any] = {
            "row_id": pa.array(row_ids, pa.int64()),
            "build": pa.array([self.build_id] * len(row_ids), pa.string()),
            "key_hash": pa.array(hashes, pa.int64()),
        }
        if self.texts:
            self._unindexed.append(vectors)
            columns["vector"] = pa.FixedSizeListArray.from_arrays(
                pa.array(vectors.ravel(), pa.float32()), self.dims
            )
        self._pending.append(pa.table(columns, schema=self._schema()))
        self._pending_rows += len(row_ids)
        if self._pending_rows >= FLUSH_ROWS:
            self._flush()

    def _flush(self) -> None:
        if not self._pending:
            return
        if self._table is None:  # in memory only: `_hashes`, `_ids`, `_unindexed` hold it all
            self._pending, self._pending_rows = [], 0
            return
        rows = pa.concat_tables(self._pending)
        # A plain append: `_ids` (loaded at open, kept in memory) already keeps a row of a
        # chunk run twice from being remembered twice, and rows of a build that never
        # committed are dropped by restoring the last tag. (merge_insert cost ~5x more.)
        self._table.add(rows)
        self._pending, self._pending_rows = [], 0
        if not self.texts:
            return  # no vectors: nothing to index
        # Rows the index does not cover are searched in memory (~1 KB a row at 256 dims):
        # once they pass a quarter of the table, index them, so a build of millions of rows
        # keeps both memory and search time bounded.
        stored = self._table.count_rows()
        unindexed = sum(len(v) for v in self._unindexed)
        due = not self._has_index or unindexed > REINDEX_FRACTION * stored
        if stored >= self.config.dedupe.index_rows and due:
            self._reindex(stored)

    def _prunable(self) -> dt.timedelta:
        """How old a version must be for the compaction before an index rebuild to delete
        it: any, but the last committed build's, which a failed build restores (lancedb also
        refuses to clean up a tagged version: its "Cleanup error" failed every build that
        rebuilt the index after the first). Tags of builds that never committed go."""
        table, keep = self._table, self._start_tag
        for tag in table.tags.list():
            if tag.startswith("synthaix-") and tag != keep:
                table.tags.delete(tag)
        if keep is None:
            return dt.timedelta(0)
        return _older_than(table, table.tags.list()[keep]["version"])

    def _reindex(self, rows: int) -> None:
        """Compact, then build the IVF_RQ index over every row."""
        from lancedb.index import IvfRq

        with warnings.catch_warnings():  # "other readers may fail": the output lock is ours
            warnings.simplefilter("ignore")
            self._table.optimize(cleanup_older_than=self._prunable())
        self._table.create_index(
            "vector",
            config=IvfRq(
                distance_type="cosine",
                num_partitions=max(16, math.isqrt(rows)),
                max_iterations=KMEANS_ITERATIONS,
            ),
            replace=True,
        )
        self._has_index = True
        self._unindexed, self._unindexed_builds = [], []

    def _open_keys(self, previous: DedupeTable | None, existing: list[Path]) -> None:
        if not existing:
            return
        usable = _usable_tag(previous, self.uri, self.name, self.signature()) is not None
        stored = keyfile.read(Path(self.uri), previous.files) if usable and previous else None
        if previous is None or not previous.files or stored is None:
            self._backfill(existing)
            return
        row_ids, hashes = stored
        self._ids.add(row_ids)
        self._hashes.add(hashes)
        self._files = list(previous.files)

    def _finish_keys(self) -> DedupeTable:
        new = keyfile.name(self.name, self.build_id)
        ids = [i for i, _ in self._new]
        hashes = [h for _, h in self._new]
        empty = np.zeros(0, np.int64)
        with os_errors("write to"):
            keyfile.write(
                Path(self.uri) / new,
                np.concatenate(ids) if ids else empty,
                np.concatenate(hashes) if hashes else empty,
            )
        if new not in self._files:  # finish() again after a retry rewrites the same file
            self._files.append(new)
        return DedupeTable(
            uri=self.uri,
            table=self.name,
            files=self._files,
            rows=len(self._ids),
            signature=self.signature(),
        )

    def _load(self) -> None:
        count = self._table.count_rows()
        if not count:
            return
        stored = self._table.search().select(["row_id", "key_hash"]).limit(count).to_arrow()
        row_ids = stored["row_id"].to_numpy()
        self._ids.add(row_ids)
        if self.keys:
            self._hashes.add(stored["key_hash"].to_numpy())
        if self.texts and self._unindexed_builds:
            builds = ", ".join(_sql_string(b) for b in self._unindexed_builds)
            recent = (
                self._table.search()
                .where(f"build IN ({builds})")
                .select(["vector"])
                .limit(count)
                .to_arrow()
            )
            flat = recent["vector"].combine_chunks().flatten().to_numpy()
            self._unindexed.append(flat.reshape(-1, self.dims))

    def _backfill(self, parts: Iterable[Path]) -> None:
        """Index a dataset that has no (usable) dedupe table yet: its rows get ids -1, -2, ..."""
        next_id = -1
        for batch in _batches(parts, min(100_000, batch_rows(self.dims))):
            ids = np.arange(next_id, next_id - batch.num_rows, -1, dtype=np.int64)
            next_id -= batch.num_rows
            self.store(batch, ids)


def _batches(parts: Iterable[Path], rows: int = 100_000) -> Iterable[pa.Table]:
    for part in parts:
        for batch in pq.ParquetFile(part).iter_batches(batch_size=rows):
            yield pa.Table.from_batches([batch])


def _older_than(table: Any, version: int) -> dt.timedelta:
    """An age that keeps `version` and every later version of `table`."""
    made = next(v["timestamp"] for v in table.list_versions() if v["version"] == version)
    return dt.timedelta(seconds=time.time() - made.timestamp() + 1)


def _tag(table: Any, tag: str) -> None:
    """Tag the latest version (again, after a retry or a prune)."""
    if tag in table.tags.list():
        table.tags.update(tag, table.version)
    else:
        table.tags.create(tag, table.version)


def _usable_tag(
    previous: DedupeTable | None, uri: str, name: str, signature: dict[str, Any]
) -> str | None:
    """The tag of the last committed build, if its table is this one and built the same way."""
    if previous is None or previous.uri != uri or previous.table != name:
        return None
    return previous.tag if previous.signature == signature else None


def _best_similarity(vectors: np.ndarray, others: list[np.ndarray]) -> np.ndarray:
    best = np.full(len(vectors), -1.0, dtype=np.float32)
    for block in others:
        # In slices: a whole block (a batch's rows) at once would make a 1024 x rows matrix,
        # 0.5 GiB for 131k rows.
        for start in range(0, len(block), SIMILARITY_SLICE):
            part = block[start : start + SIMILARITY_SLICE]
            best = np.maximum(best, (vectors @ part.T).max(axis=1))
    return best


def _sql_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _fitting(
    keep: np.ndarray, offered: np.ndarray, fits: Callable[[np.ndarray], np.ndarray]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`keep` and `offered` without the rows their parents' counts do not take, and those."""
    rows = np.flatnonzero(keep | offered)
    over = np.zeros(len(keep), dtype=bool)
    over[rows[~fits(rows)]] = True
    return keep & ~over, offered & ~over, over


def _taken(table: pa.Table, rows: np.ndarray) -> pa.Table:
    if not len(rows) or rows[-1] == len(rows) - 1:
        return table.slice(0, len(rows))  # the first rows: no copy (take: 9 ms a 100k)
    return table.take(pa.array(rows, type=pa.int64()))
