"""The build engine on its own: the same data as the Prefect flow, a preview that is the
build's first rows, and one manifest that reads back (0.1 manifests too)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq
import pytest
from llm_helpers import provider, simulator
from typer.testing import CliRunner

from conftest import NoteListener, make_config, write_config
from synthaix.build.engine import Build
from synthaix.build.executor import Steps, ThreadExecutor
from synthaix.build.manifest import Manifest, read_manifest, summary_markdown
from synthaix.cli import app
from synthaix.config import DatasetConfig, load_config
from synthaix.errors import CapacityError, OutputError
from synthaix.generate import Chunk, ChunkResult
from synthaix.overrides import apply_overrides

COLUMNS = [
    {"name": "id", "type": "sequence"},
    {"name": "name", "type": "person.full_name"},
    {"name": "code", "type": "integer", "min": 1, "max": 3000, "unique": True},
    {"name": "city", "type": "category", "values": ["Oslo", "Lima", "Pune"]},
    {"name": "joined", "type": "date", "start": "2020-01-01", "end": "2020-12-31"},
]


def _rows(path: Path, table: str) -> list[tuple]:
    with duckdb.connect(str(path), read_only=True) as con:
        return con.execute(f"SELECT * FROM {table} ORDER BY id").fetchall()


@pytest.mark.usefixtures("prefect_server")
def test_engine_alone_and_flow_build_the_same_data(tmp_path: Path) -> None:
    from flows.build_dataset import build_dataset

    config = make_config(COLUMNS, rows=2000, chunk_size=300, seed=3)
    engine = config.with_overrides(out=tmp_path / "engine")
    manifest = Build(engine, ThreadExecutor(engine)).run()
    flow = build_dataset(config=config, out=str(tmp_path / "flow"))
    assert manifest.rows == flow.rows and manifest.dropped == flow.dropped
    assert manifest.dropped.unique_value > 0  # fill-up rounds ran in both
    data = _rows(tmp_path / "engine" / "t.duckdb", "t")
    assert len(data) == 2000 and data == _rows(tmp_path / "flow" / "t.duckdb", "t")


def test_a_near_duplicate_builds_batches_hold_the_vectors_it_may_hold(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The near check holds a batch's vectors while it admits it: a batch closes at the rows
    whose vectors fill NEAR_BATCH_BYTES (here 1,000 rows of 256 dims; each batch is one
    Parquet part)."""
    import pyarrow.parquet as pq

    from synthaix import assemble

    monkeypatch.setattr(assemble, "NEAR_BATCH_BYTES", 1000 * 256 * 4)
    columns = [{"name": "review", "type": "text.lorem"}]
    config = make_config(columns, name="reviews", rows=3000, chunk_size=250, dedupe={"near": True})
    config = config.with_overrides(out=tmp_path / "out")
    manifest = Build(config, ThreadExecutor(config)).run()
    parts = [pq.ParquetFile(p).metadata.num_rows for p in (tmp_path / "out" / "data").iterdir()]
    assert manifest.rows.delivered == sum(parts) == 3000
    assert len(parts) >= 3 and max(parts) < 1000 + 250, parts  # a batch ends at its 1,000th


def test_preview_prints_the_builds_first_rows_as_csv(tmp_path: Path) -> None:
    columns = [*COLUMNS[:2], {"name": "code", "type": "integer", "min": 1, "max": 40}, *COLUMNS[3:]]
    columns[2]["unique"] = True  # 30 draws from 40 values repeat some: they must be redrawn
    data = {"name": "t", "rows": 35, "seed": 3, "chunk_size": 10, "columns": columns}
    data["output"] = {"dir": str(tmp_path / "never")}
    config = write_config(tmp_path / "t.yaml", data)
    command = ["preview", str(config), "--rows", "30", "--format", "csv"]
    result = subprocess.run(
        [sys.executable, "-m", "synthaix.cli", *command],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    lines = result.stdout.splitlines()
    assert lines[0] == "id,name,code,city,joined" and len(lines) == 31
    codes = [line.split(",")[2] for line in lines[1:]]
    assert len(set(codes)) == 30  # the unique column holds, as in the build
    assert not (tmp_path / "never").exists()  # a preview writes nothing

    jsonl = CliRunner().invoke(app, ["preview", str(config), "--rows", "3", "--format", "jsonl"])
    assert [json.loads(line)["id"] for line in jsonl.stdout.splitlines()] == [1, 2, 3]
    # Written as an export of the build writes them: the same text (timestamps, numbers).
    from synthaix.config import load_config
    from synthaix.export import export_dataset

    built = load_config(config)
    Build(built, ThreadExecutor(built)).run()
    exported = export_dataset(tmp_path / "never", "csv").read_text().splitlines()
    assert lines == exported[:31]
    shown = export_dataset(tmp_path / "never", "jsonl").read_text().splitlines()[:3]
    assert jsonl.stdout.splitlines() == shown


def test_preview_of_a_build_smaller_than_a_chunk_shows_its_rows(tmp_path: Path) -> None:
    """500 rows at the default chunk_size (10,000) make one chunk of 500: the preview draws
    that chunk, not one of 10,000 (pattern and `by` columns draw per chunk), and takes --set."""
    columns = [
        {"name": "id", "type": "sequence"},
        {"name": "tier", "type": "category", "values": ["gold", "basic"]},
        {"name": "code", "type": "pattern", "pattern": "[A-Z]{3}-\\d{4}"},
        {"name": "spend", "type": "float", "min": 1, "max": 50, "by": "tier"},
    ]
    columns[3]["params"] = {"gold": {"min": 50, "max": 100}}
    data = {"name": "t", "rows": 400, "seed": 4, "columns": columns}
    data["output"] = {"dir": str(tmp_path / "out")}
    config = write_config(tmp_path / "t.yaml", data)
    built = Build(*(c := load_config(config).with_overrides(rows=500), ThreadExecutor(c))).run()
    assert built.rows.delivered == 500
    with duckdb.connect(str(tmp_path / "out" / "t.duckdb"), read_only=True) as con:
        first = con.sql("SELECT * FROM t ORDER BY id LIMIT 20").to_arrow_table()
    command = ["preview", str(config), "--rows", "20", "--format", "jsonl", "--set", "rows=500"]
    result = CliRunner().invoke(app, command)
    assert result.exit_code == 0, result.output
    shown = [json.loads(line) for line in result.stdout.splitlines()]
    assert [row["code"] for row in shown] == first["code"].to_pylist()
    assert [row["spend"] for row in shown] == first["spend"].to_pylist()


def test_manifest_round_trips_and_reads_a_0_1_manifest(tmp_path: Path) -> None:
    config = make_config(COLUMNS, rows=200, chunk_size=100, output={"dir": str(tmp_path / "o")})
    manifest = Build(config, ThreadExecutor(config)).run()
    on_disk = read_manifest(tmp_path / "o")
    assert on_disk == manifest and on_disk.manifest_version == 2
    assert Manifest.model_validate_json(manifest.to_json()) == manifest

    old = json.loads(manifest.to_json())  # as SynthAIx 0.1 wrote it
    del old["manifest_version"]
    old["dedupe"] = {}
    del old["llm"]["rows_filled"]
    upgraded = Manifest.parse(json.dumps(old), "a 0.1 manifest")
    assert upgraded.rows == manifest.rows and upgraded.dedupe is None

    with pytest.raises(OutputError, match="cannot be read") as error:
        Manifest.parse(json.dumps({"dataset": "t", "rows": "many"}), "out/t/manifest.json")
    assert "rebuild with mode: overwrite" in (error.value.hint or "")


def test_report_and_export_load_neither_prefect_nor_lancedb(tmp_path: Path) -> None:
    config = make_config(COLUMNS, rows=100, output={"dir": str(tmp_path / "o")})
    Build(config, ThreadExecutor(config)).run()
    for command in (["report", str(tmp_path / "o")], ["export", str(tmp_path / "o")]):
        subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys\nfrom synthaix.cli import app\ntry:\n"
                f"    app({command!r})\nexcept SystemExit as exc:\n    assert not exc.code\n"
                "bad = [m for m in sys.modules if m.split('.')[0] in ('prefect', 'lancedb')]\n"
                "assert not bad, bad\n",
            ],
            check=True,
            timeout=120,
        )


class Recording(ThreadExecutor):
    """Local threads that note, for each chunk submitted, which chunks' results the build had
    taken by then."""

    def __init__(self, config: DatasetConfig) -> None:
        super().__init__(config)
        self.taken: set[int] = set()
        self.submitted: list[tuple[int, frozenset[int]]] = []
        self._chunks: dict[Future[ChunkResult], int] = {}

    def submit(self, chunk: Chunk) -> Future[ChunkResult]:
        self.submitted.append((chunk.index, frozenset(self.taken)))
        future = super().submit(chunk)
        self._chunks[future] = chunk.index
        return future

    def result(self, handle: Future[ChunkResult]) -> ChunkResult:
        self.taken.add(self._chunks[handle])
        return super().result(handle)


class AtDedupe(Steps):
    """Steps that note `probe()` (what the executor did by then) as each dedupe begins."""

    def __init__(self, probe: Callable[[], int]) -> None:
        self.probe, self.seen = probe, list[int]()

    def run(self, name: str, fn: Callable[..., Any], *args: Any, number: int | None = None) -> Any:
        if name == "dedupe":
            self.seen.append(self.probe())
        return fn(*args)


def _llm_config(columns: list[dict], url: str, tmp_path: Path, **options: Any) -> DatasetConfig:
    """A config of an LLM build on two workers against the simulator at `url`."""
    output = {"dir": str(tmp_path / "out")}
    return make_config(
        columns, runner={"workers": 2}, provider=provider(url), output=output, **options
    )


def test_an_llm_build_plans_its_fill_up_before_the_round_ends(tmp_path: Path) -> None:
    # Many of the first round's rows repeat a unique code: the fill-up round is planned while
    # the round's last chunk still waits for its answers, not after it (an LLM round trip
    # saved at the end of the build), and the build still delivers exactly its rows. Five
    # chunks on two workers: chunk 4 runs alone, and a worker would idle beside it.
    columns = [
        {"name": "code", "type": "integer", "min": 1, "max": 900, "unique": True},
        {"name": "note", "type": "llm", "prompt": "A note on item {{ code }}", "max_length": 60},
    ]
    with simulator(latency=0.3) as sim:
        config = _llm_config(columns, sim.url, tmp_path, rows=500, chunk_size=100)
        executor = Recording(config)
        manifest = Build(config, executor).run()
    assert manifest.rows.delivered == 500 and manifest.dropped.unique_value > 0
    first_round = set(range(5))
    early = [taken for index, taken in executor.submitted if index >= 5 and taken < first_round]
    assert early, executor.submitted  # a fill-up chunk went out before round one was in
    with duckdb.connect(str(tmp_path / "out" / "t.duckdb"), read_only=True) as con:
        assert con.execute("SELECT count(*), count(DISTINCT code) FROM t").fetchone() == (500, 500)


@pytest.mark.parametrize(("lost", "least", "most"), [(0, 2, 6), (3, 8, 18)])
def test_rows_planned_ahead_cover_the_few_the_last_chunks_may_lose(
    lost: int, least: int, most: int
) -> None:
    # 9,000 rows in 10 chunks, 7 of them in. A near duplicate or two is rejected every few
    # thousand rows, more often as the table grows: planning only the mean (0 when nothing
    # was lost yet) left a fill-up round trip after the last chunk in 5 of 6 benchmark builds.
    # A few spare rows are planned alongside the last chunks instead, and only a few.
    from types import SimpleNamespace

    from synthaix.assemble import RoundPlanner

    columns = [{"name": "n", "type": "integer", "min": 1, "max": 9}]
    config = make_config(columns, rows=9000, chunk_size=900, dedupe={"exact": False})
    planner = RoundPlanner(config, first_row=0)
    state = SimpleNamespace(target=9000, delivered=0, pending_rows=0, next_index=0)
    state.missing = 9000
    assert len(planner.next_round(state, "")) == 10  # type: ignore[arg-type]
    state.next_index, state.delivered, state.pending_rows = 7, 5400 - lost, 900
    state.missing = 9000 - state.delivered
    chunks = planner.ahead(state)  # type: ignore[arg-type]
    assert len(chunks) == 1 and chunks[0].index == 10
    assert least <= chunks[0].rows <= most
    assert planner.ahead(state) == []  # type: ignore[arg-type]  # once per round
    # The spare is at most 0.1 % of a build: a small build that lost nothing plans none.
    small = RoundPlanner(
        make_config(columns, rows=20, chunk_size=5, dedupe={"exact": False}), first_row=0
    )
    state = SimpleNamespace(target=20, delivered=0, pending_rows=0, next_index=0, missing=20)
    small.next_round(state, "")  # type: ignore[arg-type]
    state.next_index, state.delivered, state.missing = 1, 5, 15
    assert small.ahead(state) == []  # type: ignore[arg-type]


def _one_worker(tmp_path: Path, rows: int) -> DatasetConfig:
    """Distinct sampler rows in chunks of 200 on one worker."""
    columns = [
        {"name": "id", "type": "sequence"},
        {"name": "n", "type": "integer", "min": 0, "max": 10**9},
    ]
    output, workers = {"dir": str(tmp_path)}, {"workers": 1}
    dedupe = {"exact": True}  # a dedupe step per batch, as builds have
    return make_config(
        columns, rows=rows, chunk_size=200, runner=workers, output=output, dedupe=dedupe
    )


def test_the_next_chunk_starts_before_the_rows_before_it_are_admitted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The dedupe runs on the build's thread (0.1-0.3 s a batch in a flow, with its task run).
    # A worker freed by a chunk gets the next one first: waiting for that chunk's dedupe
    # left half of an LLM build's requests idle meanwhile. One worker, a batch per chunk.
    monkeypatch.setattr("synthaix.assemble.BATCH_CHUNKS", 1)
    config = _one_worker(tmp_path, rows=1200)
    executor = Recording(config)
    steps = AtDedupe(lambda: len(executor.submitted))
    manifest = Build(config, executor, steps=steps).run()
    assert manifest.rows.delivered == 1200
    assert steps.seen == [2, 3, 4, 5, 6, 6]  # chunk k+1 was running while k was admitted


def test_no_chunk_starts_early_that_the_rows_released_make_unneeded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A round planned beyond the rows (here a first round of 1,200 rows for 1,000): once the
    # rows released cover what is missing, the next chunk waits for them to be admitted,
    # and is not started at all when they are all kept.
    monkeypatch.setattr("synthaix.assemble.BATCH_CHUNKS", 1)
    config = _one_worker(tmp_path, rows=1000)
    executor = Recording(config)
    from synthaix.assemble import RoundPlanner

    def planner(first_row: int) -> RoundPlanner:
        return RoundPlanner(config, first_row, first_round=1200)

    manifest = Build(config, executor, planner=planner).run()
    assert manifest.rows.delivered == 1000
    assert [index for index, _ in executor.submitted] == [0, 1, 2, 3, 4]


def test_spare_rows_planned_early_leave_a_later_shortfall_to_be_planned() -> None:
    # Spare rows planned when little is known must not use up the round's one plan for a
    # shortfall: 40 rows lost later in the round are still planned before the round ends.
    from types import SimpleNamespace

    from synthaix.assemble import RoundPlanner

    columns = [{"name": "n", "type": "integer", "min": 1, "max": 9}]
    config = make_config(columns, rows=9000, chunk_size=900, dedupe={"exact": False})
    planner = RoundPlanner(config, first_row=0)
    state = SimpleNamespace(target=9000, delivered=0, pending_rows=0, next_index=0, missing=9000)
    planner.next_round(state, "")  # type: ignore[arg-type]
    state.next_index, state.delivered, state.missing = 1, 900, 8100
    spare = planner.ahead(state)  # type: ignore[arg-type]
    assert sum(c.rows for c in spare) <= 9 * 1.2 + 1  # spare only: at most 0.1 % + margin
    state.next_index, state.delivered = 7, 6300 - 40
    state.missing = 9000 - state.delivered
    later = planner.ahead(state)  # type: ignore[arg-type]
    assert sum(c.rows for c in later) >= 40, later
    assert planner.ahead(state) == []  # type: ignore[arg-type]


def test_an_llm_rounds_last_chunks_are_admitted_as_they_come(tmp_path: Path) -> None:
    # Once a round's chunks are all started, what is released is admitted at once, while the
    # others still wait for answers, instead of in one batch after the last (the dedupe of 4
    # chunks then followed a build's last answer). 4 chunks on 2 workers: 2 and 3 run last.
    columns = [{"name": "note", "type": "llm", "prompt": "A short note", "max_length": 60}]
    with simulator(latency=0.3) as sim:
        config = _llm_config(columns, sim.url, tmp_path, rows=40, chunk_size=10)
        executor = Recording(config)
        steps = AtDedupe(lambda: len(executor.taken))
        manifest = Build(config, executor, steps=steps).run()
    assert manifest.rows.delivered == 40
    assert steps.seen[0] < 4, steps.seen  # chunk 0's rows went in before the last answer


def test_an_llm_build_that_cannot_fill_its_rows_still_stops(tmp_path: Path) -> None:
    # Rows are distinct over (size) alone, which the model fills with one of 3 values (not
    # known before generating): planning fill-up rounds ahead must not keep a build asking
    # forever; it stops after the rounds that brought nothing, as a sampler build does.
    from synthaix.errors import CapacityError

    columns = [
        {"name": "size", "type": "llm", "prompt": "A clothing size", "enum": ["S", "M", "L"]},
        {"name": "note", "type": "llm", "prompt": "A short note", "max_length": 60},
    ]
    with simulator(latency=0.01) as sim:
        dedupe = {"key": ["size"], "near": False}
        config = _llm_config(columns, sim.url, tmp_path, rows=40, chunk_size=10, dedupe=dedupe)
        with pytest.raises(CapacityError, match="could only produce 3 of 40 rows"):
            Build(config, ThreadExecutor(config)).run()
    assert not (tmp_path / "out" / "t.duckdb").exists()


def test_a_dedupe_table_that_cannot_open_stops_the_build_before_more_chunks(
    tmp_path: Path,
) -> None:
    # The table opens while the first chunks generate; when it cannot, the build stops with
    # the first chunks (not after paying for all of them), writes nothing, leaves the file in
    # the way as it was, and says where and how to fix it.
    not_a_directory = tmp_path / "dedupe-file"
    not_a_directory.write_text("mine")
    columns = [{"name": "note", "type": "llm", "prompt": "A short note", "max_length": 60}]
    with simulator(latency=0.3) as sim:
        dedupe = {"uri": str(not_a_directory)}
        config = _llm_config(columns, sim.url, tmp_path, rows=200, chunk_size=10, dedupe=dedupe)
        executor = Recording(config)
        with pytest.raises(OutputError, match="cannot open the dedupe database"):
            Build(config, executor).run()
    assert len(executor.submitted) < 20  # of 20 chunks, only those started before it failed
    assert not_a_directory.read_text() == "mine"
    assert not (tmp_path / "out" / "t.duckdb").exists()


def test_an_append_slot_built_already_appends_nothing_again(tmp_path: Path) -> None:
    """A retry or rerun of a deployment's append slot (same config, same as_of) after it
    published appended its rows a second time; it now leaves the data as it is, and says so.
    Another slot appends; an overwrite forgets the slots; a CLI build appends as asked."""
    import datetime as dt

    from synthaix import progress

    columns = [
        {"name": "id", "type": "sequence"},
        {"name": "at", "type": "datetime", "start": "-1h", "end": "now"},
    ]

    def build(hour: int, mode: str = "append", slot: bool = True) -> Manifest:
        at = dt.datetime(2026, 11, 27, hour)
        config = make_config(
            columns, rows=50, mode=mode, as_of=at, output={"dir": str(tmp_path / "out")}
        )
        config._slot = at if slot else None  # a deployment run's (tasks.plan.plan_build)
        return Build(config, ThreadExecutor(config)).run()

    first = build(10)
    listener = NoteListener()
    with progress.listening(listener):
        again = build(10)
    assert again.build_id == first.build_id and again.rows.total == 50
    assert first._unchanged is None and again._unchanged == listener.notes[0]
    assert listener.notes == [
        f"t holds the rows of this config at as_of 2026-11-27T10:00:00 already (appended by "
        f"build {first.build_id}): nothing is appended again"
    ]
    later = build(11)
    assert later.rows.total == 100 and set(later.slots.values()) == {first.build_id, later.build_id}
    assert build(10, "overwrite").slots == {}
    assert build(10).rows.total == 100  # after an overwrite, the slot is new again
    # Not a deployment run (`synthaix build --as-of`): it appends what it is asked to.
    assert build(10, slot=False).rows.total == 150
    # The run's summary says it built nothing.
    from types import SimpleNamespace

    from tasks.progress import summary_text

    summary = summary_text(SimpleNamespace(name="t"), again)  # type: ignore[arg-type]
    assert summary.startswith(f"# t: nothing built\n\n{again._unchanged}. The output is as")
    assert "\n## t: 50 rows" in summary  # the last build's, below


def test_an_llm_build_plans_a_smaller_margin_of_rows_it_would_pay_for_unused() -> None:
    """A shortfall of 100 rows at 50 % acceptance: 240 rows for a sampler build (a margin, so
    a few rounds converge), 210 for an LLM build, whose rows beyond the need are paid for."""
    from synthaix.assemble import RoundPlanner

    sampler = [{"name": "n", "type": "integer", "min": 0, "max": 10**6}]
    llm = [*sampler, {"name": "note", "type": "llm", "prompt": "A note"}]
    assert RoundPlanner(make_config(sampler), first_row=0)._rows_for(100, 0.5, 10_000) == 240
    assert RoundPlanner(make_config(llm), first_row=0)._rows_for(100, 0.5, 10_000) == 210


def test_a_row_breaking_two_constraints_is_one_row_in_the_counts(tmp_path: Path) -> None:
    """Per constraint, a row breaking both is counted by each; the rows generated and
    dropped count it once (it was added twice, so 'generated' overcounted)."""
    columns = [
        {"name": "a", "type": "integer", "min": 0, "max": 9},
        {"name": "b", "type": "integer", "min": 0, "max": 9},
        {"name": "n", "type": "integer", "min": 0, "max": 10**9},
    ]
    config = make_config(
        columns,
        rows=500,
        chunk_size=100,
        constraints=["a < 5", "b < 5"],
        output={"dir": str(tmp_path)},
    )
    manifest = Build(config, ThreadExecutor(config)).run()
    rows, dropped = manifest.rows, manifest.dropped
    per_constraint = sum(dropped.constraint.values())
    assert 0 < dropped.in_chunks < per_constraint  # about 3/4 of the rows, not 4/4
    assert rows.generated == rows.delivered + dropped.total + rows.unused
    assert 0 <= rows.unused < config.chunk_size
    assert abs(dropped.in_chunks / rows.generated - 0.75) < 0.06
    # What the summaries say: each row under one cause, adding up to the total (the report's
    # headline added the constraints' counts to the rows they are part of).
    assert dropped.causes() == f"{dropped.total:,}: broke a constraint {dropped.in_chunks:,}"
    assert f"| dropped | {dropped.causes()} |" in summary_markdown(manifest)


def test_a_preview_past_its_builds_first_round_fills_up_as_the_build_would() -> None:
    """The rounds that follow the build's first-round chunks (30 of 100 rows here) counted as
    fill-up rounds, and fill-up rounds were sized for the preview's rows, not the build's:
    a preview of a constraint that 2 % of rows pass failed where the build goes on."""
    from synthaix.build.preview import preview_rows

    columns = [{"name": "x", "type": "integer", "min": 1, "max": 100}]
    config = make_config(columns, rows=3000, chunk_size=100, constraints=["x <= 2"])
    shown = preview_rows(config, 99)
    assert shown.num_rows == 99 and max(shown["x"].to_pylist()) <= 2


def test_an_llm_preview_shows_the_builds_first_rows_and_pays_for_those_only(
    tmp_path: Path,
) -> None:
    """A preview with llm columns made a chunk of the rows shown, so per-chunk draws (a
    name's parts) differed from the build's: 'Kelly Stewart' where the build has 'Kelly
    Gibson'. It makes the build's chunk now, and fills the llm columns of the rows shown."""
    from synthaix.build.preview import preview_rows

    columns = [
        {"name": "customer", "type": "person.full_name"},
        {"name": "note", "type": "llm", "prompt": "A note on {{ customer }}", "max_length": 60},
    ]
    with simulator(seed=1, record=True) as sim:
        config = make_config(
            columns,
            rows=600,
            chunk_size=200,
            provider=provider(sim.url, rows_per_request=5),
            output={"dir": str(tmp_path / "out")},
        )
        shown = preview_rows(config, 5)
        asked = sum(len(r["request"]["messages"]) > 0 for r in sim.state.requests())
        Build(config, ThreadExecutor(config)).run()
    parts = sorted((tmp_path / "out" / "data").glob("part-*.parquet"))
    built = pq.read_table(parts[0], columns=["customer"])["customer"].to_pylist()[:5]
    assert shown["customer"].to_pylist() == built
    assert shown.num_rows == 5 and all(shown["note"].to_pylist())
    assert asked == 1  # 5 rows a request: the 195 other rows of the chunk cost nothing


def test_an_llm_preview_with_constraints_is_not_stopped_by_the_rows_it_leaves_out() -> None:
    """Its chunk's rows past those shown are dropped unasked: counted as breaking the
    constraints, they stopped the preview after its first round (review)."""
    from synthaix.build.preview import preview_rows

    columns = [
        {"name": "a", "type": "integer", "min": 0, "max": 9},
        {"name": "b", "type": "integer", "min": 0, "max": 9},
        {"name": "note", "type": "llm", "prompt": "A note on {{ a }}", "max_length": 60},
    ]
    with simulator(seed=1) as sim:
        config = make_config(
            columns,
            rows=5000,
            chunk_size=4000,
            provider=provider(sim.url, rows_per_request=5),
            constraints=["a > 2", "b > 2"],
        )
        shown = preview_rows(config, 20)
    assert shown.num_rows == 20 and min(shown["a"].to_pylist()) > 2


def test_a_constraint_on_an_llm_column_that_never_holds_stops_after_the_first_round() -> None:
    """validate cannot try it (the column is null before the build): its fill-up rounds, each
    of a whole build's rows, paid for requests that could not make the rows (review)."""
    columns = [{"name": "note", "type": "llm", "prompt": "A note", "max_length": 60}]
    with simulator(seed=1, record=True) as sim:
        config = make_config(
            columns,
            rows=2000,
            chunk_size=1000,
            provider=provider(sim.url, rows_per_request=50),
            constraints=["length(note) < 2"],
            dedupe={"exact": False},
        )
        with pytest.raises(CapacityError) as caught:
            Build(config, ThreadExecutor(config), persistent=False).run()
        sent = len(sim.state.requests())
    assert "'length(note) < 2' (0.0%) held for under 1% of the 2,000 rows of the first round" in (
        str(caught.value)
    )
    assert sent <= 45  # the first round's 40 requests (and a few in flight), no fill-up round


def test_an_append_that_cannot_fit_its_unique_values_is_refused_before_generating(
    tmp_path: Path,
) -> None:
    """600 of a pattern's 1,000 values are taken: 600 more failed after 7 rounds, where the
    numbers alone tell."""
    columns = [{"name": "t", "type": "pattern", "pattern": "T[0-9]{3}", "unique": True}]
    config = make_config(columns, rows=600, output={"dir": str(tmp_path)})
    Build(config, ThreadExecutor(config)).run()
    parts = sorted((tmp_path / "data").glob("*.parquet"))
    append = config.with_overrides(mode="append")
    generated: list[int] = []
    with pytest.raises(CapacityError) as refused:
        Build(append, ThreadExecutor(append), on_rows=lambda t: generated.append(t.num_rows)).run()
    assert "column t is unique and can take only 1,000 distinct values: the 600 rows there" in str(
        refused.value
    )
    assert not generated and sorted((tmp_path / "data").glob("*.parquet")) == parts
    assert read_manifest(tmp_path).rows.total == 600
    # A key of two columns (exact dedupe): the stored rows' keys count too.
    keyed = [
        {"name": "c", "type": "category", "values": ["a", "b"]},
        {"name": "n", "type": "integer", "min": 1, "max": 100},
    ]
    config = make_config(
        keyed, rows=150, dedupe={"exact": True}, output={"dir": str(tmp_path / "k")}
    )
    Build(config, ThreadExecutor(config)).run()
    with pytest.raises(
        CapacityError,
        match="only 200 distinct rows: the 150 rows there hold 150 of them, and 150 more are",
    ):
        append = config.with_overrides(mode="append")
        Build(append, ThreadExecutor(append)).run()
    fits = config.with_overrides(mode="append", rows=40)
    assert Build(fits, ThreadExecutor(fits)).run().rows.total == 190
    # Rows of earlier builds, made by a wider column, take none of a narrower one's values:
    # not counted (not refused: 900 ids of 1..100,000 leave 1..1,000 mostly free).
    wide = [{"name": "id", "type": "integer", "min": 1, "max": 100_000, "unique": True}]
    config = make_config(wide, rows=900, output={"dir": str(tmp_path / "w")})
    Build(config, ThreadExecutor(config)).run()
    narrow = apply_overrides(config, {"mode": "append", "rows": 50, "columns.id.max": 1000})
    Build(narrow, ThreadExecutor(narrow)).run()
    again = narrow.with_overrides(rows=100)
    assert Build(again, ThreadExecutor(again)).run().rows.total == 1050


def test_rows_beyond_the_machines_memory_are_said_before_building() -> None:
    """A `rows` with a zero too many ran for hours before the worker ran out of memory."""
    from synthaix import progress
    from synthaix.build.engine import _say_memory

    said: list[str] = []

    class Listener:
        def note(self, text: str) -> None:
            said.append(text)

    columns = [{"name": "n", "type": "integer", "min": 0, "max": 10**9}]
    config = make_config(columns, dedupe={"exact": True})
    parquet_only = make_config(columns, output={"formats": ["parquet"]})  # no exact dedupe
    with progress.listening(Listener()):  # type: ignore[arg-type]
        _say_memory(config, 1000)
        _say_memory(parquet_only, 10**12)  # nothing grows with the rows
        assert not said
        _say_memory(config, 10**12)
    assert len(said) == 1 and "t: 1,000,000,000,000 rows may need ~107,102 GiB" in said[0]
    # A unique column's values are held too (0.43 GB for 5M short texts, measured)
    unique = [{**columns[0], "unique": True}]
    held = make_config(unique, rows=10, output={"formats": ["parquet"]})
    with progress.listening(Listener()):  # type: ignore[arg-type]
        _say_memory(held, 10**12)
    assert "~79,162 GiB" in said[-1] and "each unique column's values ~85" in said[-1]
