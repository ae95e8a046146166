"""SynthAIx: synthetic tabular datasets from YAML configs (and LLMs), built with Prefect."""

from typing import TYPE_CHECKING, Any

from synthaix.errors import CapacityError, ConfigError, OutputError, SynthaixError

if TYPE_CHECKING:
    from synthaix.config import DatasetConfig, load_config

__version__ = "0.1.0"

__all__ = [
    "CapacityError",
    "ConfigError",
    "DatasetConfig",
    "OutputError",
    "SynthaixError",
    "load_config",
]


def __getattr__(name: str) -> Any:
    # Imported on first use: the config models bring numpy, pyarrow and pydantic (0.6 s), and
    # the CLI tunes Python's collector before they load.
    if name in ("DatasetConfig", "load_config"):
        from synthaix import config

        return getattr(config, name)
    raise AttributeError(f"module 'synthaix' has no attribute {name!r}")
