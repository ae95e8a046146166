"""The `synthaix` command line. It may import `flows` (lazily); the rest of the core never
does."""
# ruff: noqa: I001, E402  (the collector is tuned first; then imports in `--help`'s order)

import atexit
import gc

# A build imports about 150,000 long-lived objects the collector tracks (pydantic models,
# Prefect): at Python's default threshold (700 allocations) it walks them again and again,
# about 0.5 s of a build's start. At exit it would walk them once more (0.4 s) only to free
# memory the OS takes back anyway. The freeze runs after every other exit hook (Prefect's log
# and event workers flush before atexit even starts); everything SynthAIx writes is closed
# by then (only cyclic garbage left at exit goes unfinalized).
gc.set_threshold(10_000)
atexit.register(gc.freeze)

from synthaix.cli import commands  # noqa: F401  (registers validate, preview, ...)
from synthaix.cli import build  # noqa: F401  (registers build)
from synthaix.cli import serve  # noqa: F401  (registers serve)
from synthaix.cli.app import app

__all__ = ["app"]
