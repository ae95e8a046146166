"""SynthAIx: synthetic tabular datasets from YAML configs (and LLMs), built with Prefect."""

from synthaix.config import DatasetConfig, load_config
from synthaix.errors import CapacityError, ConfigError, OutputError, SynthaixError

__version__ = "0.1.0"

__all__ = [
    "CapacityError",
    "ConfigError",
    "DatasetConfig",
    "OutputError",
    "SynthaixError",
    "load_config",
]
