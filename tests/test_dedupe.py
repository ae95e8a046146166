"""Exact and near-duplicate removal against a real LanceDB table in tmp_path."""

from __future__ import annotations

import random
import time
from pathlib import Path

import lancedb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from near_duplicates import distinct_texts, variant

from conftest import make_config
from synthaix.config import DatasetConfig
from synthaix.dedupe.embedders import HashingEmbedder
from synthaix.dedupe.hashset import SortedRuns
from synthaix.dedupe.index import DedupeIndex
from synthaix.dedupe.keys import key_hashes

TEXT_COLUMNS = [{"name": "review", "type": "text.lorem"}]


def text_config(tmp_path: Path, **dedupe) -> DatasetConfig:
    return make_config(
        TEXT_COLUMNS,
        name="reviews",
        output={"dir": str(tmp_path / "out")},
        dedupe={"near": True, **dedupe},
    )


def texts(values: list[str]) -> pa.Table:
    return pa.table({"review": pa.array(values, pa.string())})


def ids(start: int, count: int) -> np.ndarray:
    return np.arange(start, start + count, dtype=np.int64)


def stored_rows(index: DedupeIndex) -> int:
    return lancedb.connect(index.uri).open_table(index.name).count_rows()


def committed(index: DedupeIndex, build: str, previous=None, existing=()) -> dict:
    """Open, let the caller admit, then finish and commit as a build would."""
    index.open(build, previous, list(existing))
    return {}


@pytest.mark.parametrize("search", ["in memory", "ANN index"])
def test_default_threshold_catches_near_duplicates_with_few_false_positives(
    tmp_path: Path, search: str
) -> None:
    rng = random.Random(3)
    originals = distinct_texts(3000, seed=1)
    stored, fresh = originals[:2000], originals[2000:]
    # With index_rows below the stored 2,000, finish() builds the IVF_RQ index and the
    # stored rows are searched through LanceDB; otherwise they stay in memory.
    options = {"index_rows": 1000} if search == "ANN index" else {}
    index = DedupeIndex(text_config(tmp_path, **options))
    index.open("b1", None, [])
    assert index.admit(texts(stored), ids(0, 2000), 2000).num_rows == 2000
    assert index.finish().indexed == (search == "ANN index")

    labelled = [variant(rng, rng.choice(stored)) for _ in range(1000)]
    variants = [text for _, text in labelled]
    kept = index.admit(texts(variants), ids(10_000, 1000), 1000)
    caught = 1 - kept.num_rows / len(variants)
    assert caught >= 0.95, f"caught only {caught:.1%} of near duplicates"
    assert index.stats.exact + index.stats.near == 1000 - kept.num_rows
    assert index.stats.exact > 0 and index.stats.near > 0  # case and spacing are exact

    # Distinct texts from the same vocabulary must pass: at most 1 % false positives.
    kept = index.admit(texts(fresh), ids(20_000, 1000), 1000)
    assert kept.num_rows >= 990, f"{1000 - kept.num_rows} distinct rows were dropped"


def test_near_duplicates_within_one_batch_keep_the_first() -> None:
    embedder = HashingEmbedder()
    a, b = embedder.embed(["The quick brown fox jumps", "the quick  brown fox jumsp"])
    assert float(a @ b) >= 0.8
    assert float(a @ embedder.embed(["Completely different words here"])[0]) < 0.5


def test_exact_keys_are_trimmed_and_case_folded() -> None:
    table = pa.table({"name": [" Ann ", "ann", "Bob", None], "age": [30, 30, 30, None]})
    hashes = key_hashes(table, ["name", "age"])
    assert hashes[0] == hashes[1] and len(set(hashes.tolist())) == 3


def test_stored_keys_answer_like_a_set_for_ranges_and_random_keys() -> None:
    """Ranges asked at their ends (a run's first and last keys), and random keys asked
    sorted and unsorted."""
    rng = np.random.default_rng(3)
    for random_keys in (False, True):
        stored, reference = SortedRuns(), set()
        for start in range(0, 600, 50):
            batch = np.arange(start, start + 50, dtype=np.int64)
            if random_keys:
                batch = rng.integers(-1000, 1000, 50)
            for query in (batch - 1, batch + 1, batch, batch[::-1]):
                expected = np.array([k in reference for k in query.tolist()], dtype=bool)
                assert (stored.contains(query) == expected).all()
            stored.add(batch)
            reference.update(batch.tolist())


def test_exact_keys_hash_alike_in_ascii_and_unicode_chunks() -> None:
    """An all-ASCII chunk takes a faster path: its hashes must match a chunk with accents,
    or a duplicate across the two would be missed."""
    spaces = "".join(chr(c) for c in range(128) if chr(c).isspace())
    ascii_only = key_hashes(pa.table({"name": [f"{spaces}ANN{spaces}", "Bob"]}), ["name"])
    mixed = key_hashes(pa.table({"name": ["ann", "Zoë", " ZOË "]}), ["name"])
    assert ascii_only[0] == mixed[0] and mixed[1] == mixed[2]
    # Slices: the check reads only the bytes of the slice's own strings, wherever they sit.
    accented = pa.array(["bob", "ZOË", "ann"])
    sliced = pa.table({"name": pa.chunked_array([accented.slice(1, 1), accented.slice(2)])})
    hashes = key_hashes(sliced, ["name"])
    assert hashes[0] == mixed[1] and hashes[1] == mixed[0]


def test_a_rerun_chunk_is_not_inserted_twice_and_not_counted_as_duplicate(
    tmp_path: Path,
) -> None:
    index = DedupeIndex(text_config(tmp_path))
    index.open("b1", None, [])
    batch = texts(distinct_texts(300, seed=7))
    first = index.admit(batch, ids(0, 300), 300)
    index.finish()  # written to LanceDB
    again = index.admit(batch, ids(0, 300), 300)  # the same chunk, run again
    assert again.equals(first)
    assert index.stats.exact == index.stats.near == 0
    index.finish()
    assert stored_rows(index) == 300


def test_rows_of_a_build_that_never_committed_are_forgotten(tmp_path: Path) -> None:
    config = text_config(tmp_path)
    index = DedupeIndex(config)
    index.open("b1", None, [])
    old = distinct_texts(200, seed=8)
    index.admit(texts(old[:100]), ids(0, 100), 100)
    section = index.finish()
    index.committed()

    crashed = DedupeIndex(config)  # a second build adds rows, then dies before publishing
    crashed.open("b2", section, [Path("part")])
    crashed.admit(texts(old[100:]), ids(100, 100), 100)
    crashed.finish()
    assert stored_rows(crashed) == 200

    index = DedupeIndex(config)  # the next build starts from what b1 published
    index.open("b3", section, [Path("part")])
    assert stored_rows(index) == 100
    assert index.admit(texts(old[100:]), ids(100, 100), 100).num_rows == 100
    assert index.admit(texts(old[:100]), ids(500, 100), 100).num_rows == 0


def test_overwrite_resets_the_table(tmp_path: Path) -> None:
    config = text_config(tmp_path)
    index = DedupeIndex(config)
    index.open("b1", None, [])
    rows = texts(distinct_texts(50, seed=9))
    index.admit(rows, ids(0, 50), 50)
    section = index.finish()
    index.committed()
    fresh = DedupeIndex(config)
    fresh.open("b2", section, [])  # overwrite: no existing parts to add to
    assert fresh.admit(rows, ids(0, 50), 50).num_rows == 50


@pytest.mark.parametrize("limit", [1, 7])
def test_admit_stops_at_the_limit(tmp_path: Path, limit: int) -> None:
    index = DedupeIndex(text_config(tmp_path))
    index.open("b1", None, [])
    kept = index.admit(texts(distinct_texts(20, seed=4)), ids(0, 20), limit)
    assert kept.num_rows == limit
    index.finish()
    assert stored_rows(index) == limit


BUILDS = [f"20261126T12000{i}-00000{i}" for i in range(5)]
B1, B2, B3, B4 = BUILDS[1:]


def exact_config(tmp_path: Path) -> DatasetConfig:
    columns = [{"name": "code", "type": "integer", "min": 0, "max": 10**6}]
    out = {"dir": str(tmp_path / "out")}
    return make_config(columns, name="codes", output=out, dedupe={"exact": True})


def codes(values: list[int]) -> pa.Table:
    return pa.table({"code": pa.array(values, pa.int64())})


def key_files(config: DatasetConfig) -> list[str]:
    return sorted(p.name for p in (config.output_dir / ".dedupe").glob("*.parquet*"))


def test_exact_keys_alone_live_in_key_files_and_a_crashed_builds_file_is_never_read(
    tmp_path: Path,
) -> None:
    config = exact_config(tmp_path)
    index = DedupeIndex(config)
    assert not index.lance  # no text, no dedupe.uri: no LanceDB table
    index.open(B1, None, [])
    assert index.admit(codes([1, 2, 2, 3]), ids(0, 4), 4).column("code").to_pylist() == [1, 2, 3]
    section = index.finish()
    index.committed()
    assert section.files == [f"codes-keys-{B1}.parquet"] and section.rows == 3
    assert key_files(config) == [f"codes-keys-{B1}.parquet"]

    crashed = DedupeIndex(config)  # an append that writes its key file, then dies
    crashed.open(B2, section, [Path("part")])
    assert crashed.admit(codes([4, 5]), ids(4, 2), 2).num_rows == 2
    crashed.finish()

    index = DedupeIndex(config)  # the next append sees only what b1 published
    index.open(B3, section, [Path("part")])
    kept = index.admit(codes([3, 4, 5, 1]), ids(10, 4), 4)
    assert kept.column("code").to_pylist() == [4, 5] and index.stats.exact == 2
    section = index.finish()
    index.committed()
    assert section.files == [f"codes-keys-{B1}.parquet", f"codes-keys-{B3}.parquet"]
    assert key_files(config) == section.files  # B2's file is gone

    failed = DedupeIndex(config)
    failed.open(B4, section, [Path("part")])
    failed.finish()
    failed.abort()
    assert key_files(config) == section.files


def test_a_missing_key_file_is_rebuilt_from_the_published_parts(tmp_path: Path) -> None:
    config = exact_config(tmp_path)
    index = DedupeIndex(config)
    index.open(B1, None, [])
    index.admit(codes([7, 8]), ids(0, 2), 2)
    section = index.finish()
    index.committed()
    (config.output_dir / ".dedupe" / section.files[0]).unlink()
    part = tmp_path / "part.parquet"
    pq.write_table(codes([7, 8]), part)

    index = DedupeIndex(config)
    index.open(B2, section, [part])
    assert index.admit(codes([8, 9]), ids(2, 2), 2).column("code").to_pylist() == [9]


def test_similarity_to_stored_blocks_is_the_same_compared_in_slices(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from synthaix.dedupe import index

    rng = np.random.default_rng(1)
    vectors, block = rng.normal(size=(20, 8)).astype(np.float32), rng.normal(size=(50, 8))
    blocks = [block.astype(np.float32), np.zeros((0, 8), np.float32)]
    whole = (vectors @ blocks[0].T).max(axis=1)
    monkeypatch.setattr(index, "SIMILARITY_SLICE", 7)  # 8 slices, the last of one row
    assert np.array_equal(index._best_similarity(vectors, blocks), whole)


def test_llm_categories_and_codes_are_not_near_dedupe_text(tmp_path: Path) -> None:
    """An llm column of a few values (enum) or a code (pattern) repeats by design: embedded by
    default, it capped a 50-row build at its 4 values. Free text still is; without any, the
    automatic near check is off."""
    from llm_helpers import provider, simulator

    from synthaix.build.engine import Build
    from synthaix.build.executor import ThreadExecutor
    from synthaix.dedupe.keys import text_columns

    triage = {"name": "triage", "type": "llm", "enum": ["red", "orange", "yellow", "green"]}
    code = {"name": "code", "type": "llm", "schema": {"type": "string", "pattern": "[A-Z][0-9]"}}
    note = {"name": "note", "type": "llm", "prompt": "A note"}
    age = {"name": "age", "type": "integer", "min": 1, "max": 95}
    assert text_columns(make_config([age, triage, code])) == []
    assert text_columns(make_config([age, triage, note])) == ["note"]
    assert text_columns(make_config([age, triage], dedupe={"near": True})) == ["triage"]
    assert text_columns(make_config([age, triage], dedupe={"text": ["triage"]})) == ["triage"]
    day = {"name": "day", "type": "llm", "schema": {"type": "string", "format": "date"}}
    assert text_columns(make_config([age, day])) == []

    with simulator(latency=0.01) as sim:
        config = make_config(
            [{"name": "id", "type": "sequence"}, age, triage],
            rows=50,
            provider=provider(sim.url),
            output={"dir": str(tmp_path / "out")},
        )
        manifest = Build(config, ThreadExecutor(config)).run()
    assert manifest.rows.delivered == 50
    data = pq.read_table(tmp_path / "out" / "data")
    assert set(data["triage"].to_pylist()) <= {"red", "orange", "yellow", "green"}


def test_a_row_over_its_parents_count_claims_no_key(tmp_path: Path) -> None:
    """A child table's candidates: parents 0 and 1 need one row each. Parent 0's second
    candidate ('b') is over its count: it must not make parent 1's 'b' a duplicate of a row
    that was never kept (it did when the count was applied after the exact check)."""
    columns = [{"name": "word", "type": "category", "values": ["a", "b"]}]
    config = make_config(columns, rows=2, dedupe={"key": ["word"]})
    index = DedupeIndex(config, persistent=False)
    index.open("b1", None, [])
    parents = np.array([0, 0, 1])
    want = np.array([1, 1])

    def fits(rows: np.ndarray) -> np.ndarray:
        ranks = [list(parents[rows[: i + 1]]).count(parents[r]) for i, r in enumerate(rows)]
        return np.array(ranks) <= want[parents[rows]]

    batch = pa.table({"word": ["a", "b", "b"]})
    kept = index.admit(batch, ids(0, 3), 2, fits=fits)
    assert kept["word"].to_pylist() == ["a", "b"] and index.kept.tolist() == [0, 2]
    assert index.stats.exact == 0  # the dropped row was over its count, not a duplicate


def test_near_dedupe_takes_a_parents_next_candidate_when_its_first_is_near(
    tmp_path: Path,
) -> None:
    """With the near check, the counts are asked after it: parent 0 wants one row, its first
    candidate is near a stored row, its second is new: the second is kept (it was dropped as
    over the count when the counts came first)."""
    index = DedupeIndex(text_config(tmp_path, exact=False), persistent=False)
    index.open("b1", None, [])
    stored, fresh = distinct_texts(2, seed=21)
    index.admit(texts([stored]), ids(0, 1), 1)
    near = stored.upper()  # a near duplicate (case)

    def fits(rows: np.ndarray) -> np.ndarray:  # both rows are parent 0's: the first asked fits
        return np.arange(len(rows)) < 1

    kept = index.admit(texts([near, fresh]), ids(1, 2), 1, fits=fits)
    assert kept["review"].to_pylist() == [fresh] and index.stats.near == 1


def test_builds_after_an_index_rebuild_keep_working_and_old_versions_go(tmp_path: Path) -> None:
    """An index rebuild compacts the table and prunes old versions: all of them, which
    lancedb refuses while the last build's version is tagged (a failure restores it), so
    every later build that rebuilt the index failed at its end with a 'Cleanup error'. The
    prune now keeps the last committed build's version and those after it."""
    from conftest import write_config
    from synthaix.build.engine import Build
    from synthaix.build.executor import ThreadExecutor
    from synthaix.config import load_config

    def build(seed: int, rows: int = 2400, mode: str = "overwrite") -> None:
        data = {
            "name": "notes",
            "rows": rows,
            "seed": seed,
            "mode": mode,
            "chunk_size": 800,
            "columns": [{"name": "note", "type": "text.lorem", "max_chars": 100, "pool": 0}],
            "dedupe": {"near": True, "text": ["note"], "index_rows": 1000},
            "output": {"dir": str(tmp_path / "out")},
        }
        config = load_config(write_config(tmp_path / "notes.yaml", data))
        assert Build(config, ThreadExecutor(config)).run().rows.delivered == rows

    build(seed=1)
    first = lancedb.connect(str(tmp_path / "out" / ".dedupe")).open_table("notes").version
    time.sleep(1.5)  # the prune keeps versions made within a second of the tagged one
    build(seed=2)  # rebuilt the index while the first build's version was tagged
    build(seed=2, rows=1000, mode="append")  # over a quarter of 3,400: rebuilds it too
    table = lancedb.connect(str(tmp_path / "out" / ".dedupe")).open_table("notes")
    assert table.count_rows() == 3400 and len(table.tags.list()) == 1
    (tagged,) = [tag["version"] for tag in table.tags.list().values()]
    kept = [v["version"] for v in table.list_versions()]
    assert min(kept) > first and tagged == table.version == max(kept), (kept, first)
