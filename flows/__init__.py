"""Prefect flows: composition only; the work happens in `tasks/` and `synthaix/`."""

from __future__ import annotations

from synthaix import prefect_env

prefect_env.apply()
