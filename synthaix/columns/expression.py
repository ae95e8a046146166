"""Text built from earlier columns with a Jinja2 template, e.g. an email from the names.

Rendering a template once per row costs a few µs; for the common shape (text, `{{ column }}`
and string filters such as lower/upper/title/trim/replace) the template is compiled to
vectorised pyarrow string kernels instead. Anything else renders row by row with Jinja2, with
the same result (nulls are empty text in both), and both refuse a value longer than
MAX_RENDERED_CHARS. Row by row, synthaix.columns.sandbox bounds time and memory.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import cached_property
from typing import TYPE_CHECKING, Literal, Self

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field, model_validator

from synthaix.columns.base import (
    MAX_RENDERED_CHARS,
    ROWS_PER_BATCH,
    ChunkContext,
    Column,
    RelationCheck,
)
from synthaix.columns.refs import dotted_name, resolve, row_contexts, template_references
from synthaix.errors import ConfigError
from synthaix.sqlexpr import quote

if TYPE_CHECKING:  # Jinja2 and the sandbox load with the first template (see columns.refs)
    import duckdb
    from jinja2 import nodes

_FILTERS: dict[str, Callable[..., pa.Array]] = {
    "lower": pc.utf8_lower,
    "upper": pc.utf8_upper,
    "title": pc.utf8_title,
    "capitalize": pc.utf8_capitalize,
    "trim": pc.utf8_trim_whitespace,
    "replace": lambda a, old, new: pc.replace_substring(a, old, new),
}
#: Rows the report renders one by one with Jinja2 (~10 µs each) when the template is not
#: vectorised: the first ones, then it says how many it checked.
MAX_RENDERED_ROWS = 200_000
# Arrow prints these types exactly as Python's str() does; others (floats, bools, timestamps)
# differ, so templates over them take the row-by-row path.
_SAME_AS_PYTHON = (pa.types.is_string, pa.types.is_integer, pa.types.is_date32)


class ExpressionColumn(Column):
    """A Jinja2 template over earlier columns: `"{{ first_name|lower }}@example.com"`."""

    type: Literal["expression"] = "expression"
    template: str = Field(description="Jinja2 template; `{{ name }}` inserts an earlier column.")

    @model_validator(mode="after")
    def _check_template(self) -> Self:
        from jinja2 import TemplateSyntaxError

        from synthaix.columns.sandbox import TEMPLATES, RefusedTemplate

        try:
            TEMPLATES.from_string(self.template)  # compiling also finds unknown filters
        except RefusedTemplate as exc:
            raise ValueError(f"template: {exc.message}") from exc
        except TemplateSyntaxError as exc:
            raise ValueError(
                f"template is not valid Jinja2: {exc.message} (line {exc.lineno})"
            ) from exc
        return self

    @cached_property
    def parsed_template(self) -> nodes.Template:
        from synthaix.columns.sandbox import TEMPLATES

        return TEMPLATES.parse(self.template)

    @cached_property
    def referenced_names(self) -> frozenset[str]:
        return frozenset(template_references(self.parsed_template))

    def references(self) -> set[str]:
        return set(self.referenced_names)

    def arrow_type(self) -> pa.DataType:
        return pa.string()

    def capacity(self, earlier: Mapping[str, int | None], locale: str) -> int | None:
        # A template can produce at most one value per combination of the columns it reads.
        total = 1
        for name in {resolve(ref, earlier) or ref for ref in self.references()}:
            size = earlier.get(name)
            if size is None:
                return None
            total *= size
        return total

    def relation_checks(self, locale: str = "en_US") -> list[RelationCheck]:
        relation = f"{self.name} = {self.template}"
        return [RelationCheck(self.name, relation, "", verify=self._verify)]

    def _verify(self, con: duckdb.DuckDBPyConnection) -> tuple[int, str] | None:
        """Each stored value against the template rendered again, by the generator's own
        code, from the row's stored inputs; None when an input is not stored (a siblings list)."""
        columns = {row[0] for row in con.execute("DESCRIBE data").fetchall()}
        names = {resolve(ref, columns) for ref in self.references()}
        if None in names:
            return None
        value = quote(self.name)
        select = ", ".join([value, *(quote(n) for n in sorted(names))])  # type: ignore[arg-type]
        query = f"SELECT {select} FROM data WHERE {value} IS NOT NULL"
        reader = con.sql(query).to_arrow_reader(ROWS_PER_BATCH)
        failed = checked = 0
        example, partial = "", False
        for batch in reader:
            values = {n: batch.column(n) for n in batch.schema.names[1:]}
            rendered = self.vectorised(values, batch.num_rows)
            if rendered is None:
                rows = min(batch.num_rows, MAX_RENDERED_ROWS - checked)
                if rows < batch.num_rows:
                    partial = True
                    batch, values = batch.slice(0, rows), {n: a[:rows] for n, a in values.items()}
                rendered = self.render_rows(values, rows)
            differ = pc.fill_null(pc.not_equal(rendered, batch.column(0)), True)
            count = pc.sum(differ).as_py() or 0
            if count and not example:
                at = pc.index(differ, True).as_py()
                stored, expected = batch.column(0)[at].as_py(), rendered[at].as_py()
                example = f"; e.g. {stored!r} where the template gives {expected!r}"
            failed, checked = failed + count, checked + batch.num_rows
            if partial:
                break
        observed = f"{failed:,} of {checked:,} rows differ{example}"
        reader.close()  # the connection runs one query at a time
        if partial:
            [(total,)] = con.execute(
                f"SELECT count(*) FROM data WHERE {value} IS NOT NULL"
            ).fetchall()
            observed += f" (rendered one by one: the first {checked:,} of {total:,})"
        return failed, observed

    def generate(self, ctx: ChunkContext) -> pa.Array:
        fast = self.vectorised(ctx.values, ctx.rows)
        if fast is not None:
            return fast
        return self.render_rows(ctx.values, ctx.rows)

    def render_rows(self, values: dict[str, pa.Array], rows: int) -> pa.Array:
        from synthaix.columns.sandbox import TEMPLATES, TemplateLimitError, render, template_hint

        template = TEMPLATES.from_string(self.template)
        names = {resolve(ref, values) or ref for ref in self.references()}
        contexts = row_contexts(sorted(names), values, rows, null="") if names else None
        try:
            if contexts is None:
                return pa.array([render(template)] * rows, type=pa.string())
            return pa.array([render(template, row) for row in contexts], type=pa.string())
        except TemplateLimitError as exc:
            raise ConfigError(f"column '{self.name}': {exc}", hint=exc.hint) from exc
        except Exception as exc:  # any Jinja2 runtime error is a problem of the template
            raise ConfigError(
                f"column '{self.name}': template failed on the data: {type(exc).__name__}: {exc}",
                hint=template_hint(exc),
            ) from exc

    def vectorised(self, values: dict[str, pa.Array], length: int) -> pa.Array | None:
        """The template over `length` rows as pyarrow kernels, or None when it goes beyond the
        simple shape."""
        from jinja2 import nodes

        body = self.parsed_template.body
        if len(body) != 1 or not isinstance(body[0], nodes.Output):
            return None
        parts = []
        for node in body[0].nodes:
            part = _compile(node, values)
            if part is None:
                return None
            parts.append(part)
        arrays = [pa.array([p] * length, pa.string()) if isinstance(p, str) else p for p in parts]
        if not arrays:
            return pa.array([""] * length, pa.string())
        if sum(_longest(a) for a in arrays) > MAX_RENDERED_CHARS:
            return None  # the row-by-row path names the bound the first long value passes
        if len(arrays) == 1:
            return arrays[0]
        return pc.binary_join_element_wise(*arrays, "")


def _longest(array: pa.Array) -> int:
    return (pc.max(pc.utf8_length(array)).as_py() or 0) if len(array) else 0


def _compile(node: nodes.Node, values: dict[str, pa.Array]) -> pa.Array | str | None:
    from jinja2 import nodes

    if isinstance(node, nodes.TemplateData):
        return node.data
    name = dotted_name(node)  # a column, or a related table's field (`customers.tier`)
    if name is not None and name in values:
        column = values[name]
        if not any(check(column.type) for check in _SAME_AS_PYTHON):
            return None
        return pc.fill_null(column.cast(pa.string()), "")
    if isinstance(node, nodes.Filter) and node.name in _FILTERS and not node.kwargs and node.node:
        inner = _compile(node.node, values)
        args = [
            a.value for a in node.args if isinstance(a, nodes.Const) and isinstance(a.value, str)
        ]
        if inner is None or isinstance(inner, str) or len(args) != len(node.args):
            return None
        if node.name == "replace" and len(args) == 2 and not _replace_fits(inner, *args):
            return None
        try:
            return _FILTERS[node.name](inner, *args)
        except TypeError:  # wrong number of filter arguments: let Jinja2 report it
            return None
    return None


def _replace_fits(array: pa.Array, old: str, new: str) -> bool:
    """Whether pyarrow can replace `old` by `new` here: not for an empty pattern (pyarrow never
    finishes one; Jinja2 inserts between characters), nor beyond MAX_RENDERED_CHARS (chained
    replaces grow exponentially). The row-by-row path handles both, and refuses the second."""
    if not old:
        return False
    growth = pc.multiply(pc.count_substring(array, old), len(new) - len(old))
    return (pc.max(pc.add(pc.utf8_length(array), growth)).as_py() or 0) <= MAX_RENDERED_CHARS
