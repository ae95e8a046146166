"""The `synthaix` command line. It may import `flows` (lazily); the rest of the core never
does."""
# ruff: noqa: I001  (import order is the order `synthaix --help` lists the commands in)

from synthaix.cli import commands  # noqa: F401  (registers validate, preview, ...)
from synthaix.cli import build  # noqa: F401  (registers build)
from synthaix.cli import serve  # noqa: F401  (registers serve)
from synthaix.cli.app import app

__all__ = ["app"]
