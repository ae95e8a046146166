"""One exception hierarchy; the CLI turns each into a one-line message."""

from __future__ import annotations

import re

#: user:password@ of a URL (a key put in provider.base_url): never shown.
URL_USERINFO = re.compile(r"(?<=://)[^/@\s]+@")
#: A query parameter that carries a credential (?api-key=..., &sig=..., &token=...).
URL_SECRET_QUERY = re.compile(
    r"(?<=[?&])([\w.-]*(?:key|token|secret|sig|signature|password|auth|code)[\w.-]*=)[^&#\s]+",
    re.IGNORECASE,
)


def masked_urls(text: str) -> str:
    """`text` with the credentials a URL in it may carry masked: user:password@ and the
    values of query parameters named like a key (api-version and the like stay readable)."""
    return URL_SECRET_QUERY.sub(r"\1***", URL_USERINFO.sub("***@", text))


class SynthaixError(Exception):
    """Base of every error SynthAIx raises on purpose. Credentials in a URL of its message or
    hint are masked: errors are printed, logged, and stored in Prefect states."""

    hint: str | None = None
    #: Transient errors (a provider's 503, a dropped connection) may succeed when retried;
    #: everything else fails at once. Retry layers decide by this flag, never by message text.
    transient: bool = False

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(masked_urls(message))
        if hint is not None:
            self.hint = masked_urls(hint)


class ConfigError(SynthaixError):
    """The dataset config is invalid. Never retried."""


class CapacityError(SynthaixError):
    """The config cannot yield the number of distinct rows asked for."""


class OutputError(SynthaixError):
    """The output location cannot be used (locked, incompatible with append, ...)."""


class OutputBusy(OutputError):
    """Another build is writing the output (it holds its lock)."""


class ProviderError(SynthaixError):
    """The LLM endpoint failed. `cause` names the kind (rate_limit, server_error, ...)."""

    def __init__(
        self,
        message: str,
        *,
        cause: str = "provider",
        transient: bool = False,
        retry_after: float | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.cause = cause
        self.transient = transient
        self.retry_after = retry_after


class RedactedError(Exception):
    """A library's error as `Type: text`, without secrets and cut to a readable length (a
    library may put its arguments in its text: Ray put Prefect's settings, API key included,
    in a 25 KB line). Raised from the original, whose traceback is logged redacted."""
