"""The spend logs of a chunk ledger: what each attempt of a build paid, kept beside its chunks
so an attempt killed with kill -9 is still counted when the build is resumed.

    spend-<build>.jsonl  one record per chunk that came back (or failed): its whole stats,
                         written by the build as the chunk returns
    paid-<build>.jsonl   one record per answered request: its tokens and cost, written by the
                         chunk's worker as the answer arrives (a worker that cannot reach the
                         file, as on another machine, writes none)

A record is one JSON line, `{"chunk": 7, "llm": {...}}`, appended unbuffered in one write, so
records of several threads never interleave and a kill cuts at most the last line (skipped
when read). What an attempt spent is its chunk records, plus the request records of the
chunks that have none: those were still running when it was killed.
"""

from __future__ import annotations

import contextlib
import json
from collections import Counter
from collections.abc import Callable
from collections.abc import Set as AbstractSet
from pathlib import Path
from typing import Any

from synthaix.llm.stats import LlmStats


def append(path: Path | str, chunk: int, stats: LlmStats) -> None:
    """Append what `chunk` spent (nothing when it spent nothing)."""
    if not (stats.requests or stats.retries or stats.tokens):
        return
    record = {"chunk": chunk, "llm": stats.model_dump(mode="json", exclude_defaults=True)}
    with open(path, "ab", buffering=0) as log:
        log.write((json.dumps(record, separators=(",", ":")) + "\n").encode())


def paid(path: str | None, chunk: int) -> Callable[[LlmStats], None] | None:
    """A StatsRecorder hook that logs each answered request of `chunk` to `path` (None: a
    chunk run without a ledger), or None. A request is paid whether or not its record can be
    written: a failure to write is not the chunk's."""
    if path is None:
        return None

    def log(stats: LlmStats) -> None:
        with contextlib.suppress(OSError):
            append(path, chunk, stats)

    return log


def attempt_spend(spend: Path, requests: Path) -> LlmStats:
    """What one attempt spent: its chunk records, and the request records of the chunks
    without one."""
    totals, chunks = _read(spend)
    running, _ = _read(requests, skip=chunks)
    return totals + running


def _read(path: Path, skip: AbstractSet[int] = frozenset()) -> tuple[LlmStats, set[int]]:
    """The sum of a log's records (but those of chunks in `skip`) and the chunks it names; a
    line cut short by a kill (or a crash) is skipped."""
    sums: dict[str, Any] = {}  # added up as plain numbers and Counters, validated once
    chunks: set[int] = set()
    fields = set(LlmStats.model_fields)
    with contextlib.suppress(OSError), open(path, "rb") as log:
        for line in log:
            try:
                data = json.loads(line)
                record, chunk = data["llm"], data["chunk"]
                if chunk in skip:
                    continue
                chunks.add(chunk)
                for name in fields & record.keys():
                    value = record[name]
                    if isinstance(value, dict):
                        sums.setdefault(name, Counter()).update(value)
                    elif name == "first_answer_at":  # times span, as LlmStats.__add__ does
                        sums[name] = (
                            min(x for x in (sums.get(name), value) if x)
                            if value
                            else sums.get(name, 0)
                        )
                    elif name == "last_answer_at":
                        sums[name] = max(sums.get(name, 0), value)
                    else:
                        sums[name] = sums.get(name, 0) + value
            except (ValueError, KeyError, TypeError, AttributeError):
                continue
    with contextlib.suppress(ValueError):
        return LlmStats.model_validate(sums), chunks
    return LlmStats(), chunks
