"""Prefect flows: composition only; the work happens in `tasks/` and `synthaix/`."""

from __future__ import annotations

import os

# Quiet, offline-friendly defaults for Prefect; any value the user sets wins.
_PREFECT_DEFAULTS = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_CLI_PROMPT": "false",
    # The first temporary server on a machine creates and migrates its database, which took
    # over 20 s (Prefect's default limit) on a busy 2-core machine.
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
}
for _key, _value in _PREFECT_DEFAULTS.items():
    os.environ.setdefault(_key, _value)
