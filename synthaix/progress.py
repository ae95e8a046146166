"""Build progress events, so the CLI (or anything else) can show them without Prefect."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol


class ProgressListener(Protocol):
    def started(self, dataset: str, total_rows: int) -> None: ...
    def advanced(self, rows: int) -> None: ...
    def publishing(self) -> None: ...
    def published(self) -> None: ...
    def not_published(self) -> None: ...
    def note(self, text: str) -> None: ...


_listeners: list[ProgressListener] = []


@contextmanager
def listening(listener: ProgressListener) -> Iterator[None]:
    _listeners.append(listener)
    try:
        yield
    finally:
        _listeners.remove(listener)


def started(dataset: str, total_rows: int) -> None:
    for listener in _listeners:
        listener.started(dataset, total_rows)


def advanced(rows: int) -> None:
    for listener in _listeners:
        listener.advanced(rows)


def publishing() -> None:
    """The build is at its commit point: an interrupt now should wait for what follows."""
    for listener in _listeners:
        listener.publishing()


def published() -> None:
    """The commit point is passed: the new output is the published one."""
    for listener in _listeners:
        listener.published()


def not_published() -> None:
    """The commit failed: the previous output is still the published one."""
    for listener in _listeners:
        listener.not_published()


def note(text: str) -> None:
    """Something the user should know about this build (the CLI prints it)."""
    for listener in _listeners:
        listener.note(text)


def warn(text: str) -> None:
    """`note`, and a warning in the logs: a flow run has no listener, its logs say it."""
    logging.getLogger("synthaix").warning(text)
    note(text)
