"""LLM request limits shared by every worker of a Prefect server: global concurrency limits.

`runner.llm_limit` names a limit with provider.max_concurrency slots that every LLM request
holds while it runs, and, when provider.rpm is set, `<name>-rpm`, a rate limit whose slots
refill at rpm/60 a second. Both are created when missing, so they work out of the box on the
temporary local server; an operator can change them in the UI (Concurrency) and every worker
follows. The per-process limits in the LLM client still apply on top.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from contextlib import contextmanager

from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.concurrency.sync import concurrency, rate_limit
from prefect.exceptions import ObjectNotFound

from synthaix.config import DatasetConfig
from synthaix.errors import ProviderError
from synthaix.llm.client import Gate

# A slot is leased, and renewed while its request runs: a process killed holding one (a
# cancelled Dask run's workers, which Prefect kills after 30 s) frees it when its lease ends.
# Prefect's default of 300 s stalled the next build for 5 min; 60 s is the least it allows.
LEASE_SECONDS = 60


def limit_names(config: DatasetConfig) -> tuple[str | None, str | None]:
    name = config.runner.llm_limit
    if name == "auto":
        name = "synthaix-llm" if config.runner.type != "thread" else None
    if name is None:
        return None, None
    return name, f"{name}-rpm" if config.provider.rpm else None


def ensure_limits(config: DatasetConfig) -> None:
    """Create the config's limits on the Prefect server if they do not exist yet."""
    name, rpm_name = limit_names(config)
    wanted = []
    if name:
        wanted.append(
            GlobalConcurrencyLimitCreate(name=name, limit=config.provider.max_concurrency)
        )
    if rpm_name and config.provider.rpm:
        per_second = config.provider.rpm / 60
        wanted.append(
            GlobalConcurrencyLimitCreate(
                name=rpm_name, limit=max(1, math.ceil(per_second)), slot_decay_per_second=per_second
            )
        )
    if not wanted:
        return
    with get_client(sync_client=True) as client:
        for limit in wanted:
            try:
                client.read_global_concurrency_limit_by_name(limit.name)
            except ObjectNotFound:
                client.create_global_concurrency_limit(limit)


def limit_gate(config: DatasetConfig) -> Gate:
    """What an LLM request takes before it is sent: a slot of the shared limits, if any."""
    name, rpm_name = limit_names(config)
    if name is None:
        return contextlib.nullcontext

    @contextmanager
    def gate() -> Iterator[None]:
        try:
            if rpm_name:
                rate_limit(rpm_name, strict=True)
            slot = concurrency(name, occupy=1, strict=True, lease_duration=LEASE_SECONDS)
            slot.__enter__()
        except Exception as exc:  # the Prefect API is down or busy: worth a retry
            raise ProviderError(
                f"could not take a slot of concurrency limit '{name}': {exc}",
                cause="concurrency_limit",
                transient=True,
            ) from None
        try:
            yield
        finally:
            slot.__exit__(None, None, None)

    return gate
