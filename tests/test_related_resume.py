"""A multi-table build with llm columns, killed (SIGKILL) while a child table is being written:
the next build publishes nothing new from the killed attempt, reuses the chunks its parent
table and the child table had finished (their ledgers are kept until the whole dataset is
published), and its keys join."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import yaml
from llm_helpers import provider, simulator

from synthaix.build.executor import ThreadExecutor
from synthaix.config import load_config
from synthaix.relational.build import DatasetBuild

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = (
    "import sys; from synthaix.config import load_config; "
    "from synthaix.relational.build import DatasetBuild; "
    "from synthaix.build.executor import ThreadExecutor; "
    "DatasetBuild(load_config(sys.argv[1]), lambda t: ThreadExecutor(t)).run()"
)


def _config(tmp_path: Path, url: str) -> Path:
    data = {
        "name": "catalogue",
        "seed": 4,
        "provider": provider(url, rows_per_request=5, max_concurrency=2),
        "runner": {"workers": 2},
        "output": {"dir": str(tmp_path / "out")},
        "tables": [
            {
                "name": "products",
                "rows": 20,
                "chunk_size": 5,
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
                "columns": [
                    {"name": "review_id", "type": "sequence", "primary_key": True},
                    {"name": "product_id", "type": "reference", "to": "products.product_id"},
                    {
                        "name": "text",
                        "type": "llm",
                        "prompt": "A review of {{ products.title }} ({{ products.category }})",
                    },
                ],
            },
        ],
    }
    path = tmp_path / "catalogue.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_killed_during_the_child_table_resumes_from_both_ledgers(tmp_path: Path) -> None:
    with simulator(seed=3, latency=0.15) as sim:
        path = _config(tmp_path, sim.url)
        process = subprocess.Popen(
            [sys.executable, "-c", SCRIPT, str(path)], cwd=ROOT, start_new_session=True
        )
        ledger = tmp_path / "out" / ".ledger"
        deadline = time.monotonic() + 120
        seen_before = 0
        while time.monotonic() < deadline and process.poll() is None:
            # products has 4 chunks; wait for more than that: the child table has started.
            seen_before = len(list(ledger.glob("*/*/chunk-*.parquet")))
            if seen_before >= 6:
                break
            time.sleep(0.02)
        assert process.poll() is None, "the build ended before it could be killed"
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        assert not (tmp_path / "out" / "data").exists()  # nothing was published
        manifest = DatasetBuild(load_config(path), lambda t: ThreadExecutor(t)).run()
    assert manifest.tables["products"].resumed_chunks == 4  # no product asked for again
    assert manifest.tables["reviews"].resumed_chunks >= 1
    assert manifest.rows == {"products": 20, "reviews": 60}
    with duckdb.connect(str(tmp_path / "out" / "catalogue.duckdb"), read_only=True) as con:
        orphans = con.execute(
            "SELECT count(*) FROM reviews r LEFT JOIN products p USING (product_id) "
            "WHERE p.product_id IS NULL OR r.text IS NULL"
        ).fetchone()
    assert orphans == (0,)
    assert not list(ledger.glob("*/*/chunk-*.parquet"))  # published: the ledgers are cleared


def test_a_failed_later_table_leaves_the_earlier_tables_resumable_after_other_edits(
    tmp_path: Path,
) -> None:
    """A child table's chunk ledger was keyed on the whole dataset: after a failure in a later
    table, fixing that table's prompt, more workers or a corrected price made every child
    table ask (and pay) again. Now only the tables a table reads are in its key."""
    import threading

    from synthaix.errors import SynthaixError

    with simulator(seed=3, record=True) as sim:
        path = _config(tmp_path, sim.url)
        data = yaml.safe_load(path.read_text())
        notes = {
            "name": "notes",
            "parent": "reviews",
            "count": 1,
            "chunk_size": 5,
            "columns": [
                {"name": "review_id", "type": "reference", "to": "reviews.review_id"},
                {"name": "note", "type": "llm", "prompt": "A reply to: {{ reviews.text }}"},
            ],
        }
        data["tables"].append(notes)
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        ledger = tmp_path / "out" / ".ledger" / "reviews"

        def notes_started() -> None:  # refused from when reviews' 12 chunks are in its ledger
            while len(list(ledger.glob("*/chunk-*.parquet"))) < 12:
                time.sleep(0.002)
            sim.state.config.api_key = "someone-else"

        watcher = threading.Thread(target=notes_started, daemon=True)
        watcher.start()
        try:
            DatasetBuild(load_config(path), lambda t: ThreadExecutor(t)).run()
        except SynthaixError:
            pass
        else:
            raise AssertionError("the notes table should have been refused")
        watcher.join()
        sim.state.config.api_key = None
        paid = len(sim.state.requests())
        notes["columns"][1]["prompt"] = "A short reply to: {{ reviews.text }}"
        data["runner"]["workers"] = 3
        data["provider"].update(price_input_per_million=0.15, price_output_per_million=0.6)
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        manifest = DatasetBuild(load_config(path), lambda t: ThreadExecutor(t)).run()
        asked = sim.state.requests()[paid:]
    assert manifest.tables["products"].resumed_chunks == 4
    assert manifest.tables["reviews"].resumed_chunks == 12
    assert manifest.tables["reviews"].llm.requests == 0
    assert manifest.tables["reviews"].llm_total.requests >= 12  # the first attempt's, counted
    assert len(asked) == manifest.tables["notes"].llm.requests >= 12
    assert manifest.rows == {"products": 20, "reviews": 60, "notes": 60}
