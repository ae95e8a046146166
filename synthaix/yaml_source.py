"""Read YAML while remembering where each value came from, so errors can name a line."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from synthaix.errors import ConfigError


class YamlDocument:
    """A parsed YAML file plus its node tree, for mapping a validation `loc` to a line."""

    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        try:
            self.node = yaml.compose(text, Loader=yaml.SafeLoader)
            self.data: Any = yaml.safe_load(text)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            where = f"{path}:{mark.line + 1}" if mark else str(path)
            raise ConfigError(
                f"{where}: invalid YAML: {exc.problem or exc}",
                hint="fix the YAML syntax (indentation, quotes, colons) at that line",
            ) from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: invalid YAML: {exc}") from exc
        _reject_duplicate_keys(path, self.node)

    @classmethod
    def read(cls, path: Path) -> YamlDocument:
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError as exc:
            raise ConfigError(f"{path}: no such config file") from exc
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read config: {exc.strerror}") from exc
        return cls(path, text)

    def line_of(self, loc: Sequence[str | int]) -> int | None:
        """1-based line of the deepest node that `loc` reaches; unknown parts are skipped.

        Pydantic puts union tags (e.g. `integer`) into locations; those are not keys in the
        file, so a part that does not match is passed over rather than ending the walk.
        """
        node = self.node
        if node is None:
            return None
        line = node.start_mark.line + 1
        for part in loc:
            if isinstance(node, yaml.MappingNode):
                for key, value in node.value:
                    if key.value == str(part):
                        line = key.start_mark.line + 1
                        node = value
                        break
            elif (
                isinstance(node, yaml.SequenceNode)
                and isinstance(part, int)
                and 0 <= part < len(node.value)
            ):
                node = node.value[part]
                line = node.start_mark.line + 1
        return line


def _reject_duplicate_keys(path: Path, node: yaml.Node | None) -> None:
    """YAML keeps the last of two equal keys silently; a config must not."""
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key, value in node.value:
            line = key.start_mark.line + 1
            if key.value in seen:
                raise ConfigError(
                    f"{path}:{line}: key '{key.value}' appears twice (first on line "
                    f"{seen[key.value]})",
                    hint="keep one of them",
                )
            seen[key.value] = line
            _reject_duplicate_keys(path, value)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            _reject_duplicate_keys(path, item)
