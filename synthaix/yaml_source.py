"""Read YAML while remembering where each value came from, so errors can name a line."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import yaml

from synthaix.errors import ConfigError

#: A config is typed by hand; anything larger is a mistake (a data file given as config).
MAX_CONFIG_BYTES = 8 * 1024 * 1024
#: Values that aliases may add on top of the ones the file spells out. A real config adds a few
#: hundred; an alias bomb ("billion laughs") adds billions from a few lines of text.
MAX_ALIAS_VALUES = 100_000


class YamlDocument:
    """A parsed YAML file plus its node tree, for mapping a validation `loc` to a line."""

    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        loader = yaml.SafeLoader(text)
        try:
            self.node: yaml.Node | None = loader.get_single_node()
            if self.node is not None:
                # The node graph holds an alias as the same node again, so checking it costs
                # the size of the file rather than the size of the data it expands to.
                _check_graph(path, self.node)
            self.data: Any = None if self.node is None else loader.construct_document(self.node)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            where = f"{path}:{mark.line + 1}" if mark else str(path)
            raise ConfigError(
                f"{where}: invalid YAML: {exc.problem or exc}",
                hint="fix the YAML syntax (indentation, quotes, colons) at that line",
            ) from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: invalid YAML: {exc}") from exc
        except ValueError as exc:  # a value YAML reads but cannot make, e.g. 2024-02-30
            node = _unmakeable(self.node)
            where = f"{path}:{node.start_mark.line + 1}" if node else str(path)
            date = node is not None and node.tag == "tag:yaml.org,2002:timestamp"
            raise ConfigError(
                f"{where}: invalid value: {exc}",
                hint=("a date must exist in the calendar (YYYY-MM-DD); " if date else "")
                + "quote a value meant as text",
            ) from None
        except RecursionError as exc:  # the YAML parser recurses once per nesting level
            raise ConfigError(
                f"{path}: YAML is nested too deeply",
                hint="a config needs a few levels of nesting; check for unclosed [ or {",
            ) from exc
        finally:
            loader.dispose()

    @classmethod
    def read(cls, path: Path) -> YamlDocument:
        try:
            size = path.stat().st_size
            if size <= MAX_CONFIG_BYTES:
                with path.open(encoding="utf-8") as file:
                    text = file.read(MAX_CONFIG_BYTES + 1)  # a pipe or device has no size
                size = max(size, len(text))
        except FileNotFoundError as exc:
            raise ConfigError(f"{path}: no such config file", hint=_nearby(path)) from exc
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{path}: config is not UTF-8 text ({exc.reason})") from exc
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read config: {exc.strerror}") from exc
        if size > MAX_CONFIG_BYTES:
            raise ConfigError(
                f"{path}: config file is {size / 2**20:,.1f} MiB or more; a config may be at "
                f"most {MAX_CONFIG_BYTES // 2**20} MiB",
                hint="is this the right file? Keep large value lists out of the config",
            )
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
                # Constructing a `<<:` merge puts the merged pairs in front of the mapping's
                # own; the last pair with a key is the one whose value was kept.
                for key, value in reversed(node.value):
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


def _unmakeable(root: yaml.Node | None) -> yaml.Node | None:
    """The first scalar the YAML constructor refuses (an impossible date, 0x_)."""
    stack = [root] if root is not None else []
    seen: set[int] = set()
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.ScalarNode):
            try:
                yaml.SafeLoader("").construct_object(node, deep=True)
            except ValueError:
                return node
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(reversed(node.value))
        elif isinstance(node, yaml.MappingNode):
            stack.extend(item for pair in reversed(node.value) for item in reversed(pair))
    return None


def _check_graph(path: Path, root: yaml.Node) -> None:
    """Refuse duplicate keys and aliases that would add more than MAX_ALIAS_VALUES values.

    Each node's expanded size (itself plus its children's) is computed once and remembered;
    meeting a node again means an alias, which adds that size once more.
    """
    sizes: dict[int, int] = {}
    added = 0

    def size(node: yaml.Node) -> int:
        nonlocal added
        sizes[id(node)] = 0  # being sized
        total = 1
        for child in _children(path, node):
            known = sizes.get(id(child))
            if known is None:
                total += size(child)
                continue
            if known == 0:  # still being sized: the alias sits inside its own anchor
                raise ConfigError(
                    f"{path}:{child.start_mark.line + 1}: the value anchored here contains an "
                    "alias to itself, so it never ends",
                    hint="an alias (*name) may only repeat an anchor (&name) from outside it",
                )
            added += known
            total += known
            if added > MAX_ALIAS_VALUES:
                raise ConfigError(
                    f"{path}:{node.start_mark.line + 1}: YAML aliases expand to more than "
                    f"{MAX_ALIAS_VALUES:,} values beyond those written in the file (an alias "
                    "bomb?)",
                    hint="repeat a block with an alias (*name) only a few times; write large "
                    "value lists out, or generate them with a column type",
                )
        sizes[id(node)] = total
        return total

    size(root)


def _children(path: Path, node: yaml.Node) -> Iterator[yaml.Node]:
    """The keys and values of a mapping, refusing a key seen before in it (YAML would keep the
    last silently), or the items of a sequence."""
    if isinstance(node, yaml.SequenceNode):
        yield from node.value
    elif isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key, value in node.value:
            line = key.start_mark.line + 1
            if isinstance(key, yaml.ScalarNode):  # others are refused when constructing
                if key.value in seen:
                    raise ConfigError(
                        f"{path}:{line}: key '{key.value}' appears twice (first on line "
                        f"{seen[key.value]})",
                        hint="keep one of them",
                    )
                seen[key.value] = line
            yield from (key, value)


def _nearby(path: Path) -> str:
    """Where a missing config was looked for, and the configs nearest to it."""
    folder = path.parent if path.parent.is_dir() else Path(".")
    if not folder.resolve().is_relative_to(Path.cwd().resolve()):
        # Not listed: anyone who can start a deployment run could list a worker's folders.
        return f"looked for {path.absolute()}"
    found = sorted(p.name for p in folder.glob("*.y*ml"))[:12]
    listed = ", ".join(found) if found else "none"
    return f"looked for {path.absolute()}; YAML files in {folder.absolute()}: {listed}"
