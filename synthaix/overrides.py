"""Overrides of a validated config, from command-line options or flow-run parameters.

One mechanism for both: dotted paths (`rows`, `runner.workers`, `provider.model`,
`columns.age.max`, `tables.orders.count.mean`) set on the config's data, which is validated
again as a whole, so an override is checked exactly like the same value written in the file.
A list of named items (columns, tables) is addressed by name.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from synthaix.errors import ConfigError

# Typed overrides: the option or parameter name -> the config path it sets.
TYPED = {
    "rows": "rows",
    "seed": "seed",
    "mode": "mode",
    "out": "output.dir",
    "runner": "runner.type",
    "workers": "runner.workers",
    "chunk_size": "chunk_size",
    "model": "provider.model",
    "base_url": "provider.base_url",
    "as_of": "as_of",
}


def parse_assignment(text: str) -> tuple[str, Any]:
    """`key.path=value` -> (path, value); the value is read as YAML (`5` is a number,
    `[parquet]` a list, `null` empty), so it means what it would in the config file."""
    path, sep, raw = text.partition("=")
    path = path.strip()
    if not sep or not path or any(not part for part in path.split(".")):
        raise ConfigError(
            f"--set {text!r} is not key.path=value", hint="e.g. --set runner.workers=8"
        )
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except (yaml.YAMLError, ValueError) as exc:  # ValueError: a date like 2024-02-30
        if raw.strip().startswith("{{"):  # a template (a Prefect Variable's): YAML's {{ }}
            return path, raw.strip()  # is a mapping in a mapping, never a value
        first = str(exc).strip().splitlines()[0]
        raise ConfigError(
            f"--set {path}: cannot read the value {raw!r} as YAML ({first})",
            hint=f"quote a text value: --set '{path}=\"...\"'",
        ) from None
    return path, value


def typed(values: Mapping[str, Any]) -> dict[str, Any]:
    """The set typed overrides, keyed by config path. None, or blank text (a form's cleared
    field), means 'the config's value': an empty base_url sent requests to OpenAI's."""
    return {
        TYPED[name]: value
        for name, value in values.items()
        if value is not None and not (isinstance(value, str) and not value.strip())
    }


def apply_overrides(
    config: Any, overrides: Mapping[str, Any], origin: str = "options", unnamed: str = ""
) -> Any:
    """A re-validated copy of a DatasetConfig or RelationalConfig with `overrides` (config
    path -> value) applied. `origin` names them in errors: "options" (the CLI) or
    "parameters" (a flow run); all but `unnamed` (one the user did not set, as a scheduled
    run's as_of)."""
    if not overrides:
        return config
    from synthaix.config import parse_any_config

    data = config.model_dump(mode="python", by_alias=True)
    for path, value in overrides.items():
        _set(data, path, value, config, origin)
    named = [path for path in overrides if path != unnamed]
    what = f"config with the {origin} {_names(named)}" if named else "config"
    return parse_any_config(data, origin=what)


def _names(paths: Iterable[str]) -> str:
    return ", ".join(paths)


def _set(data: dict[str, Any], path: str, value: Any, config: Any, origin: str) -> None:
    tables = "tables" in data
    head = path.split(".")[0]
    if head == "tables" and not tables:
        raise ConfigError(
            f"{origin} {path}: {config.name} has no tables: (a single-table config)",
            hint="set its own fields, e.g. rows or columns.<name>.<field>",
        )
    if head in ("columns", "constraints", "dedupe") and tables:
        raise ConfigError(
            f"{origin} {path}: a multi-table config sets {head} per table",
            hint=f"e.g. tables.{data['tables'][0]['name']}.{path}",
        )
    if path == "rows" and tables:
        _dataset_rows(data["tables"], value)
        return
    if path == "output.dir" and value is not None:
        value = Path(value)
        output = data.setdefault("output", {})
        if config.output.duckdb is not None and config.duckdb_path.is_relative_to(
            config.output_dir
        ):
            # A database inside the old output folder moves with it.
            output["duckdb"] = value / config.duckdb_path.relative_to(config.output_dir)
    node: Any = data
    parts = path.split(".")
    for depth, part in enumerate(parts[:-1]):
        node = _child(node, part, ".".join(parts[: depth + 1]), origin)
    last = parts[-1]
    if not isinstance(node, dict | list):
        above = ".".join(parts[:-1])
        raise ConfigError(f"{origin} {path}: {above} is a value ({node!r}), not a group of fields")
    if isinstance(node, list):
        raise ConfigError(
            f"{origin} {path}: {'.'.join(parts[:-1])} is a list; name an item, "
            f"e.g. {'.'.join(parts[:-1])}.<name>.{last}"
        )
    node[last] = value


def _dataset_rows(tables: list[dict[str, Any]], rows: Any) -> None:
    """A dataset's size is its root tables' sizes (but those an append keeps, `rows: 0`);
    children follow from their counts, and a child's `rows` total scales with its root: the
    config's 2,500 shifts for 2,000 customers are 625 for 500, not 5 a customer."""
    named = {table["name"]: table for table in tables}
    scale: dict[str, float] = {}
    for table in tables:
        if table.get("parent") is None and table.get("rows"):
            scale[table["name"]] = rows / table["rows"] if isinstance(rows, int) else 1.0
            table["rows"] = rows
    for table in tables:
        root = table
        while root.get("parent") in named and root is not named[root["parent"]]:
            root = named[root["parent"]]
        factor = scale.get(root["name"])
        if table is not root and table.get("rows") and factor is not None:
            table["rows"] = max(1, round(table["rows"] * factor))


def _child(node: Any, part: str, where: str, origin: str) -> Any:
    if isinstance(node, list):
        for item in node:
            if isinstance(item, dict) and item.get("name") == part:
                return item
        names = [str(item.get("name")) for item in node if isinstance(item, dict)]
        raise ConfigError(
            f"{origin} {where}: no item named {part!r}", hint=f"one of: {', '.join(names)}"
        )
    if not isinstance(node, dict):
        raise ConfigError(f"{origin} {where}: {where.rsplit('.', 1)[0]} has no fields to set")
    return node.setdefault(part, {})
