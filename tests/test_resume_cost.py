"""A resumed build says what it reused and what the interrupted attempts cost: LLM builds
against the simulator stopped part-way (kill -9 of a subprocess build, or an error injected
through the simulator), then built again. The spend of every chunk that came back is saved in
the ledger as it arrives, so the resumed manifest's total is:

- after an error (the build stops, the chunks still running finish): exactly what the simulator
  answered to both attempts, requests, tokens and cost;
- after kill -9: what the simulator answered, less the answers the client had not read yet at
  the kill (at most one per request in flight).
"""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from llm_helpers import provider, refuse_after, simulator

from conftest import NoteListener
from synthaix.build.engine import Build
from synthaix.build.executor import ThreadExecutor
from synthaix.build.manifest import Manifest, summary_markdown
from synthaix.config import load_config
from synthaix.errors import SynthaixError
from synthaix.llm.stats import spent_before
from synthaix.relational.build import DatasetBuild
from synthaix.relational.manifest import DatasetManifest
from synthaix.relational.manifest import summary_markdown as tables_markdown
from synthaix.report.html import write_report
from synthaix.sim.server import CHARS_PER_TOKEN, SimServer

ROOT = Path(__file__).resolve().parents[1]
WORKERS = 2
PRICES = {"price_input_per_million": 1000.0, "price_output_per_million": 2000.0}
SCRIPT = (
    "import sys; from synthaix.config import load_config; "
    "from synthaix.build.engine import Build; "
    "from synthaix.build.executor import ThreadExecutor; "
    "c = load_config(sys.argv[1]); Build(c, ThreadExecutor(c)).run()"
)


def _llm(url: str) -> dict[str, Any]:
    # One request per chunk (rows_per_request >= the rows of any chunk, a child table's chunk of
    # whole parents included): a chunk either got its answer or made no request that was
    # answered, so what an error leaves is exact.
    return provider(url, rows_per_request=20, max_concurrency=WORKERS, **PRICES)


def _notes(tmp_path: Path, url: str, rows: int = 60) -> Path:
    data = {
        "name": "notes",
        "seed": 7,
        "rows": rows,
        "chunk_size": 5,
        "runner": {"workers": WORKERS},
        "provider": _llm(url),
        "output": {"dir": str(tmp_path / "out")},
        "dedupe": {"near": False},  # exact keys only: no LanceDB to load (seconds per process)
        "columns": [
            {"name": "id", "type": "sequence"},
            {"name": "topic", "type": "category", "values": ["work", "home", "travel"]},
            {"name": "note", "type": "llm", "prompt": "A short note about {{ topic }}"},
        ],
    }
    path = tmp_path / "notes.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _answered(sim: SimServer) -> dict[str, float]:
    """Requests, tokens and cost of the chat requests the simulator answered (its log), with
    the simulator's token counts and the config's prices."""
    requests = sim.state.requests()
    prompt = completion = 0
    for entry in requests:
        messages = entry["request"].get("messages", [])
        text = "".join(str(m.get("content") or "") for m in messages)
        prompt += math.ceil(len(text) / CHARS_PER_TOKEN)
        completion += math.ceil(len(entry["answer"]) / CHARS_PER_TOKEN)
    cost = (prompt * PRICES["price_input_per_million"]) / 1e6
    cost += (completion * PRICES["price_output_per_million"]) / 1e6
    return {"requests": len(requests), "tokens": prompt + completion, "cost": cost}


def _chunks(ledger: Path) -> list[Path]:
    return list(ledger.rglob("chunk-*.parquet"))


def _fail_after(sim: SimServer, ledger: Path, chunks: int) -> threading.Thread:
    """From the moment `chunks` chunks are in the ledger, the simulator refuses every request
    (401: a non-transient error, the build stops)."""

    def watch() -> None:
        deadline = time.monotonic() + 60
        while len(_chunks(ledger)) < chunks and time.monotonic() < deadline:
            time.sleep(0.005)
        sim.state.config.api_key = "someone-else"

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    return watcher


def _stopped_by_an_error(tmp_path: Path, sim: SimServer, ledger: Path) -> Any:
    """The notes config, built until the error `_fail_after` brings after 4 chunks."""
    config = load_config(_notes(tmp_path, sim.url))
    watcher = _fail_after(sim, ledger, chunks=4)
    with pytest.raises(SynthaixError):
        Build(config, ThreadExecutor(config)).run()
    watcher.join()
    return config


def _resumed_line(caplog: pytest.LogCaptureFixture) -> str:
    lines = [
        r.getMessage()
        for r in caplog.records
        if r.name == "synthaix" and r.levelno == logging.INFO and "resumed" in r.getMessage()
    ]
    assert len(lines) >= 1, [r.getMessage() for r in caplog.records]
    return lines[-1]


def _check_resumed(manifest: Manifest | DatasetManifest, first: dict, second: dict) -> None:
    """This attempt's figures are what the simulator answered it, exactly (nothing was
    interrupted); the earlier attempt's are checked by the caller."""
    assert manifest.resumed_chunks > 0 and manifest.resumed_rows > 0
    assert manifest.llm.requests == second["requests"]
    assert manifest.llm.tokens == second["tokens"]
    assert manifest.llm.cost_usd == pytest.approx(second["cost"])
    assert 0 < manifest.llm.requests < manifest.llm_total.requests
    assert len(manifest.earlier_attempts) == 1


def test_a_ledger_of_another_config_is_said_and_kept_and_a_new_price_still_resumes(
    tmp_path: Path,
) -> None:
    """An edited config does not reuse an interrupted build's chunks, says so and leaves them
    (they were deleted without a word); a corrected price resumes them all (it did not)."""
    from synthaix import progress
    from synthaix.overrides import apply_overrides

    ledger = tmp_path / "out" / ".ledger"
    with simulator(latency=0.05, record=True) as sim:
        config = _stopped_by_an_error(tmp_path, sim, ledger)
        left = len(_chunks(ledger))

        edited = apply_overrides(config, {"columns.topic.values": ["work", "home"]})
        listener = NoteListener()
        with progress.listening(listener), pytest.raises(SynthaixError):  # still refused
            Build(edited, ThreadExecutor(edited)).run()
        assert len(_chunks(ledger)) == left
        [note] = listener.notes
        assert f"left {left:,} chunks in its ledger; they are not reused" in note

        sim.state.config.api_key = None
        priced = apply_overrides(config, {"provider.price_input_per_million": 1.0})
        manifest = Build(priced, ThreadExecutor(priced)).run()
    assert manifest.resumed_chunks == left and manifest.rows.delivered == 60
    assert not _chunks(ledger)  # published: every ledger of the output is gone
    total = manifest.llm_total  # the earlier attempt priced at today's price too
    assert total.cost_usd == pytest.approx(
        priced.provider.cost(total.prompt_tokens, total.completion_tokens)
    )


def test_build_stopped_by_an_error_resumes_with_exact_costs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="synthaix")
    ledger = tmp_path / "out" / ".ledger"
    with simulator(latency=0.05, record=True) as sim:
        config = _stopped_by_an_error(tmp_path, sim, ledger)
        first = _answered(sim)
        left = len(_chunks(ledger))
        assert 4 <= left < 12 and not (tmp_path / "out" / "data").exists()
        [log] = ledger.rglob("spend-*.jsonl")  # the failed attempt's spend, chunk by chunk
        assert len(log.read_text().splitlines()) >= left

        sim.state.config.api_key = None
        sim.state.reset()
        manifest = Build(config, ThreadExecutor(config)).run()
        second = _answered(sim)

    _check_resumed(manifest, first, second)
    assert manifest.resumed_chunks == left  # every chunk that came back, the drained ones too
    assert manifest.earlier_attempts == [log.stem.removeprefix("spend-")]
    # Exact: the chunks still running when the error stopped the build were kept.
    assert manifest.llm_total.requests == first["requests"] + second["requests"]
    assert manifest.llm_total.tokens == first["tokens"] + second["tokens"]
    assert manifest.llm_total.cost_usd == pytest.approx(first["cost"] + second["cost"])
    assert manifest.rows.delivered == 60
    assert not ledger.exists()  # published: the ledger, spend logs included, is gone

    line = _resumed_line(caplog)
    said = [r.getMessage() for r in caplog.records]
    early = f"resuming an interrupted build: its ledger holds {manifest.resumed_chunks} chunks"
    assert said.index(f"{early}, not asked for again") < said.index(line)  # before it generates
    earlier = manifest.llm_total.requests - manifest.llm.requests
    assert line == (
        f"resumed {manifest.resumed_chunks} chunks ({manifest.resumed_rows} rows) from the "
        f"ledger of an interrupted build; earlier attempts spent {earlier} requests, "
        f"${manifest.llm_total.cost_usd - manifest.llm.cost_usd:.4f}"
    )

    markdown = summary_markdown(manifest)
    assert (
        f"| resumed | {manifest.resumed_chunks} chunks ({manifest.resumed_rows} rows) from the "
        "ledger of an interrupted build |" in markdown
    )
    llm, total = manifest.llm, manifest.llm_total
    assert f"| LLM, this attempt | {llm.requests} requests, {llm.tokens:,} tokens" in markdown
    assert f"${llm.cost_usd:.4f} |" in markdown
    assert f"| LLM, all attempts | {total.requests} requests, {total.tokens:,} tokens" in markdown
    assert "(this one and 1 interrupted attempt before it) |" in markdown

    report = write_report(tmp_path / "out").read_text()
    assert "LLM, all attempts" in report and f"${total.cost_usd:.4f}" in report
    assert "LLM cost, this attempt" in report and "LLM cost, all attempts" in report
    assert "from the ledger of an interrupted build" in report

    # What the file says is what was returned; a manifest written before these fields reads
    # with no resumed rows and a total equal to its own cost.
    on_disk = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert Manifest.model_validate(on_disk) == manifest
    for field in ("resumed_rows", "llm_total", "earlier_attempts"):
        del on_disk[field]
    old = Manifest.parse(json.dumps(on_disk), "an older manifest")
    assert old.llm_total == old.llm == manifest.llm and old.resumed_rows == 0
    assert "LLM, all attempts" not in summary_markdown(old)


def test_killed_build_resumes_with_the_spend_of_every_finished_chunk(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="synthaix")
    ledger = tmp_path / "out" / ".ledger"
    with simulator(latency=0.1, record=True) as sim:
        path = _notes(tmp_path, sim.url, rows=100)  # 20 chunks: time to kill it part-way
        process = subprocess.Popen(
            [sys.executable, "-c", SCRIPT, str(path)], cwd=ROOT, start_new_session=True
        )
        deadline = time.monotonic() + 120
        while len(_chunks(ledger)) < 5 and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert process.poll() is None, "the build ended before it could be killed"
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        first = _answered(sim)
        left = len(_chunks(ledger))

        sim.state.reset()
        config = load_config(path)
        manifest = Build(config, ThreadExecutor(config)).run()
        second = _answered(sim)

    _check_resumed(manifest, first, second)
    assert manifest.resumed_chunks >= left
    earlier = manifest.llm_total.requests - manifest.llm.requests
    # Every chunk whose rows were saved had its spend saved first, and every request of the
    # chunks still running was logged as it was read: only answers the client had not read
    # yet at the kill (at most one per worker) are missing.
    assert left <= earlier <= first["requests"] <= earlier + WORKERS
    assert manifest.llm_total.requests <= first["requests"] + second["requests"]
    assert manifest.llm_total.requests >= first["requests"] + second["requests"] - WORKERS
    assert manifest.rows.delivered == 100
    assert f"earlier attempts spent {earlier} requests" in _resumed_line(caplog)
    markdown = summary_markdown(manifest)
    assert f"| resumed | {manifest.resumed_chunks} chunks" in markdown
    assert "| LLM, this attempt |" in markdown and "| LLM, all attempts |" in markdown


def _catalogue(tmp_path: Path, url: str) -> Path:
    data = {
        "name": "catalogue",
        "seed": 4,
        "provider": _llm(url),
        "runner": {"workers": WORKERS},
        "output": {"dir": str(tmp_path / "out")},
        "tables": [
            {
                "name": "products",
                "rows": 20,
                "chunk_size": 5,
                "dedupe": {"near": False},
                "columns": [
                    {"name": "product_id", "type": "sequence", "primary_key": True},
                    {"name": "category", "type": "category", "values": ["books", "games"]},
                    {"name": "title", "type": "llm", "prompt": "A {{ category }} product name"},
                ],
            },
            {
                "name": "reviews",
                "parent": "products",
                "count": 3,
                "chunk_size": 5,
                "dedupe": {"near": False},
                "columns": [
                    {"name": "review_id", "type": "sequence", "primary_key": True},
                    {"name": "product_id", "type": "reference", "to": "products.product_id"},
                    {"name": "text", "type": "llm", "prompt": "A review of {{ products.title }}"},
                ],
            },
        ],
    }
    path = tmp_path / "catalogue.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_multi_table_build_reports_resume_and_costs_per_table_and_in_all(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="synthaix")
    ledger = tmp_path / "out" / ".ledger"
    with simulator(latency=0.05, record=True) as sim:
        path = _catalogue(tmp_path, sim.url)
        watcher = _fail_after(sim, ledger, chunks=4 + 3)  # products (4 chunks), then reviews
        with pytest.raises(SynthaixError):
            DatasetBuild(load_config(path), lambda t: ThreadExecutor(t)).run()
        watcher.join()
        first = _answered(sim)
        sim.state.config.api_key = None
        sim.state.reset()
        manifest = DatasetBuild(load_config(path), lambda t: ThreadExecutor(t)).run()
        second = _answered(sim)

    products, reviews = manifest.tables["products"], manifest.tables["reviews"]
    assert products.resumed_chunks == 4 and products.llm.requests == 0  # nothing asked again
    assert products.llm_total.requests == 4
    assert reviews.resumed_chunks >= 3
    _check_resumed(manifest, first, second)  # the dataset's totals
    assert manifest.resumed_chunks == products.resumed_chunks + reviews.resumed_chunks
    assert manifest.llm_total.requests == first["requests"] + second["requests"]
    assert manifest.llm_total.cost_usd == pytest.approx(first["cost"] + second["cost"])
    assert manifest.rows == {"products": 20, "reviews": 60}

    lines = [r.getMessage() for r in caplog.records if "from the ledger" in r.getMessage()]
    assert any(line.startswith("table products: resumed 4 chunks (20 rows)") for line in lines)
    assert any(line.startswith("table reviews: resumed ") for line in lines)

    markdown = tables_markdown(manifest)
    assert "| resumed chunks (rows) | llm requests (this attempt / all) |" in markdown
    cost = f"$0.0000 / ${products.llm_total.cost_usd:,.4f}"
    assert f"| products | 20 | 20 | 0 | 4 (20) | 0 / 4 | {cost} |" in markdown
    total = manifest.llm_total
    assert f"- LLM, all attempts: {total.requests} requests, {total.tokens:,} tokens" in markdown
    assert f"- resumed: {manifest.resumed_chunks} chunks" in markdown

    report = write_report(tmp_path / "out").read_text()
    assert "; resumed 4 chunks (20 rows)" in report and "LLM cost, all attempts" in report

    on_disk = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert on_disk["llm_total"]["requests"] == total.requests  # the totals are in the file
    assert DatasetManifest.parse(json.dumps(on_disk), "manifest.json") == manifest


def test_spend_log_sums_attempts_skipping_a_torn_line(tmp_path: Path) -> None:
    """(A ledger whose build published: test_the_published_builds_own_ledger_is_not_resumed.)"""
    from synthaix.generate import Chunk
    from synthaix.ledger import ChunkLedger, clear_ledgers
    from synthaix.llm.stats import LlmStats

    one = LlmStats(requests=3, prompt_tokens=10, completion_tokens=5, cost_usd=0.25)
    one.retries["rate_limit"] = 2
    attempts = ["20260101T000000-aaaaaa", "20260101T000100-bbbbbb", "20260101T000200-cccccc"]
    for attempt in attempts:
        ledger = ChunkLedger(tmp_path, "k", 0)
        ledger.open(attempt)
        ledger.spent(Chunk(0, 0, 5), one)
        ledger.spent(Chunk(1, 5, 5), LlmStats())  # nothing spent: no record
        ledger.spent(Chunk(2, 10, 5), one)
    with open(ledger.dir / f"spend-{attempts[1]}.jsonl", "ab") as log:
        log.write(b'{"chunk":3,"llm":{"requests":99')  # cut short by a kill
    # The output holds a build of another config, published before these attempts.
    ledger = ChunkLedger(tmp_path, "k", 0)
    ledger.open("20260101T000300-dddddd", published="20251231T000000-zzzzzz")
    assert ledger.earlier_attempts == attempts
    assert ledger.earlier.requests == 18 and ledger.earlier.tokens == 90
    assert ledger.earlier.retries == {"rate_limit": 12}
    assert ledger.earlier.cost_usd == pytest.approx(1.5)
    clear_ledgers(tmp_path)
    assert not (tmp_path / ".ledger").exists()  # the spend logs go with the chunks


def test_other_ledgers_newest_kept_and_the_published_builds_removed(tmp_path: Path) -> None:
    """Ledgers of other configs are kept for a resume, the newest two only (a schedule whose
    runs keep dying must not fill the disk); one of the build the output holds (published,
    killed before clearing it) is removed, not offered as an interrupted build."""
    from synthaix.ledger import KEEP_OTHERS, ChunkLedger

    def interrupted(key: str, attempt: str, as_of: str | None = None) -> Path:
        ledger = ChunkLedger(tmp_path, key, 0)
        ledger.open(attempt, as_of=as_of)
        (ledger.dir / "chunk-000000-0-5.parquet").write_bytes(b"paid for")
        os.utime(ledger.dir / "ledger.json", (time.time() + len(key), time.time() + len(key)))
        return ledger.dir

    oldest = interrupted("a", "20260101T000000-aaaaaa")
    kept = [
        interrupted("bb", "20260101T000100-bbbbbb", "2026-01-01T00:00:00"),
        interrupted("ccc", "20260101T000200-cccccc"),
    ]
    published = interrupted("dddd", "20260101T000300-dddddd")
    ledger = ChunkLedger(tmp_path, "e", 0)
    ledger.open("20260101T000400-eeeeee", published="20260101T000300-dddddd")
    others = sorted(((chunks, as_of) for chunks, as_of, _ in ledger.others), key=str)
    assert KEEP_OTHERS == 2 and others == [(1, "2026-01-01T00:00:00"), (1, None)]
    assert all(written > 0 for _, _, written in ledger.others)  # each says when, told apart
    assert all(d.exists() for d in kept) and not oldest.exists() and not published.exists()


def test_the_published_builds_own_ledger_is_not_resumed(tmp_path: Path) -> None:
    """Published, then killed before clearing its ledger: a rebuild of the same config found
    its chunks and billed its earlier attempts a second time."""
    from synthaix.generate import Chunk
    from synthaix.ledger import ChunkLedger
    from synthaix.llm.stats import LlmStats

    first, published = "20260101T000000-aaaaaa", "20260101T000100-bbbbbb"
    for attempt in (first, published):
        ledger = ChunkLedger(tmp_path, "same", 0)
        ledger.open(attempt)
        ledger.spent(Chunk(0, 0, 5), LlmStats(requests=3, prompt_tokens=10))
        (ledger.dir / "chunk-000000-0-5.parquet").write_bytes(b"paid for")
    again = ChunkLedger(tmp_path, "same", 0)
    assert again.open("20260101T000200-cccccc", published=published) == 0
    assert again.earlier_attempts == [] and again.earlier.requests == 0


def test_a_failed_chunk_still_counts_the_requests_it_paid(tmp_path: Path) -> None:
    """Chunks of several requests each; the endpoint refuses every request from the third on.
    The chunks that failed had answers before: the error says what the attempt paid, exactly
    what the simulator answered, and the next attempt counts it as earlier spend (both lost
    it with the chunk)."""
    path = _notes(tmp_path, "http://unused")
    data = yaml.safe_load(path.read_text())
    with simulator(latency=0.02, record=True) as sim:
        data["provider"] = {**_llm(sim.url), "rows_per_request": 1}  # five requests a chunk
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        config = load_config(path)

        watcher = refuse_after(sim, 3)
        with pytest.raises(SynthaixError) as failed:
            Build(config, ThreadExecutor(config)).run()
        watcher.join()
        first = _answered(sim)
        spent = spent_before(failed.value)
        left = len(_chunks(tmp_path / "out" / ".ledger"))
        assert first["requests"] >= 3
        assert spent.requests == first["requests"] and spent.tokens == first["tokens"]
        assert spent.cost_usd == pytest.approx(first["cost"])

        sim.state.config.api_key = None
        sim.state.reset()
        manifest = Build(config, ThreadExecutor(config)).run()
    earlier = manifest.llm_total.requests - manifest.llm.requests
    assert manifest.resumed_chunks == left and earlier == first["requests"]


def test_a_kill_loses_no_answered_request_of_the_chunks_still_running(tmp_path: Path) -> None:
    """One request at a time, five a chunk: killed after 13 answers, two chunks were back and
    the third had three answers. The resumed build counts those three too (their worker
    logged each as it came): the earlier attempt spent what the simulator answered, less at
    most the one answer the client had not read yet."""
    path = _notes(tmp_path, "http://unused", rows=40)
    data = yaml.safe_load(path.read_text())
    data["runner"]["workers"] = 1
    with simulator(latency=0.05, record=True) as sim:
        data["provider"] = {**_llm(sim.url), "rows_per_request": 1, "max_concurrency": 1}
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        process = subprocess.Popen(
            [sys.executable, "-c", SCRIPT, str(path)], cwd=ROOT, start_new_session=True
        )
        deadline = time.monotonic() + 120
        while len(sim.state.requests()) < 13 and time.monotonic() < deadline:
            time.sleep(0.002)
        # The simulator records a request before its latency: from now on none is answered,
        # so the third chunk stays short of its five however late this thread gets to kill.
        sim.state.config.latency = 60
        time.sleep(0.3)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        first = _answered(sim)
        assert 13 <= first["requests"] <= 15

        sim.state.config.latency = 0.05
        sim.state.reset()
        config = load_config(path)
        manifest = Build(config, ThreadExecutor(config)).run()
    earlier = manifest.llm_total.requests - manifest.llm.requests
    assert manifest.resumed_chunks == 2
    assert first["requests"] - 1 <= earlier <= first["requests"]
    cost = manifest.llm_total.cost_usd - manifest.llm.cost_usd
    assert cost <= first["cost"] + 1e-9 and earlier > 10  # chunk records alone: 10


class _Cancelled(BaseException):
    """What Prefect raises in a flow run's main thread when the run is cancelled."""


def test_a_cancelled_build_stops_requesting_and_keeps_its_finished_chunks(tmp_path: Path) -> None:
    """Cancelled (a BaseException in the build's thread, as Prefect's on SIGTERM), a build's
    running chunks send no further request: they finished every request first (a cancelled
    run kept the provider busy until Prefect killed it), and chunks that came back were
    thrown away. Now what finished is in the ledger, and the rerun resumes it."""
    path = _notes(tmp_path, "http://unused", rows=40)
    data = yaml.safe_load(path.read_text())
    data["chunk_size"] = 10
    ledger = tmp_path / "out" / ".ledger"
    with simulator(latency=0.1, record=True) as sim:
        data["provider"] = {**_llm(sim.url), "rows_per_request": 1}  # ten requests a chunk
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        config = load_config(path)

        def cancel_after_first_chunk(signum: int, frame: Any) -> None:
            # Counted here, when the cancel reaches the build's thread: on a busy machine that
            # came 20 requests after the signal was sent.
            answered.append(len(sim.state.requests()))
            raise _Cancelled

        def watch() -> None:
            deadline = time.monotonic() + 60
            while not _chunks(ledger) and time.monotonic() < deadline:
                time.sleep(0.002)
            os.kill(os.getpid(), signal.SIGUSR1)

        answered: list[int] = []

        previous = signal.signal(signal.SIGUSR1, cancel_after_first_chunk)
        threading.Thread(target=watch, daemon=True).start()
        try:
            with pytest.raises(_Cancelled):
                Build(config, ThreadExecutor(config)).run()
            sent = sim.state.stats()["counts"]["requests"]
            time.sleep(0.5)  # a chunk still running would go on asking
            assert sim.state.stats()["counts"]["requests"] == sent
        finally:
            signal.signal(signal.SIGUSR1, previous)
        # At most those in flight at the cancel (max_concurrency), not the rest of a chunk.
        assert sent <= answered[0] + 2 * WORKERS, (sent, answered)
        left = len(_chunks(ledger))
        assert left >= 1
        sim.state.reset()
        manifest = Build(config, ThreadExecutor(config)).run()
    assert manifest.resumed_chunks == left and manifest.rows.delivered == 40


def test_the_ledger_key_holds_what_the_code_makes_from_a_config(monkeypatch) -> None:
    """Prompt templates and samplers are code: a version or text of theirs that changes
    gives the chunks another key, so a resumed build never mixes the old output in."""
    from conftest import make_config
    from synthaix import ledger

    config = make_config([{"name": "n", "type": "person.full_name"}])
    key = ledger.generation_hash(config)
    assert ledger.generation_hash(config) == key
    monkeypatch.setattr(ledger, "SAMPLER_VERSION", ledger.SAMPLER_VERSION + 1)
    assert ledger.generation_hash(config) != key
    monkeypatch.undo()
    monkeypatch.setattr(ledger, "_PROMPTS_SOURCE", b"an edited prompt")
    assert ledger.generation_hash(config) != key
    monkeypatch.undo()
    # Where the model is served is not what it makes: a vLLM restarted on another port, or a
    # failover gateway, resumes the chunks paid for (all 73 requests were paid again).
    moved = config.with_overrides(base_url="http://127.0.0.1:9999/v1")
    assert ledger.generation_hash(moved) == key
    assert ledger.generation_hash(config.with_overrides(model="another")) != key


def test_chunks_are_answered_in_order_so_a_stopped_build_keeps_whole_chunks(
    tmp_path: Path,
) -> None:
    """Four chunks of five requests each, four places: the chunks' requests went out side by
    side, and a build stopped after 16 of its 20 answers had saved no chunk (a resume paid
    for all 20 again). Earlier chunks' requests now take the places first."""
    with simulator(latency=0.05, record=True) as sim:
        path = _notes(tmp_path, sim.url, rows=100)
        data = yaml.safe_load(path.read_text())
        data["chunk_size"], data["runner"]["workers"] = 25, 4
        data["provider"].update(rows_per_request=5, max_concurrency=4)
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        config = load_config(path)
        watcher = refuse_after(sim, 16)
        with pytest.raises(SynthaixError):
            Build(config, ThreadExecutor(config)).run()
        watcher.join()
    # 16 answers: at least the first two chunks whole (the first four places may go to any).
    assert len(_chunks(tmp_path / "out" / ".ledger")) >= 2
