"""References to other columns: the names a template reads, the column that satisfies each,
and the per-row values a template renders with.

A table related to others gets their fields as extra columns under dotted names, one value
per row (`customers.tier`); a template reads them as attributes, `{{ customers.tier }}`. A
dotted name may also be an attribute of a plain column (`{{ signup_date.year }}`).
"""

from __future__ import annotations

import difflib
from collections.abc import Collection, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from synthaix.errors import ConfigError

# Jinja2 is imported by the functions that read a template: `validate` and `preview` of a config
# without templates do without its ~30 ms.
if TYPE_CHECKING:
    from jinja2 import nodes


def dotted_name(node: nodes.Node) -> str | None:
    """`a`, `a.b` or `a['b']` (and longer chains of both) as a dotted name; else None."""
    from jinja2 import nodes

    parts: list[str] = []
    while True:
        if isinstance(node, nodes.Getattr):
            parts.append(node.attr)
        elif (
            isinstance(node, nodes.Getitem)
            and isinstance(node.arg, nodes.Const)
            and isinstance(node.arg.value, str)
            and "." not in node.arg.value  # `a['x.y']` is no field of a field
        ):
            parts.append(node.arg.value)
        elif isinstance(node, nodes.Name) and node.ctx == "load":
            return ".".join([node.name, *reversed(parts)])
        else:
            return None
        node = node.node


def template_references(parsed: nodes.Template) -> set[str]:
    """The names the template reads from its context: each undeclared name, or, where it is
    only read through attributes or string keys, the dotted names it reads (`customers.tier`).
    A method call reads its object: `name.upper()` reads `name`."""
    from jinja2 import meta, nodes

    undeclared = meta.find_undeclared_variables(parsed)
    found: set[str] = set()
    heads: set[str] = set()

    def visit(node: nodes.Node) -> None:
        name = dotted_name(node)
        if name is not None:
            head = name.partition(".")[0]
            if head in undeclared:  # else a loop variable, a `set` name, a macro argument
                found.add(name)
                heads.add(head)
            return
        children = list(node.iter_child_nodes())
        if isinstance(node, nodes.Call) and isinstance(node.node, nodes.Getattr):
            children = [node.node.node if c is node.node else c for c in children]
        for child in children:
            visit(child)

    visit(parsed)
    # Names read some way the walk does not follow keep today's meaning: the whole name.
    return found | (undeclared - heads)


def loop_fields(parsed: nodes.Template) -> set[tuple[str, str]]:
    """(list, field) for each `{% for o in list %}...{{ o.field }}` and `{{ list[0].field }}`
    of the template: the fields it reads of a list's items (a siblings list's rows hold only
    the fields listed)."""
    from jinja2 import nodes

    found: set[tuple[str, str]] = set()
    called = {id(n.node) for n in parsed.find_all(nodes.Call)}
    for node in parsed.find_all((nodes.Getattr, nodes.Getitem)):
        item = node.node  # `list[0]` of `list[0].field`
        if id(node) in called or not isinstance(item, nodes.Getitem):
            continue
        field_ = node.attr if isinstance(node, nodes.Getattr) else getattr(node.arg, "value", None)
        indexed = isinstance(item.arg, nodes.Const) and isinstance(item.arg.value, int)
        if isinstance(item.node, nodes.Name) and indexed and isinstance(field_, str):
            found.add((item.node.name, field_))
    for loop in parsed.find_all(nodes.For):
        if not (isinstance(loop.iter, nodes.Name) and isinstance(loop.target, nodes.Name)):
            continue
        target = loop.target.name
        for body in loop.body:
            for node in body.find_all((nodes.Getattr, nodes.Getitem)):
                if id(node) in called:  # a method (`o.get('total', 0)`), not a field
                    continue
                name = dotted_name(node)
                head, _, rest = (name or "").partition(".")
                if head == target and rest:
                    found.add((loop.iter.name, rest.partition(".")[0]))
    return found


def resolve(ref: str, available: Collection[str]) -> str | None:
    """The available column that satisfies `ref`: itself, else the longest available head of
    a dotted name (`signup_date.year` is an attribute of `signup_date`); None if there is none."""
    name = ref
    while True:
        if name in available:
            return name
        if "." not in name:
            return None
        name = name.rpartition(".")[0]


def row_contexts(
    names: Iterable[str], values: Mapping[str, pa.Array], rows: int, *, null: Any = None
) -> list[dict[str, Any]]:
    """One rendering context per row from the arrays `names` (keys of `values`): a plain name
    stays flat, a dotted one nests (`customers.tier` is `ctx["customers"]["tier"]`). Nulls
    become `null`."""
    tree: dict[str, Any] = {}
    for name in names:
        *path, leaf = name.split(".")
        node = tree
        for part in path:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                break
        if not isinstance(node, dict) or leaf in node:
            # A column `customers` and a related `customers.tier`: `customers` is one of them.
            raise ConfigError(f"'{name}' clashes with another column's name; rename one")
        node[leaf] = name
    return _contexts(tree, values, rows, null)


def _contexts(
    tree: dict[str, Any], values: Mapping[str, pa.Array], rows: int, null: Any
) -> list[dict[str, Any]]:
    # Filled one column at a time: twice as fast as dict(zip(keys, row)) per row.
    out: list[dict[str, Any]] = [{} for _ in range(rows)]
    for key, sub in tree.items():
        if isinstance(sub, str):
            column = values[sub].to_pylist()
            if null is not None:
                column = [null if v is None else v for v in column]
        else:
            column = _contexts(sub, values, rows, null)
        for context, value in zip(out, column, strict=True):
            context[key] = value
    return out


def not_a_column(ref: str) -> str:
    """Why a field that names a column cannot name this: an attribute of a column, or a list
    of related rows, which templates alone read."""
    return f"'{ref}' is not a column (templates alone read a column's attributes or lists of rows)"


def did_you_mean(name: str, names: Iterable[str]) -> str:
    """`; did you mean 'age'?` for a misspelt column name, or nothing."""
    close = difflib.get_close_matches(name, list(names), n=1)
    return f"; did you mean '{close[0]}'?" if close else ""


def table_hint(table: str, names: list[str]) -> str:
    """The hint for an unknown --table: the closest of `names`, or to pick one."""
    close = difflib.get_close_matches(table, names, n=1)
    return f"did you mean --table {close[0]}?" if close else "pass one of them to --table"
