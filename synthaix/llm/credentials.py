"""Provider settings and the API key from Prefect: `{{ prefect.variables.NAME }}` templates in
provider string fields, and the key from a Prefect `Secret` block (`provider.api_key_block`).

Precedence of the key: the Secret block named by `api_key_block` when it is set (failing to
load it is an error, never a silent fall-back), else the environment variable named by
`api_key_env` (default OPENAI_API_KEY), else no key (fine for local servers).

Prefect is imported only when a provider uses a block or a template: the core library works
without it. A block's value is loaded once per process (per Prefect API) and cached, as chunk
tasks build clients often; Dask and Ray workers load it themselves, with the Prefect API
settings they run with.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import threading
from typing import Any, TypeVar

from synthaix import prefect_env
from synthaix.errors import ConfigError, ProviderError, RedactedError, masked_urls
from synthaix.llm.provider import TEMPLATED_FIELDS, VARIABLE_TEMPLATE, ProviderConfig

C = TypeVar("C")
_keys: dict[tuple[str, str], str] = {}  # (Prefect API URL, block name) -> key
_unloadable: set[tuple[str, str]] = set()  # blocks `known_secrets` failed to load: not retried
_sent: set[str] = set()  # keys read from the environment for a client
_lock = threading.Lock()


def is_templated(provider: ProviderConfig) -> bool:
    """Whether any provider string field holds a `{{ prefect.variables.NAME }}` template."""
    return any(
        VARIABLE_TEMPLATE.search(value)
        for value in (getattr(provider, name) for name in TEMPLATED_FIELDS)
        if isinstance(value, str)
    )


def resolve_provider(provider: ProviderConfig) -> ProviderConfig:
    """`provider` with every `{{ prefect.variables.NAME }}` template replaced by the value of
    the Prefect Variable NAME, read now. Unchanged (and Prefect not imported) when nothing is
    templated. A missing variable is a ConfigError naming the field and the variable."""
    if not is_templated(provider):
        return provider
    values: dict[str, Any] = {}
    update = {}
    for field in TEMPLATED_FIELDS:
        text = getattr(provider, field)
        if isinstance(text, str) and VARIABLE_TEMPLATE.search(text):
            update[field] = VARIABLE_TEMPLATE.sub(
                lambda m, f=field: _variable(f, m.group(1), values), text
            )
    return provider.model_copy(update=update)


def resolve_config(config: C) -> C:
    """A DatasetConfig or RelationalConfig with its provider's templates resolved (as
    `resolve_provider`), re-validated as a whole so every table's plan sees the values; the
    same object when nothing is templated. For the flow's planning step."""
    provider = config.provider  # type: ignore[attr-defined]
    resolved = resolve_provider(provider)
    if resolved is provider:
        return config
    from synthaix.overrides import apply_overrides

    changed = {
        f"provider.{name}": getattr(resolved, name)
        for name in TEMPLATED_FIELDS
        if getattr(resolved, name) != getattr(provider, name)
    }
    return apply_overrides(config, changed, origin="Prefect Variables")


def _variable(field: str, name: str, values: dict[str, Any]) -> str:
    if name not in values:
        values[name] = _read_variable(field, name)
    value = values[name]
    if value is None:
        raise ConfigError(
            f"provider.{field}: Prefect Variable '{name}' does not exist",
            hint=f"create it: `prefect variable set {name} VALUE`, or in Python "
            f"`Variable.set('{name}', 'VALUE')` (from prefect.variables import Variable)",
        )
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ConfigError(
            f"provider.{field}: Prefect Variable '{name}' holds a {type(value).__name__}, "
            "not a string",
            hint=f"set it to text: `prefect variable set {name} VALUE --overwrite`",
        )
    return str(value)


def _read_variable(field: str, name: str) -> Any:
    prefect_env.apply()
    from prefect.variables import Variable

    try:
        return Variable.get(name, _sync=True)
    except Exception as exc:  # connection refused, HTTP errors: one line, no traceback
        raise ConfigError(
            f"provider.{field}: cannot read Prefect Variable '{name}': {_one_line(exc)}",
            hint="check that the Prefect API is reachable (prefect config view: PREFECT_API_URL)",
        ) from None


def api_key(provider: ProviderConfig) -> str:
    """The API key for `provider` (templates resolved first): from its Secret block when
    `api_key_block` is set, an error if that block cannot be loaded; else from the environment
    variable `api_key_env`; '' when there is none."""
    provider = resolve_provider(provider)
    if provider.api_key_block:
        return load_secret(provider.api_key_block)
    key = os.environ.get(provider.api_key_env, "")
    with _lock:
        _sent.add(key)  # whatever its variable is called, `process_secrets` knows it
    return key


def load_secret(name: str) -> str:
    """The value of the Prefect Secret block `name`, loaded once per process and Prefect API.
    A ProviderError (one line naming the block, with how to create it) when it cannot be."""
    cache = _cache_key(name)
    with _lock:  # one load per process, however many chunk tasks ask at once
        if cache not in _keys:
            _keys[cache] = _load(name)
            _unloadable.discard(cache)
        return _keys[cache]


def known_secrets(provider: ProviderConfig) -> list[str]:
    """Every key `provider` could send (environment variable, Secret block), for redaction.
    Uses the cached block value; loads it (once) only when this process has not yet, and
    leaves out what cannot be read: redaction never fails a build."""
    found = [os.environ.get(provider.api_key_env, "")]
    try:
        provider = resolve_provider(provider)
    except ConfigError:
        return [k for k in found if len(k) >= 4]
    found.append(os.environ.get(provider.api_key_env, ""))
    if provider.api_key_block:
        cache = _cache_key(provider.api_key_block)
        if cache not in _unloadable:
            try:
                found.append(load_secret(provider.api_key_block))
            except ProviderError:
                with _lock:
                    _unloadable.add(cache)
    return list(dict.fromkeys(k for k in found if len(k) >= 4))


_SECRET_NAME = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD|AUTH_STRING)$", re.IGNORECASE)


def process_secrets() -> list[str]:
    """Every secret this process holds that an error text could carry, longest first: values
    of environment variables named like one (OPENAI_API_KEY, PREFECT_API_AUTH_STRING, ...),
    the Secret blocks loaded, and Prefect's API key and auth string (from its profile too)."""
    found = [v for k, v in os.environ.items() if _SECRET_NAME.search(k)]
    with _lock:
        found += [*_keys.values(), *_sent]
    settings = sys.modules.get("prefect.settings")  # not loaded: none of its values was used
    if settings is not None:
        with contextlib.suppress(Exception):
            api = settings.get_current_settings().api
            found += [s.get_secret_value() for s in (api.key, api.auth_string) if s]
    return sorted({v for v in found if len(v) >= 6}, key=len, reverse=True)


def scrubbed(text: str) -> str:
    """`text` without the secrets the process holds, nor user:password@ in URLs."""
    for secret in process_secrets():
        text = text.replace(secret, "***")
    return masked_urls(text)


_LONGEST = 2_000


def redacted(exc: BaseException) -> RedactedError:
    """`exc` as `Type: text`, scrubbed and cut to 2,000 characters."""
    text = scrubbed(f"{type(exc).__name__}: {exc}")
    if len(text) > _LONGEST:
        more = len(text) - _LONGEST
        text = f"{text[:_LONGEST]} ... ({more:,} characters more; --debug shows them)"
    return RedactedError(text)


def forget_secrets() -> None:
    """Drop the cached block values (after a key rotation in a long-running process; tests)."""
    with _lock:
        _keys.clear()
        _unloadable.clear()


def _cache_key(name: str) -> tuple[str, str]:
    prefect_env.apply()
    from prefect.settings import PREFECT_API_URL

    return (PREFECT_API_URL.value() or "", name)


def _load(name: str) -> str:
    from prefect.blocks.system import Secret

    hint = (
        f"create it in the UI (`prefect block create secret`) or in Python: "
        f"`Secret(value='sk-...').save('{name}')` (from prefect.blocks.system import Secret); "
        "check PREFECT_API_URL points at the server that has it"
    )
    try:
        block = Secret.load(name, _sync=True)
    except ValueError as exc:
        found = "Unable to find" not in str(exc)
        reason = f"cannot be loaded ({_one_line(exc)})" if found else "does not exist"
        raise ProviderError(
            f"provider.api_key_block: Prefect Secret block '{name}' {reason}",
            cause="credentials",
            hint=hint,
        ) from None
    except Exception as exc:  # the API unreachable, HTTP errors, a block of another schema
        raise ProviderError(
            f"provider.api_key_block: cannot load Prefect Secret block '{name}': {_one_line(exc)}",
            cause="credentials",
            hint=hint,
        ) from None
    value = block.value.get_secret_value()  # the text as stored: .get() would parse JSON
    if not isinstance(value, str) or not value.strip():
        raise ProviderError(
            f"provider.api_key_block: Prefect Secret block '{name}' holds no key "
            f"({'an empty string' if isinstance(value, str) else type(value).__name__})",
            cause="credentials",
            hint=f"store the key as the block's text value: Secret(value='sk-...')"
            f".save('{name}', overwrite=True)",
        )
    return value.strip()


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
