"""The chunk ledger: finished chunks saved beside the output until the build is published, so
a build that crashed or was killed (kill -9) and is started again with the same config and seed
continues where it stopped instead of paying for the same LLM requests twice.

    out/reviews/.ledger/<key>/chunk-000042.parquet   rows + row numbers; LLM stats in metadata
    out/reviews/.ledger/<key>/spend-<build>.jsonl    what each attempt spent, chunk by chunk
    out/reviews/.ledger/<key>/paid-<build>.jsonl     and request by request (synthaix.spendlog)

The key is a hash of what generation depends on (the config with overrides and seed, without
the runner and the provider's limits) and of where the build's row numbers start, so a changed
config or a different append position never reuses stale chunks. Files are
written to a temporary name and renamed, so a chunk is either complete or absent.

The spend log is how a resumed build tells what the interrupted attempts cost: every chunk's
LLM stats are appended to its attempt's log the moment the chunk is back (a chunk that failed
carries what it paid before failing), before its rows are saved, admitted or even needed. The
requests of chunks still running are in the request log, which their workers append to as
answers arrive, so a kill -9 loses none the client had read. One append of ~180 bytes per
chunk or request, unbuffered and without fsync (a killed process loses nothing the kernel
holds; only a machine crash could): 35-50 us each measured, against ~2.5 ms for the chunk's
Parquet file and a request's tenths of a second. Each attempt writes its own files (named by
its build id), so attempts never interleave; a resumed build sums the earlier attempts' files
(~30 us a record) and the publish removes them with the chunks.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from synthaix import spendlog
from synthaix.config import DatasetConfig
from synthaix.generate import SAMPLER_VERSION, Chunk, ChunkResult
from synthaix.llm import prompts
from synthaix.llm.stats import LlmStats
from synthaix.ownership import BUILD_ID, remove_our_files

_ROW_ID = "__synthaix_row_id"
_HASH = "__synthaix_key_hash"
_STATS = b"synthaix.llm"
_PROMPTS_SOURCE = Path(prompts.__file__).read_bytes()
_CHUNK_FILE = re.compile(
    rf"chunk-\d{{6}}-\d+-\d+\.(parquet|tmp)|(spend|paid)-{BUILD_ID}\.jsonl|ledger\.json(\.tmp)?"
)
_LEDGER_DIR = re.compile(r"[0-9a-f]{16}")
_LOG_NAME = re.compile(rf"(?:spend|paid)-({BUILD_ID})\.jsonl")
KEEP_OTHERS = 2  # ledgers of other configs kept, newest first (each holds paid-for chunks)


def generation_hash(config: DatasetConfig) -> str:
    """What the generated chunks depend on: the config without `runner` (how chunks are run),
    the provider's limits and prices (what requests may do, and cost), nor where the model is
    served and with which key (the same model restarted on another port, or a failover
    gateway), so a restart with more workers, another runner, a corrected price or the
    endpoint's new address still finds the saved chunks."""
    data = config.model_dump(mode="json", by_alias=True, exclude={"runner"})
    limits = ("max_concurrency", "rpm", "tpm", "timeout", "max_attempts")
    served = ("base_url", "api_key_env", "api_key_block")
    for name in (*limits, *served, "price_input_per_million", "price_output_per_million"):
        data["provider"].pop(name, None)
    data["dedupe"].pop("price_per_million", None)
    # The prompt templates are code, not config: their text is part of the key too, so an
    # edited prompt never resumes from chunks the old one wrote.
    data["prompts"] = [prompts.PROMPT_VERSION, hashlib.sha256(_PROMPTS_SOURCE).hexdigest()]
    data["samplers"] = SAMPLER_VERSION
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


class ChunkLedger:
    def __init__(
        self, output_dir: Path, config_hash: str, first_row: int, table: str | None = None
    ) -> None:
        """`table`: a table of a multi-table dataset keeps its ledgers apart from the other
        tables' (each removes only its own stale ledgers)."""
        digest = hashlib.sha256(f"{config_hash}\0{first_row}".encode()).hexdigest()[:16]
        self.root = output_dir / ".ledger" if table is None else output_dir / ".ledger" / table
        self.dir = self.root / digest
        self.earlier = LlmStats()  # what the interrupted attempts spent (read by `open`)
        self.earlier_attempts: list[str] = []  # their build ids
        # Other configs' ledgers: chunks, as_of, when last written (Unix time), newest first.
        self.others: list[tuple[int, str | None, float]] = []
        self.dropped: list[tuple[int, str | None, float]] = []  # older ones, removed by `open`
        self._spend: Path | None = None
        self.paid_log: Path | None = None  # this attempt's requests, logged by the workers

    def open(self, attempt: str, published: str | None = None, as_of: str | None = None) -> int:
        """Start using the ledger for the attempt (build id) `attempt` of a config whose
        relative times stand at `as_of`. Ledgers of other configs (another as_of, an edited
        config, another SynthAIx version) are not reused; the newest KEEP_OTHERS of them are
        kept until this build publishes, and `others` says what they hold so the build can
        say how to resume them. A ledger of the build `published` (published, then killed
        before it cleared it) is removed, as are older ones. Reads what the earlier attempts
        spent into `earlier`, except `published`'s. Returns the number of chunks they left."""
        assert re.fullmatch(BUILD_ID, attempt), attempt
        others = []
        for other in self.root.iterdir() if self.root.is_dir() else []:
            if other == self.dir or not _LEDGER_DIR.fullmatch(other.name):
                continue
            noted = _note(other)
            chunks = len(list(other.glob("chunk-*.parquet")))
            if not chunks or (published is not None and published in noted.get("attempts", [])):
                remove_our_files(other, _CHUNK_FILE)  # nothing to resume there
            else:
                others.append((_age(other), other, chunks, noted.get("as_of")))
        others.sort(reverse=True)  # newest first
        for _, stale, _, _ in others[KEEP_OTHERS:]:
            remove_our_files(stale, _CHUNK_FILE)
        self.others = [(chunks, as_of, age) for age, _, chunks, as_of in others[:KEEP_OTHERS]]
        self.dropped = [(chunks, as_of, age) for age, _, chunks, as_of in others[KEEP_OTHERS:]]
        noted = _note(self.dir)
        if published is not None and published in noted.get("attempts", []):
            remove_our_files(self.dir, _CHUNK_FILE)  # this build's own, published: nothing left
            noted = {}
        self.dir.mkdir(parents=True, exist_ok=True)
        attempts = [*noted.get("attempts", []), attempt]
        temporary = self.dir / "ledger.json.tmp"
        temporary.write_text(json.dumps({"as_of": as_of, "attempts": attempts}), encoding="utf-8")
        os.replace(temporary, self.dir / "ledger.json")
        named = (_LOG_NAME.fullmatch(log.name) for log in self.dir.glob("*.jsonl"))
        for earlier in sorted({m.group(1) for m in named if m} - {attempt, published}):
            spent = spendlog.attempt_spend(*self._logs(earlier))
            self.earlier += spent
            if spent.requests:
                self.earlier_attempts.append(earlier)
        self._spend, self.paid_log = self._logs(attempt)
        return len(list(self.dir.glob("chunk-*.parquet")))

    def _logs(self, attempt: str) -> tuple[Path, Path]:
        """The attempt's spend log (chunk by chunk) and its log of paid requests."""
        return self.dir / f"spend-{attempt}.jsonl", self.dir / f"paid-{attempt}.jsonl"

    def spent(self, chunk: Chunk, stats: LlmStats) -> None:
        """Append what `chunk` cost to this attempt's spend log (call before `save`: a chunk
        killed between the two is paid for twice, and then counted twice, as it should be)."""
        assert self._spend is not None, "open the ledger first"
        spendlog.append(self._spend, chunk.index, stats)

    def _path(self, chunk: Chunk) -> Path:
        return self.dir / f"chunk-{chunk.index:06d}-{chunk.first_row}-{chunk.rows}.parquet"

    def holds(self, chunk: Chunk) -> bool:
        return self._path(chunk).exists()

    def load(self, chunk: Chunk, schema: pa.Schema) -> ChunkResult | None:
        if not self.holds(chunk):
            return None
        table = pq.read_table(self._path(chunk))
        stats = LlmStats.model_validate_json((table.schema.metadata or {})[_STATS])
        row_ids = table[_ROW_ID].to_numpy()
        hashes = table[_HASH].to_numpy() if _HASH in table.column_names else None
        table = table.drop_columns([c for c in (_ROW_ID, _HASH) if c in table.column_names])
        return ChunkResult(table.cast(schema), np.asarray(row_ids, np.int64), stats, hashes)

    def save(self, chunk: Chunk, result: ChunkResult) -> None:
        table = result.table.append_column(_ROW_ID, pa.array(result.row_ids, pa.int64()))
        if result.hashes is not None:
            table = table.append_column(_HASH, pa.array(result.hashes, pa.int64()))
        table = table.replace_schema_metadata({_STATS: result.llm.model_dump_json().encode()})
        path = self._path(chunk)
        temporary = path.with_suffix(".tmp")
        pq.write_table(table, temporary, compression="zstd")
        os.replace(temporary, path)


def _note(ledger: Path) -> dict[str, Any]:
    """A ledger's note: the as_of its builds stood at, and their build ids."""
    try:
        data = json.loads((ledger / "ledger.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    as_of, attempts = data.get("as_of"), data.get("attempts")
    attempts = attempts if isinstance(attempts, list) else []
    return {
        "as_of": as_of if isinstance(as_of, str) else None,
        "attempts": [a for a in attempts if isinstance(a, str)],
    }


def _age(ledger: Path) -> float:
    """When the ledger last saved a chunk or a spend record (or was opened)."""
    times = []
    for entry in ledger.iterdir():
        with contextlib.suppress(OSError):
            times.append(entry.stat().st_mtime)
    return max(times, default=0.0)


def clear_ledgers(output_dir: Path, table: str | None = None) -> None:
    """A build of the output is published: every ledger of it (or of its table) is stale."""
    root = output_dir / ".ledger" if table is None else output_dir / ".ledger" / table
    for ledger in root.iterdir() if root.is_dir() else []:
        if _LEDGER_DIR.fullmatch(ledger.name):
            remove_our_files(ledger, _CHUNK_FILE)
    with contextlib.suppress(OSError):
        root.rmdir()  # only when no other ledger (or file of the user's) is left
        if root.name != ".ledger":
            root.parent.rmdir()
