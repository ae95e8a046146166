"""Quiet, offline-friendly defaults for Prefect, set before Prefect is first imported (its
settings are read then); any value the user sets wins. The flows apply them, and so does
the core before it reads a Prefect Variable or Secret block: without an API, that starts
Prefect's own temporary server, whose telemetry otherwise called Prefect's servers."""

from __future__ import annotations

import os

DEFAULTS = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_CLI_PROMPT": "false",
    # The first temporary server on a machine creates and migrates its database, which took
    # over 20 s (Prefect's default limit) on a busy 2-core machine.
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
}


def apply() -> None:
    for key, value in DEFAULTS.items():
        os.environ.setdefault(key, value)
