"""The provider block of a config: which OpenAI-compatible endpoint, model, limits and prices."""

from __future__ import annotations

import os
import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from synthaix.columns.base import StrictModel
from synthaix.columns.conditional import fail_at
from synthaix.errors import URL_USERINFO, ConfigError

DEFAULT_BASE_URL = "https://api.openai.com/v1"
# `{{ prefect.variables.NAME }}`, as in prefect.yaml: resolved at run time from the Prefect
# Variable NAME (synthaix.llm.credentials.resolve_provider), in these string fields.
VARIABLE_TEMPLATE = re.compile(r"\{\{\s*prefect\.variables\.([\w\-]+)\s*\}\}")
TEMPLATED_FIELDS = ("base_url", "model", "api_key_env", "api_key_block")


def endpoint_problem(url: str) -> str | None:
    """Why an endpoint URL cannot work, or None: the client adds its paths (/chat/completions)
    after the URL, so a query string ends up before them, lost; an Azure deployment URL
    takes an api-version the OpenAI client does not send."""
    azure = (
        "for Azure OpenAI use its v1 API: https://<resource>.openai.azure.com/openai/v1 with "
        "the deployment's name as model and the key in the variable api_key_env names"
    )
    if "/openai/deployments/" in url:
        return f"an Azure deployment URL (/openai/deployments/...) needs api-version; {azure}"
    if "?" in url:
        return (
            "base_url has a query string (?...), which the client's paths would follow and "
            f"lose; leave it out (a key goes in api_key_env or api_key_block); {azure}"
        )
    return None


class ProviderConfig(StrictModel):
    """An OpenAI-compatible endpoint. The API key is read from a Prefect Secret block or the
    environment, never the file. String fields may be `{{ prefect.variables.NAME }}`."""

    base_url: str | None = Field(
        default=None,
        description="Endpoint, e.g. http://127.0.0.1:11434/v1 for Ollama "
        "(default: $OPENAI_BASE_URL, else OpenAI).",
    )
    model: str = Field(default="gpt-4o-mini", description="Model name as the endpoint knows it.")
    api_key_env: str = Field(
        default="OPENAI_API_KEY",
        description="Environment variable that holds the API key (used when api_key_block "
        "is not set).",
    )
    api_key_block: str | None = Field(
        default=None,
        description="Name of a Prefect Secret block that holds the API key, loaded when the "
        "client is built (once per process); takes precedence over api_key_env.",
    )
    temperature: float = Field(default=1.0, ge=0, le=2, description="Sampling temperature.")
    max_tokens: int = Field(
        default=4096, ge=64, description="Output token limit of one request (the model's limit)."
    )
    timeout: float = Field(default=120, gt=0, description="Seconds before a request times out.")
    max_concurrency: int = Field(default=8, ge=1, le=1024, description="Requests in flight.")
    rpm: int | None = Field(default=None, ge=1, description="Requests per minute allowed.")
    tpm: int | None = Field(default=None, ge=1, description="Tokens per minute allowed.")
    price_input_per_million: float | None = Field(
        default=None,
        ge=0,
        description="USD per 1M input tokens (unset: the cost is reported as not priced; 0: "
        "free). Set with price_output_per_million.",
    )
    price_output_per_million: float | None = Field(
        default=None,
        ge=0,
        description="USD per 1M output tokens (unset: not priced; 0: free). Set with "
        "price_input_per_million.",
    )
    structured_output: Literal["auto", "json_schema", "json_object", "tools"] = Field(
        default="auto",
        description="How to ask for JSON: auto tries json_schema, then json_object, then tools.",
    )
    rows_per_request: int | None = Field(
        default=None,
        ge=1,
        le=500,
        description="Rows asked for per request (default: chosen for speed from the answers' "
        "latency and the provider's limits).",
    )
    max_attempts: int = Field(
        default=8,
        ge=1,
        le=50,
        description="Attempts of a request on transient errors while the endpoint answers "
        "nothing (while other requests get answers, 429s and 5xx are retried on).",
    )
    max_reasks: int = Field(
        default=4, ge=0, le=20, description="Times a row that came back invalid is asked again."
    )

    @field_validator(*TEMPLATED_FIELDS)
    @classmethod
    def _only_variable_templates(cls, value: str | None) -> str | None:
        rest = VARIABLE_TEMPLATE.sub("", value or "")
        if "{{" in rest or "}}" in rest:
            raise ValueError(
                f"'{value}': the only template a provider setting takes is "
                "{{ prefect.variables.NAME }} (a Prefect Variable, read at run time)"
            )
        return value

    @field_validator("base_url")
    @classmethod
    def _no_credentials(cls, value: str | None) -> str | None:
        templated = bool(VARIABLE_TEMPLATE.search(value or ""))
        if value and not templated and not re.match(r"https?://", value, re.IGNORECASE):
            raise ValueError(
                f"'{value}' is no http:// or https:// URL; an OpenAI-compatible endpoint looks "
                "like http://127.0.0.1:11434/v1 or https://api.openai.com/v1"
            )
        if value and not templated and (problem := endpoint_problem(value)):
            raise ValueError(problem)
        if value and URL_USERINFO.search(value):
            raise ValueError(
                "keep credentials out of base_url (user:password@): the config is stored with "
                "each Prefect flow run's parameters, in plain text. Put the key in the variable "
                "that api_key_env names or in a Prefect Secret block (api_key_block); a URL "
                "that must carry them can come from $OPENAI_BASE_URL where the build runs"
            )
        return value

    @model_validator(mode="after")
    def _both_prices(self) -> ProviderConfig:
        # One price alone under-reported the cost without a word (the other side read as 0).
        given, other = "price_input_per_million", "price_output_per_million"
        if self.price_input_per_million is None:
            given, other = other, given
        if getattr(self, given) is not None and getattr(self, other) is None:
            fail_at(
                (given,),
                f"{given} is set but {other} is not: set both (0 for a side that is free), "
                "or neither to report the cost as not priced",
            )
        return self

    def resolved_base_url(self) -> str:
        """The endpoint: base_url, else $OPENAI_BASE_URL (checked as base_url is), else
        OpenAI's. ConfigError for one that cannot work."""
        url = self.base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL
        if not self.base_url and (problem := endpoint_problem(url)):
            raise ConfigError(f"$OPENAI_BASE_URL: {problem}")
        return url.rstrip("/")

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float | None:
        """USD, or None when the provider is not priced."""
        if self.price_input_per_million is None or self.price_output_per_million is None:
            return None
        return (
            prompt_tokens * self.price_input_per_million
            + completion_tokens * self.price_output_per_million
        ) / 1e6
