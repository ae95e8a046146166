"""The one retry rule for Prefect tasks: retry transient errors only."""

from __future__ import annotations

from typing import Any

from synthaix.errors import SynthaixError


def retry_only_transient(task: Any, task_run: Any, state: Any) -> bool:
    """A config error or a bug fails at once; only errors marked transient are retried."""
    try:
        state.result()
    except SynthaixError as exc:
        return exc.transient
    except Exception:
        return False
    return False
