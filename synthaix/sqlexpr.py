"""DuckDB scalar expressions from configs: checked with DuckDB's own parser, run locked down.

A config may come from the Prefect UI or from `translate`, so an expression is untrusted. It
is parsed by DuckDB (`json_serialize_sql`), and accepted only if the parse is one SELECT of
one expression with no FROM, and every node is a constant, a column of the row, an operator,
CASE, CAST or a deterministic scalar function: no subqueries (so no `read_text`, `read_csv`
or other table functions), no aggregates or windows (their value would depend on how rows
fall into chunks), nothing volatile (`random()`, `now()`), no statements (`ATTACH`, `COPY`,
`INSTALL`, `SET`). What runs is DuckDB's own re-rendering of the checked parse
(`json_deserialize_sql`), never the text as written, so a comment or a stray parenthesis
cannot smuggle anything past the check. And it runs on a connection with external access
disabled and its configuration locked, in case the check ever misses something.

A column of a related table is read as `customers.tier`: the data given to run the expression
has a column of that name, dot included, so the parse's two-part reference is rewritten to that
one name (`"customers.tier"`) before DuckDB renders it. `checked_aggregate` also accepts
aggregates from a short list, over a whole table or its groups (`aggregate_by`): a parent's
value computed from its child rows once they exist.
"""

from __future__ import annotations

import json
import re
import threading
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import pyarrow as pa

if TYPE_CHECKING:
    import duckdb

_NODES = {"CONSTANT", "COLUMN_REF", "FUNCTION", "OPERATOR", "CASE", "CAST", "COMPARISON"}
_NODES |= {"CONJUNCTION", "BETWEEN", "COLLATE", "TYPE"}  # TYPE: the target of a CAST
# Functions by name, not "every deterministic scalar function": DuckDB has ~1,700, new ones come
# with upgrades, and some plan other SQL (`json_serialize_plan` ran `current_setting` inside an
# expression) or make values of any size (`repeat`, `lpad`, `range`, `list_resize`). These take
# and make row values: arithmetic, text, regular expressions, dates and times.
_FUNCTIONS = frozenset(
    """
    + - * / // % ^ ** || ~~ !~~ ~~* !~~* ~~~ !~~~
    abs ceil ceiling floor round round_even trunc sign sqrt cbrt exp ln log log10 log2 pow power
    pi degrees radians sin cos tan asin acos atan atan2 isnan isinf isfinite even gcd lcm
    greatest least nullif if ifnull
    lower upper lcase ucase length strlen char_length character_length substring substr left
    right trim ltrim rtrim concat concat_ws replace position strpos instr starts_with
    ends_with contains prefix suffix reverse strip_accents split_part ascii chr md5 sha256
    hash levenshtein jaro_winkler_similarity nfc_normalize like_escape ilike_escape
    regexp_matches regexp_full_match regexp_replace regexp_extract
    date_add date_sub date_diff datediff datesub date_part datepart date_trunc datetrunc
    year month day hour minute second millisecond microsecond dayofweek dayofmonth dayofyear
    weekday week weekofyear yearweek quarter isodow isoyear last_day dayname monthname
    make_date make_time make_timestamp strftime strptime try_strptime epoch epoch_ms epoch_us
    to_timestamp time_bucket century decade millennium era julian
    to_days to_hours to_minutes to_seconds to_months to_years to_weeks to_milliseconds
    to_microseconds
    """.split()  # noqa: SIM905 (a word list reads better than 150 quoted strings)
)
# For `checked_aggregate` only. `count(*)` parses as count_star.
_AGGREGATES = frozenset(
    """
    sum avg mean min max count count_star median stddev_samp stddev string_agg bool_and bool_or
    any_value arg_min arg_max list
    """.split()  # noqa: SIM905
)
#: Expressions are short; a cap also bounds how much a text function can multiply its input.
MAX_EXPRESSION_CHARS = 2_000
# `as:` types: a name DuckDB knows, never free SQL.
_TYPE = re.compile(
    r"(?i)(decimal|numeric)\s*\(\s*\d{1,2}\s*,\s*\d{1,2}\s*\)|date|time|timestamp|boolean|bool|"
    r"tinyint|smallint|integer|int|bigint|hugeint|double|float|real|text|varchar|string"
)
_local = threading.local()


class ExpressionError(ValueError):
    """An expression DuckDB cannot parse or that is not a safe scalar expression."""


def connection() -> duckdb.DuckDBPyConnection:
    """This thread's locked-down in-memory DuckDB (a connection is not safe across threads)."""
    con = getattr(_local, "con", None)
    if con is None:
        import duckdb

        con = duckdb.connect(
            config={
                "enable_external_access": False,
                "autoinstall_known_extensions": False,
                "autoload_known_extensions": False,
                "threads": 1,  # chunks already run in parallel
                "memory_limit": "2GB",
            }
        )
        # Timestamptz values and casts: the same data on any machine. GLOBAL: the cursors the
        # expressions run on are sessions of their own (a session's SET left them in the
        # machine's zone, and a column's Parquet type read tz=Europe/Berlin there).
        con.execute("SET GLOBAL TimeZone = 'UTC'")
        con.execute("SET lock_configuration = true")
        _local.con = con
    return con


@lru_cache(maxsize=4096)
def checked(expr: str) -> tuple[str, frozenset[str]]:
    """(the expression as DuckDB renders it, the columns it reads), or ExpressionError (a
    ValueError, so a pydantic validator may let it through as the field's error)."""
    try:
        return _checked(expr, aggregates=False)
    except ExpressionError as exc:
        raise ExpressionError(f"not a scalar DuckDB expression over the row: {exc}") from None


@lru_cache(maxsize=1024)
def checked_aggregate(expr: str) -> tuple[str, frozenset[str]]:
    """As `checked`, for one value over many rows, e.g. `round(sum(qty * unit_price), 2)`: what
    `checked` accepts, plus the aggregates listed in `_AGGREGATES` (with DISTINCT, ORDER BY or
    FILTER); every column is read inside an aggregate, and no aggregate inside another."""
    try:
        return _checked(expr, aggregates=True)
    except ExpressionError as exc:
        raise ExpressionError(f"not an aggregate DuckDB expression over the rows: {exc}") from None


def _checked(expr: str, *, aggregates: bool) -> tuple[str, frozenset[str]]:
    import duckdb

    if len(expr) > MAX_EXPRESSION_CHARS:
        raise ExpressionError(f"it is {len(expr):,} characters; at most {MAX_EXPRESSION_CHARS:,}")
    try:
        parsed = json.loads(
            connection()
            .execute("SELECT json_serialize_sql(?)", [f"SELECT {expr}"])
            .fetchall()[0][0]
        )
    except duckdb.Error as exc:  # pragma: no cover - json_serialize_sql reports errors inline
        raise ExpressionError(str(exc)) from None
    if parsed.get("error"):
        message = _first_line(parsed.get("error_message", "cannot parse it"))
        raise ExpressionError(message + _keyword_hint(expr))
    statements = parsed["statements"]
    node = statements[0]["node"] if len(statements) == 1 else {}
    if (
        node.get("type") != "SELECT_NODE"
        or len(node.get("select_list", [])) != 1
        or node.get("from_table", {}).get("type") != "EMPTY"
        or any(node.get(k) for k in ("where_clause", "group_expressions", "having", "qualify"))
        or node.get("modifiers")
        or node.get("cte_map", {}).get("map")
    ):
        what = (
            "aggregate expression over the rows'"
            if aggregates
            else "scalar expression over the row's"
        )
        raise ExpressionError(f"write one {what} columns (no FROM, WHERE, ';' or clauses)")
    columns: set[str] = set()
    _walk(node["select_list"][0], columns, aggregates=aggregates)
    if node["select_list"][0].get("alias"):
        raise ExpressionError("leave out the alias (AS ...): the column's name is its alias")
    rendered = connection().execute("SELECT json_deserialize_sql(?)", [json.dumps(parsed)])
    return rendered.fetchall()[0][0].removeprefix("SELECT "), frozenset(columns)


# As the sampler columns make them: `integer` is 64-bit, `float` double precision.
_SAME_AS_SAMPLERS = {"integer": "BIGINT", "int": "BIGINT", "float": "DOUBLE", "real": "DOUBLE"}
_TYPES = "integer, bigint, double, decimal(p,s), boolean, date, timestamp, text"


def sql_type(name: str) -> str:
    if not _TYPE.fullmatch(name.strip()):
        raise ExpressionError(f"'{name}' is not a type SynthAIx accepts; use one of {_TYPES}")
    return _SAME_AS_SAMPLERS.get(name.strip().lower(), name.strip())


def check_result_type(kind: pa.DataType) -> None:
    """Refuse what Parquet, the report and the other columns do not handle as a value."""
    plain = (pa.types.is_boolean, pa.types.is_integer, pa.types.is_floating, pa.types.is_decimal)
    plain += (pa.types.is_string, pa.types.is_large_string, pa.types.is_date)
    if not any(test(kind) for test in (*plain, pa.types.is_timestamp)):
        raise ExpressionError(f"it gives {kind}; cast it (as: ...) to one of {_TYPES}")


def bind(expr: str, schema: pa.Schema, cast: str | None = None) -> pa.DataType:
    """The Arrow type `expr` has over rows of `schema`; DuckDB's binder errors (a wrong
    column, a type mismatch) become ExpressionError."""
    import duckdb

    term = f"CAST(({expr}) AS {cast})" if cast else f"({expr})"
    cursor = connection().cursor()
    try:
        if not len(schema):  # DuckDB needs a column to scan; the expression reads none
            schema = pa.schema([("__synthaix_row", pa.null())])
        cursor.register("data", schema.empty_table())
        return cursor.sql(f"SELECT {term} AS v FROM data").to_arrow_table().schema.field("v").type
    except duckdb.Error as exc:
        raise ExpressionError(_first_line(str(exc))) from None
    finally:
        cursor.close()


def evaluate(terms: list[str], table: pa.Table) -> pa.Table:
    """Each term evaluated over every row of `table` (columns v0, v1, ...), in one query."""
    cursor = connection().cursor()
    try:
        cursor.register("data", table)
        select = ", ".join(f"{term} AS v{i}" for i, term in enumerate(terms))
        return cursor.sql(f"SELECT {select} FROM data").to_arrow_table()
    finally:
        cursor.close()


def aggregate_by(table: pa.Table, key: str, expr: str) -> pa.Table:
    """The aggregate `expr` over the rows of `table` that share each value of `key`: columns
    `key` and `value`, one row per key, ordered by key."""
    import duckdb

    term = checked_aggregate(expr)[0]
    cursor = connection().cursor()
    try:
        cursor.register("data", table)
        by = quote(key)
        sql = f"SELECT {by} AS key, {term} AS value FROM data GROUP BY {by} ORDER BY key"
        return cursor.sql(sql).to_arrow_table()
    except duckdb.Error as exc:
        raise ExpressionError(_first_line(str(exc))) from None
    finally:
        cursor.close()


def quote(name: str) -> str:
    """`name` as a DuckDB identifier: `customers.tier` is one column, `"customers.tier"`."""
    return '"' + name.replace('"', '""') + '"'


def failing_row(term: str, table: pa.Table) -> tuple[int, str]:
    """The first row on which `term` raises, and DuckDB's message: a binary search over
    slices, so only a failed chunk pays for it."""
    import duckdb

    lo, hi, message = 0, table.num_rows, ""
    while hi - lo > 1:
        mid = (lo + hi) // 2
        try:
            evaluate([term], table.slice(lo, mid - lo))
            lo = mid
        except duckdb.Error as exc:
            hi, message = mid, str(exc)
    if not message:
        try:
            evaluate([term], table.slice(lo, 1))
        except duckdb.Error as exc:
            message = str(exc)
    return lo, _first_line(message)


def _walk(node: Any, columns: set[str], *, aggregates: bool, inside: bool = False) -> None:
    """Check every node, collect the columns read and make each a single name. `aggregates`:
    aggregates are allowed; `inside`: this node is within one."""
    if isinstance(node, list):
        for item in node:
            _walk(item, columns, aggregates=aggregates, inside=inside)
        return
    if not isinstance(node, dict):
        return
    kind = node.get("class")
    if kind is not None:
        if kind not in _NODES:
            what = {"SUBQUERY": "a subquery", "WINDOW": "a window function", "STAR": "*"}
            raise ExpressionError(f"{what.get(kind, kind.lower())} is not allowed here")
        if kind == "COLUMN_REF":
            name = _column(node)
            if aggregates and not inside:  # it would need a GROUP BY
                raise ExpressionError(
                    f"reads {name} outside an aggregate: wrap it in one, e.g. sum({name}), "
                    f"max({name}) or any_value({name})"
                )
            columns.add(name)
        if kind == "FUNCTION":
            name = node["function_name"].lower()
            if aggregates and name in _AGGREGATES:
                if inside:
                    raise ExpressionError(f"{name}() inside another aggregate: they cannot nest")
                _check_qualifiers(node)
                inside = True
            else:
                _check_function(node, aggregates=aggregates)
    for key, value in node.items():
        if key not in ("class", "type") and isinstance(value, dict | list):
            _walk(value, columns, aggregates=aggregates, inside=inside)


def _column(node: dict[str, Any]) -> str:
    """`t.c` and `"t.c"` both read the column named `t.c`: the parse is rewritten to that name."""
    parts = ".".join(node["column_names"]).split(".")
    if len(parts) > 2 or not all(parts):
        raise ExpressionError(f"reads {'.'.join(parts)}: write table.column")
    node["column_names"] = [".".join(parts)]
    return node["column_names"][0]


def _check_qualifiers(node: dict[str, Any]) -> None:
    name = node["function_name"].lower()
    if node.get("schema") or node.get("catalog"):
        raise ExpressionError(f"call {name} without a schema or catalog")
    if node.get("export_state"):
        raise ExpressionError(f"{name}(...) EXPORT_STATE is not allowed")


def _check_function(node: dict[str, Any], *, aggregates: bool) -> None:
    name = node["function_name"].lower()
    _check_qualifiers(node)
    if node.get("filter") or node.get("distinct") or node.get("order_bys", {}).get("orders"):
        raise ExpressionError(f"{name}(...) with FILTER, DISTINCT or ORDER BY is an aggregate")
    if name not in _FUNCTIONS:
        listed = f"the aggregates {', '.join(sorted(_AGGREGATES))} and " if aggregates else ""
        raise ExpressionError(
            f"function {name}() is not allowed: only {listed}arithmetic, text, "
            "regular-expression, date and time functions of the row's values are (see the "
            "README's list)"
        )


_QUOTED = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"")  # text, and quoted names


def _keyword_hint(expr: str) -> str:
    """Why an expression may not parse: a column named like an SQL keyword (`order`, `left`,
    `at`...) reads as syntax. Named only when double-quoting it makes the expression parse."""
    rows = connection().execute(
        "SELECT keyword_name FROM duckdb_keywords() WHERE keyword_category <> 'unreserved'"
    )
    keywords = {name for (name,) in rows.fetchall()}
    bare = _QUOTED.sub(" ", expr)
    words = re.findall(r"\b([A-Za-z_][A-Za-z0-9_]*)\b(?!\s*\()", bare)  # not a function call
    candidates = sorted({w for w in words if w.lower() in keywords})
    found = [w for w in candidates if _parses(_quoting(expr, [w]))]
    if not found and len(candidates) > 1 and _parses(_quoting(expr, candidates)):
        found = candidates
    if not found:
        return ""
    quoted = ", ".join(f'"{w}"' for w in found)
    return f" ({', '.join(found)}: an SQL keyword; write {quoted}, in double quotes, for a column)"


def _quoting(expr: str, words: list[str]) -> str:
    """`expr` with each bare `words` (outside quotes, not called) double-quoted."""
    pattern = re.compile(rf"\b({'|'.join(map(re.escape, words))})\b(?!\s*\()")
    pieces, at = [], 0
    for quoted in _QUOTED.finditer(expr):
        pieces += [pattern.sub(r'"\1"', expr[at : quoted.start()]), quoted.group()]
        at = quoted.end()
    return "".join([*pieces, pattern.sub(r'"\1"', expr[at:])])


def _parses(expr: str) -> bool:
    """As one value: in parentheses, so a quoted last word cannot pass as an alias."""
    sql = f"SELECT ({expr}\n)"  # the newline ends a -- comment the expression may end with
    text = connection().execute("SELECT json_serialize_sql(?)", [sql]).fetchall()[0][0]
    return not json.loads(text).get("error")


# DuckDB's own advice that the expression sandbox refuses (a SET statement): left out.
_SETTING_ADVICE = re.compile(r",? or SET \w+\s*=\s*\w+ to [^.]*\.")


def _first_line(message: str) -> str:
    line = message.strip().splitlines()[0] if message.strip() else message
    return _SETTING_ADVICE.sub(".", line)
