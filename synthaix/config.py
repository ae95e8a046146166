"""The dataset config: typed models of the YAML file, validated once, at the edge."""

from __future__ import annotations

import copy
import datetime as dt
import difflib
import re
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, Self

import pyarrow as pa
from pydantic import (
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_serializer,
    field_validator,
    model_validator,
)

from synthaix import constraints
from synthaix.asof import settle
from synthaix.columns import REGISTRY, ColumnSpec, StrictModel
from synthaix.columns.base import IDENTIFIER, Column
from synthaix.columns.conditional import Conditional
from synthaix.columns.people import check_locale
from synthaix.columns.reference import TARGET
from synthaix.columns.refs import did_you_mean, resolve
from synthaix.constraints import Constraint, as_constraint
from synthaix.dedupe.settings import DedupeConfig
from synthaix.errors import ConfigError
from synthaix.llm.provider import ProviderConfig
from synthaix.ownership import not_root_or_home
from synthaix.sqlexpr import checked
from synthaix.yaml_source import YamlDocument


class OutputConfig(StrictModel):
    """Where and how the dataset is written."""

    dir: Path | None = Field(
        default=None, description="Output directory (default: out/<name>), relative to the CWD."
    )
    formats: list[Literal["parquet", "duckdb"]] = Field(
        default=["parquet", "duckdb"], min_length=1, description="Which outputs to write."
    )
    duckdb: Path | None = Field(
        default=None, description="DuckDB database file (default: <dir>/<name>.duckdb)."
    )
    table: str | None = Field(
        default=None, pattern=IDENTIFIER, description="DuckDB table name (default: <name>)."
    )
    foreign_keys: bool = Field(
        default=True,
        description="Multi-table datasets: declare FOREIGN KEY constraints in DuckDB (DuckDB "
        "checks every row on load, ~3 s per million child rows; off: keys still hold, and the "
        "report still checks them).",
    )

    @field_validator("dir")
    @classmethod
    def _not_root_or_home(cls, folder: Path | None) -> Path | None:
        return not_root_or_home(folder, "out/<name>")


class RunnerConfig(StrictModel):
    """How chunk tasks are executed, limited and resumed."""

    type: Literal["thread", "dask", "ray"] = Field(
        default="thread",
        description="Task runner for chunk tasks: a local thread pool, a Dask cluster "
        "(pip install 'synthaix[dask]') or a Ray cluster ('synthaix[ray]').",
    )
    workers: int = Field(default=4, ge=1, le=256, description="Chunk tasks running at once.")
    address: str | None = Field(
        default=None,
        description="Scheduler address of an existing cluster (dask: tcp://host:8786, ray: "
        "ray://host:10001). Default: a local cluster of `workers` processes.",
    )
    llm_limit: str | None = Field(
        default="auto",
        description="Prefect global concurrency limit that every LLM request holds a slot of, "
        "shared by all workers and flow runs on one Prefect server; created if missing, with "
        "provider.max_concurrency slots (and '<name>-rpm' with provider.rpm). 'auto': "
        "'synthaix-llm' when chunks run in other processes (dask, ray), none for threads, "
        "where the client's own limits already hold (each shared slot costs ~0.1-1 s of API "
        "calls on the local SQLite server). null: never.",
    )
    retries: int = Field(
        default=3, ge=0, le=20, description="Retries of a chunk task that failed transiently."
    )
    retry_backoff: float = Field(
        default=2.0,
        ge=0,
        description="Seconds before the first chunk retry; doubled for each next one, +-50 %.",
    )
    resume: bool = Field(
        default=True,
        description="Keep finished chunks of builds with llm columns in <output dir>/.ledger "
        "until the build is published, so a crashed or killed build restarts where it stopped.",
    )


Seed = Annotated[int, Field(ge=0)] | Literal["as_of"]
SEED = (
    "Same config + seed gives the same data. `as_of`: a seed derived from the build's as_of "
    "time, so scheduled builds differ from run to run yet are the same for the same time."
)
AS_OF = (
    "The time the data stands at, UTC: relative times (now, -1h, today-7d) resolve against "
    "it. Default: the flow run's scheduled start, or the time the build starts; recorded "
    "only when the config uses it."
)


class OutputPaths:
    """Where a dataset's outputs go (a single-table or a multi-table config)."""

    name: str
    output: OutputConfig

    @property
    def output_dir(self) -> Path:
        folder = self.output.dir
        return folder.expanduser() if folder is not None else Path("out") / self.name

    @property
    def duckdb_path(self) -> Path:
        path = self.output.duckdb
        return path.expanduser() if path is not None else self.output_dir / f"{self.name}.duckdb"

    def with_overrides(self, origin: str = "options", **values: Any) -> Any:
        """A re-validated copy with typed overrides (rows, seed, out, workers, model, as_of...;
        None: the config's value), as synthaix.overrides.apply_overrides."""
        from synthaix.overrides import apply_overrides, typed

        return apply_overrides(self, typed(values), origin)


class DatasetConfig(OutputPaths, StrictModel):
    """A dataset to build: its columns, size, seed and outputs."""

    name: str = Field(pattern=IDENTIFIER, description="Dataset name; also the default table name.")
    description: str | None = Field(
        default=None, description="What the dataset is, in plain words."
    )
    rows: int = Field(gt=0, le=10_000_000_000, description="Exact number of rows to deliver.")
    seed: Seed = Field(default=0, description=SEED)
    as_of: dt.datetime | None = Field(default=None, description=AS_OF)
    chunk_size: int = Field(
        default=10_000, gt=0, le=10_000_000, description="Rows generated per chunk task."
    )
    locale: str = Field(
        default="en_US", description="Default Faker locale for person/address data."
    )
    mode: Literal["overwrite", "append"] = Field(
        default="overwrite",
        description="overwrite replaces the previous output atomically; append adds rows to it.",
    )
    columns: list[ColumnSpec] = Field(min_length=1, description="The columns, in order.")
    output: OutputConfig = Field(default_factory=OutputConfig, description="Where to write.")
    runner: RunnerConfig = Field(default_factory=RunnerConfig, description="How to run chunks.")
    provider: ProviderConfig = Field(
        default_factory=ProviderConfig, description="The LLM endpoint, for `llm` columns."
    )
    dedupe: DedupeConfig = Field(
        default_factory=DedupeConfig, description="Exact and near-duplicate removal."
    )
    constraints: list[Constraint] = Field(
        default_factory=list,
        description="Rules every row satisfies, as DuckDB boolean expressions over its columns "
        "(a string, or {name, check}); rows that break one are replaced.",
    )
    _related: dict[str, ColumnSpec] = PrivateAttr(default_factory=dict)
    _names: set[str] = PrivateAttr(default_factory=set)
    _late_related: set[str] = PrivateAttr(default_factory=set)  # filled after their tables
    _children: set[str] = PrivateAttr(default_factory=set)  # child tables, in a dataset
    _in_tables: bool = PrivateAttr(default=False)
    # A deployment run's slot (its as_of or scheduled start): an append of a slot that
    # published already appends nothing again (synthaix.build.manifest.slot_of).
    _slot: dt.datetime | None = PrivateAttr(default=None)
    _relations: Any = PrivateAttr(default=None)  # synthaix.relational's, for a table's chunks
    _seed_as_of: bool = PrivateAttr(default=False)

    @field_serializer("seed")
    def _seed_as_written(self, seed: int) -> int | str:
        return "as_of" if self._seed_as_of else seed

    @field_validator("constraints", mode="before")
    @classmethod
    def _plain_constraints(cls, items: Any) -> Any:
        return [as_constraint(item) for item in items] if isinstance(items, list) else items

    @field_validator("locale")
    @classmethod
    def _check_locale(cls, locale: str) -> str:
        check_locale(locale)
        return locale

    @model_validator(mode="after")
    def _check_columns(self, info: ValidationInfo) -> Self:
        # A table of a multi-table dataset also reads related rows' fields, as `alias.field`
        # (Columns, named so), and lists of sibling rows (names only).
        context = info.context or {}
        self._related = dict(context.get("related", {}))
        self._in_tables = "related" in context  # a table of a multi-table dataset
        self._names = set(context.get("names", ()))
        self._late_related = set(context.get("late", ()))
        self._children = set(context.get("children", ()))
        _key_is_unique(self)
        if context.get("names_only"):  # see _hidden_name_problems
            problems: list[Any] = [*_name_problems(self), *_capacity_problems(self)]
        else:
            columns = [(("columns", i), c) for i, c in enumerate(self.columns)]
            problems = settle(self, columns) or list(_column_problems(self))
        if problems:
            raise CrossFieldError(problems)
        return self

    @property
    def table(self) -> str:
        return self.output.table or self.name


def _key_is_unique(config: DatasetConfig) -> None:
    """A primary key holds each value once: one column of it is `unique` (a multi-table
    publish failed on DuckDB's PRIMARY KEY, a single table ignored it); several columns are
    the exact-dedupe key, unless dedupe.key names another."""
    keys = [c for c in config.columns if c.primary_key]
    if len(keys) == 1 and not keys[0].unique:
        object.__setattr__(keys[0], "unique", True)  # columns are frozen: set once, here
        keys[0].__pydantic_fields_set__.add("unique")
    elif len(keys) > 1 and _content_key(config, keys) and not config._in_tables:
        key = [c.name for c in keys]  # a table's own: synthaix.relational.config._dedupe
        dedupe = config.dedupe.model_copy(update={"key": key, "exact": True})
        object.__setattr__(config, "dedupe", dedupe)
        config.__pydantic_fields_set__.add("dedupe")


def _content_key(config: DatasetConfig, keys: list[Column]) -> bool:
    """Whether a composite primary key becomes the exact-dedupe key: not when the config set
    one or turned the check off, nor when a sequence or uuid makes every key distinct."""
    dedupe = config.dedupe
    if dedupe.key is not None or ("exact" in dedupe.model_fields_set and not dedupe.exact):
        return False
    return not any(c.type in ("sequence", "uuid") for c in keys)  # type: ignore[attr-defined]


class CrossFieldError(ValueError):
    """Problems that involve several columns, each with its own location."""

    def __init__(self, problems: list[tuple[tuple[str | int, ...], str]]) -> None:
        super().__init__("; ".join(message for _, message in problems))
        self.problems = problems


def _dedupe_problems(config: DatasetConfig):
    types = {c.name: c.arrow_type() for c in config.columns}
    for field_ in ("key", "text"):
        for i, name in enumerate(getattr(config.dedupe, field_) or []):
            where = ("dedupe", field_, i)
            if name not in types:
                guess = did_you_mean(name, types)
                yield where, f"'{name}' is not a column{guess} (columns: {', '.join(types)})"
            elif field_ == "text" and not pa.types.is_string(types[name]):
                yield where, f"'{name}' is not a text column; near-duplicate search embeds text"
    keys = [c for c in config.columns if c.primary_key]
    names = [c.name for c in keys]
    key, exact = config.dedupe.key, config.dedupe.exact
    held = len(keys) < 2 or any(c.type in ("sequence", "uuid") for c in keys)  # type: ignore[attr-defined]
    if not (held or config._in_tables or (exact and set(key or names) <= set(names))):
        yield (
            ("dedupe",),
            f"the primary key ({', '.join(names)}) holds only when the exact dedupe compares "
            f"rows by it (or by some of its columns); with {_dedupe_said(config)} two rows "
            f"could share it: set dedupe.key to [{', '.join(names)}], or drop primary_key",
        )


def _dedupe_said(config: DatasetConfig) -> str:
    if not config.dedupe.exact:
        return "dedupe.exact: false"
    return f"dedupe.key [{', '.join(config.dedupe.key or [])}]"


def _column_problems(config: DatasetConfig):
    if not config._in_tables:
        for index, column in enumerate(config.columns):
            if column.type in ("reference", "aggregate"):  # type: ignore[attr-defined]
                yield (
                    ("columns", index, "type"),
                    (
                        f"{column.type} columns join tables: list the tables under `tables:` "  # type: ignore[attr-defined]
                        "(see docs/related-tables.md)"
                    ),
                )
                return
    # The columns first: a sql column's type is what DuckDB binds its expression to.
    problems = list(_each_column_problems(config))
    problems += _dedupe_problems(config)
    yield from problems
    if not problems:  # constraints bind over the columns' types, and sample their values
        yield from constraints.problems(config)
    else:  # their names need no types: said now, not after the columns are fixed
        yield from constraints.unknown_columns(config)


def _numbered_message(name: str) -> str:
    return (
        f"reads '{name}', whose repeats get a number after the row is made (unique with "
        "from): it would see the value before numbering; drop unique there, or do not read it"
    )


class _Capacities(Mapping[str, int | None]):
    """How many distinct values each column so far can take, found when asked: for a unique
    column, or one derived from it. Counting a locale's name lists loads Faker (65 ms of
    `validate`), which configs without unique names need not pay."""

    def __init__(self, locale: str) -> None:
        self._locale = locale
        self._columns: dict[str, Column] = {}
        self._found: dict[str, int | None] = {}

    def add(self, column: Column) -> None:
        self._columns[column.name] = column

    def __getitem__(self, name: str) -> int | None:
        if name not in self._found:
            self._found[name] = self._columns[name].capacity(self, self._locale)
        return self._found[name]

    def __contains__(self, name: object) -> bool:
        return name in self._columns  # Mapping's would find the capacity

    def __iter__(self) -> Iterator[str]:
        return iter(self._columns)

    def __len__(self) -> int:
        return len(self._columns)


def _each_column_problems(config: DatasetConfig):
    numbered = {c.name for c in config.columns if getattr(c, "repairs_duplicates", False)}
    late = {c.name for c in config.columns if c.is_late}
    for index, constraint in enumerate(config.constraints):
        for name in sorted(set(checked(constraint.check)[1]) & numbered):
            yield ("constraints", index), _numbered_message(name)
        for name in sorted(set(checked(constraint.check)[1]) & late):
            yield (
                ("constraints", index),
                (
                    f"reads '{name}', which is filled after the table is built (an aggregate or a "
                    "self reference): rows are checked before that; check it with the report"
                ),
            )
    seen: dict[str, int] = {name: -1 for name in [*config._related, *config._names]}
    late_names = {c.name for c in config.columns if c.is_late}
    for index, column in enumerate(config.columns):
        where = ("columns", index)
        if column.name in seen:
            yield (*where, "name"), f"duplicate column name '{column.name}'"
        for ref in sorted(column.references()):
            found = resolve(ref, seen)  # `signup_date.year` reads signup_date
            if (found or ref) in numbered:
                yield where, _numbered_message(found or ref)
            if found is None and resolve(ref, config._late_related) is not None:
                continue  # said below, as for the table's own late columns
            if found is None:
                yield where, _unknown_reference(config, index, ref, seen)
        late = [
            r
            for r in column.references()
            if resolve(r, seen) in late_names or resolve(r, config._late_related) is not None
        ]
        for ref in sorted(late):
            yield (
                where,
                (
                    f"reads '{ref}', which is filled after its table is built (an aggregate or a "
                    "self reference): nothing can read it"
                ),
            )
        if all(resolve(ref, seen) for ref in column.references()):
            earlier = {**config._related, **{c.name: c for c in config.columns[:index]}}
            for path, message in column.problems(earlier):
                yield (*where, *path), message
        seen[column.name] = index
    yield from _capacity_problems(config)


def _capacity_problems(config: DatasetConfig):
    """Unique columns, the exact-dedupe key and the near check's texts that cannot take the
    rows asked for. A column whose capacity is unknown (free text; a stand-in for a broken
    one) bounds nothing, so this runs after field errors too."""
    capacities = _Capacities(config.locale)
    for index, column in enumerate(config.columns):
        capacities.add(column)
        if not column.unique:
            continue
        capacity = capacities[column.name]
        needed = config.rows if column.nullable == 0 else int(config.rows * (1 - column.nullable))
        if capacity is not None and capacity < needed:
            yield (
                ("columns", index, "unique"),
                (
                    f"{'a primary key' if column.primary_key else 'unique column'} can take "
                    f"only {capacity:,} distinct values but {needed:,} rows are asked for; "
                    f"widen its range, lower rows, or drop "
                    f"{'primary_key' if column.primary_key else 'unique'}"
                ),
            )
    yield from _key_capacity_problems(config, capacities)
    yield from _text_capacity_problems(config, capacities)


def _text_capacity_problems(config: DatasetConfig, capacities: _Capacities):
    """The near check keeps one row per distinct text at most: text columns of a few values
    (categories) cap the rows, found only after the build's rounds ran out."""
    from synthaix.dedupe.keys import text_columns

    columns = text_columns(config)
    if not columns or config.rows <= 1 or not all(name in capacities for name in columns):
        return
    distinct = 1
    for name in columns:
        if (capacity := capacities[name]) is None:
            return  # free text: no bound
        distinct *= capacity
    if distinct < config.rows:
        yield (
            ("dedupe", "text") if config.dedupe.text else ("dedupe",),
            f"the near-duplicate check reads {', '.join(columns)}, which can take only "
            f"{distinct:,} distinct texts but {config.rows:,} rows are asked for (it keeps one "
            "row per text at most); check free-text columns, or turn it off: "
            "dedupe: {near: false}",
        )


def _unknown_reference(config: DatasetConfig, index: int, ref: str, seen: Iterable[str]) -> str:
    child = ref.partition(".")[0]
    if child in config._children:
        return (
            f"references '{ref}', a field of its child table {child}: a row has any number "
            f"of children, so it cannot read one; sum or count them with an aggregate column "
            f"({{type: aggregate, of: {child}, expr: ...}})"
        )
    if resolve(ref, {config.columns[index].name}) is not None:
        return f"reads '{ref}', its own value: a column can read only the columns above it"
    later = resolve(ref, {c.name for c in config.columns[index + 1 :]}) is not None
    names = [*seen, *(c.name for c in config.columns)]
    why = "comes later; move it above" if later else "is not a column"
    why += "" if later else did_you_mean(ref, names)
    earlier = ", ".join(seen) or "none"
    return f"references '{ref}', which {why} (earlier columns: {earlier})"


def _name_problems(config: DatasetConfig):
    """Only the names a config reads that are no column, and names given twice (the pass
    after field errors)."""
    yield from (p for p in _dedupe_problems(config) if "is not a column" in p[1])
    seen = [*config._related, *config._names]
    for index, column in enumerate(config.columns):
        if column.name in seen:
            yield ("columns", index, "name"), f"duplicate column name '{column.name}'"
        for ref in sorted(column.references()):
            if resolve(ref, seen) is None and resolve(ref, config._late_related) is None:
                yield ("columns", index), _unknown_reference(config, index, ref, seen)
        seen.append(column.name)
    yield from constraints.unknown_columns(config)


def room_problems(config: DatasetConfig, stored: int, unchanged: set[str]) -> list[str]:
    """What an append of `config.rows` cannot fit onto the `stored` rows there: a unique
    column's or the exact-dedupe key's distinct values, which those rows hold some of (only
    for `unchanged` columns, made as the stored rows were: other values may not collide)."""
    from synthaix.dedupe.keys import key_columns

    capacities = _Capacities(config.locale)
    for column in config.columns:
        capacities.add(column)
    found = []
    for column in config.columns:
        if not column.unique or column.nullable or column.name not in unchanged:
            continue
        capacity = capacities[column.name]
        if capacity is not None and capacity < stored + config.rows:
            found.append(
                f"column {column.name} is unique and can take only {capacity:,} distinct "
                f"values: the {stored:,} rows there hold {stored:,} of them, and "
                f"{config.rows:,} more {'are' if config.rows != 1 else 'is'} asked for"
            )
    if not found and set(key_columns(config)) <= unchanged:  # a unique column bounds it less
        found += [message for _, message in _key_capacity_problems(config, capacities, stored)]
    return found


def _key_capacity_problems(config: DatasetConfig, capacities: _Capacities, stored: int = 0):
    """Exact dedupe keeps one row per distinct key: a key of a few categories caps the rows
    (found only after the build's rounds stalled, before). `stored`: the rows an append adds
    to, whose keys count."""
    from synthaix.dedupe.keys import key_columns

    columns = {c.name: c for c in config.columns}
    keys = [name for name in key_columns(config) if name in capacities]
    rows = stored + config.rows
    if not keys or rows <= 1:
        return
    distinct, folded = 1, []
    for name in sorted(keys, key=lambda name: columns[name].costly_capacity):
        capacity = capacities[name]
        if (fewer := _folded_capacity(columns[name])) is not None and fewer < (capacity or 0):
            capacity, folded = fewer, [*folded, name]
        if capacity is None:
            return  # unknown (text, llm columns): no bound to check
        distinct *= capacity + (columns[name].nullable > 0)  # a null is one more key value
        if distinct >= rows:
            return
    where = ("dedupe", "key") if config.dedupe.key else ("dedupe",)
    why = (
        f" ({', '.join(folded)}: values differing in case or outer spaces are one)"
        if folded
        else ""
    )
    yield (
        where,
        (
            f"the exact-dedupe key ({', '.join(keys)}) can take only {distinct:,} distinct "
            + (
                f"rows{why}: the {stored:,} rows there hold {stored:,} of them, and "
                f"{config.rows:,} more {'are' if config.rows != 1 else 'is'} asked for"
                if stored
                else f"rows{why} but {config.rows:,} are asked for"
            )
            + "; widen those columns, "
            + ("" if config.dedupe.key else "set dedupe.key, ")
            + "lower rows, or turn the check off: dedupe: {exact: false}"
        ),
    )


def _folded_capacity(column: Column) -> int | None:
    """The distinct keys a column of known text values gives: the key trims and case-folds
    (`Foo`, `foo ` and `FOO` are one key value)."""
    domain = column.domain() if isinstance(column, Conditional) else None
    if not domain or not all(isinstance(value, str) for value in domain):
        return None
    return len({str(value).strip().lower() for value in domain})


def parse_config(
    data: Any, source: YamlDocument | None = None, origin: str = "config"
) -> DatasetConfig:
    """Validate raw data into a DatasetConfig, or raise one ConfigError listing every problem."""
    try:
        return DatasetConfig.model_validate(data)
    except ValidationError as exc:
        hidden = _hidden_name_problems(exc, data)
        raise _config_error(exc, data, source, origin, hidden) from None


def _hidden_name_problems(exc: ValidationError, data: Any, model: Any = None) -> list[Any]:
    """Unknown names that field errors hid: pydantic stops before the cross-column checks, so
    a config with a misspelt type and a misspelt reference took two runs to fix. The names are
    checked again on a stand-in of the config: a broken column as a text column of its name (a
    reference as a plain one to its `to`), a broken constraint as `true`, any other broken
    section left to its default. `model`: the config's class (DatasetConfig; RelationalConfig
    for `tables:`, whose tables are stood in for the same way). Nothing is said when the
    stand-in fails too."""
    model = model or DatasetConfig
    errors = exc.errors()
    if not isinstance(data, dict) or any(_cross_field(e) for e in errors):
        return []
    stand_in, replaced, opaque = copy.deepcopy(data), [], []
    for loc in (tuple(e["loc"]) for e in errors):
        owner, at = stand_in, loc
        if model is not DatasetConfig and loc[:1] == ("tables",):
            tables = stand_in.get("tables")
            if len(loc) < 3 or not isinstance(tables, list) or not isinstance(loc[1], int):
                continue  # a broken table as a whole: no stand-in (it fails again)
            owner, at = tables[loc[1]], loc[2:]
        if not isinstance(owner, dict):
            continue
        listed = owner.get(at[0]) if at else None
        if len(at) > 1 and isinstance(at[1], int) and isinstance(listed, list):
            if at[0] == "columns":
                column = listed[at[1]] if isinstance(listed[at[1]], dict) else {}
                stand = {"name": column.get("name"), "type": "text.lorem"}
                target = column.get("to")
                if column.get("type") == "reference":
                    if isinstance(target, str) and re.match(TARGET, target):
                        stand = {**stand, "type": "reference", "to": target}  # read through
                    else:  # no table to read through: what does is not said unknown
                        names = (column.get("name"), column.get("alias"))
                        opaque += [f"'{name}." for name in names if name]
                listed[at[1]] = stand
                replaced.append(loc[: len(loc) - len(at) + 2])
            elif at[0] == "constraints":
                listed[at[1]] = "true"
        elif at and at[0] == "count" and owner is not stand_in and owner.get("parent"):
            owner["count"] = 1  # a child table needs one: its other names are still checked
        elif at and at[0] != "name":
            owner.pop(at[0], None)
    try:
        model.model_validate(stand_in, context={"names_only": True})
    except ValidationError as again:
        if not all(_cross_field(e) for e in again.errors()):
            return []
        problems = [
            (tuple(e["loc"]) + loc, m) for e in again.errors() for loc, m in _cross_field(e)
        ]
        return [
            (loc, m)
            for loc, m in problems
            if not any(loc[: len(r)] == r for r in replaced) and not any(o in m for o in opaque)
        ]
    return []


def _cross_field(error: Any) -> list[Any]:
    nested = error.get("ctx", {}).get("error")
    return nested.problems if isinstance(nested, CrossFieldError) else []


def parse_any_config(data: Any, source: YamlDocument | None = None, origin: str = "config") -> Any:
    """A single-table DatasetConfig, or a RelationalConfig when the mapping has `tables:`."""
    if not (isinstance(data, dict) and "tables" in data):
        return parse_config(data, source, origin)
    from synthaix.relational.config import RelationalConfig

    try:
        return RelationalConfig.model_validate(data)
    except ValidationError as exc:
        hidden = _hidden_name_problems(exc, data, RelationalConfig)
        raise _config_error(exc, data, source, origin, hidden) from None


def load_config(path: str | Path, as_of: dt.datetime | None = None) -> Any:
    """Read and validate a YAML dataset config; errors name the file and line. A config with
    `tables:` is a multi-table dataset (synthaix.relational.config.RelationalConfig). `as_of`:
    the time its relative times stand at (else the file's as_of, else now), given here so
    their ranges are checked at that time, not at another first."""
    document = YamlDocument.read(Path(path))
    if not isinstance(document.data, dict):
        raise ConfigError(f"{path}: a dataset config must be a YAML mapping (name: ..., rows: ...)")
    data = document.data if as_of is None else {**document.data, "as_of": as_of}
    return parse_any_config(data, document)


def _config_error(
    exc: ValidationError,
    data: Any,
    source: YamlDocument | None,
    origin: str,
    hidden: list[Any] | None = None,
) -> ConfigError:
    found: list[tuple[tuple[str | int, ...], str]] = []
    said: set[tuple[str | int, ...]] = set()
    errors = exc.errors()
    for error in errors:
        if _explained_by_a_typo(error, errors):
            continue
        nested = error.get("ctx", {}).get("error")
        if isinstance(nested, CrossFieldError):
            found += [(tuple(error["loc"]) + loc, message) for loc, message in nested.problems]
        else:
            loc = _without_branches(error["loc"])
            if loc != tuple(error["loc"]) and loc in said:
                continue  # a union (int | float) fails once per member: say it once
            said.add(loc)
            found.append((loc, _message(error)))
    found += hidden or []
    if source is not None:  # in the file's order, as the reader fixes them
        found.sort(key=lambda pair: (source.line_of(pair[0]) or 0, _sortable(pair[0])))
    lines = []
    for loc, message in found:
        where = f"{source.path}:{source.line_of(loc)}: " if source else ""
        lines.append(f"  {where}{_label(loc, data)}: {message}")
    what = f"config {source.path}" if source else origin
    count = f"{len(lines)} problem{'s' if len(lines) > 1 else ''}"
    hint = f"fix and check again with: synthaix validate {source.path}" if source else None
    return ConfigError(f"invalid {what} ({count}):\n" + "\n".join(lines), hint=hint)


def _sortable(loc: tuple[str | int, ...]) -> tuple[tuple[int, str | int], ...]:
    return tuple((0, part) if isinstance(part, int) else (1, part) for part in loc)


_BRANCHES = {"int", "float", "str", "bool", "date", "datetime", "decimal"}


_TAGS = ("constrained-", "literal[", "function-", "lax-or-strict[")


def _without_branches(loc: Any) -> tuple[str | int, ...]:
    """The location without pydantic's union-member tags (`max.float`, `seed.literal['as_of']`):
    a value no member accepts is said once, by the first."""
    return tuple(
        part
        for part in loc
        if part not in _BRANCHES and not (isinstance(part, str) and part.startswith(_TAGS))
    )


def _explained_by_a_typo(error: Any, errors: list[Any]) -> bool:
    """`valuse:` makes two errors (unknown key, and `values` missing); report only the typo."""
    if error["type"] != "missing":
        return False
    parent, field = tuple(error["loc"][:-1]), str(error["loc"][-1])
    return any(
        other["type"] == "extra_forbidden"
        and tuple(other["loc"][:-1]) == parent
        and difflib.get_close_matches(str(other["loc"][-1]), [field], n=1)
        for other in errors
    )


_KNOWN_KEYS = sorted(
    {
        name
        for model in (DatasetConfig, OutputConfig, RunnerConfig, ProviderConfig, DedupeConfig)
        for name in model.model_fields
    }
    | {f.alias or name for cls in REGISTRY.values() for name, f in cls.model_fields.items()}
    | {"tables", "parent", "count", "siblings", "distribution", "order_by", "limit", "by"}
)


CONDITIONAL_TYPES = [name for name, cls in REGISTRY.items() if issubclass(cls, Conditional)]


_TABLE_KEYS = {"columns", "constraints", "dedupe", "rows", "parent", "count", "siblings"}


def _message(error: dict[str, Any]) -> str:
    kind, loc = error["type"], error["loc"]
    if kind == "extra_forbidden" and "key" in str(loc[-1]).lower():
        return (
            f"'{loc[-1]}' does not belong in a config file: put the key in the environment "
            "variable named by provider.api_key_env (default OPENAI_API_KEY)"
        )
    if kind == "extra_forbidden" and len(loc) == 1 and loc[0] in _TABLE_KEYS:
        return f"'{loc[0]}' is set per table: put it in a table under tables:"
    on_a_column = len(loc) >= 3 and isinstance(loc[-3], int) and "columns" in loc
    if kind == "extra_forbidden" and loc[-1] in ("by", "params") and on_a_column:
        return (
            f"'{loc[-1]}' works on {', '.join(CONDITIONAL_TYPES)} columns only (parameters "
            "per value of another column; see docs/coherent-rows.md)"
        )
    if kind == "extra_forbidden":
        close = difflib.get_close_matches(str(loc[-1]), _KNOWN_KEYS, n=1)
        if close and close[0] == loc[-1]:  # a key of another place in the config
            return f"'{loc[-1]}' does not belong here; see where it goes in the docs"
        return f"unknown key '{loc[-1]}'" + (f"; did you mean '{close[0]}'?" if close else "")
    if kind == "model_type" and len(loc) > 1 and loc[-2] == "constraints":
        return 'a constraint is a DuckDB boolean expression ("qty > 0") or {name, check}'
    if kind == "union_tag_not_found":
        return f"missing 'type'; valid types: {', '.join(REGISTRY)}"
    if kind == "union_tag_invalid":
        tag = error["ctx"]["tag"]
        close = difflib.get_close_matches(str(tag), list(REGISTRY), n=1)
        guess = f"did you mean '{close[0]}'? " if close else ""
        return f"unknown column type '{tag}'; {guess}valid types: {', '.join(REGISTRY)}"
    if kind in ("less_than_equal", "greater_than_equal") and loc and loc[-1] == "nullable":
        value = error.get("input")
        percent = f"; for {value} % write {value / 100:g}" if _is_percent(value) else ""
        return f"nullable is the share of rows left null, from 0 to 1{percent}"
    if kind == "string_pattern_mismatch":
        return _PATTERNS.get(error["ctx"]["pattern"], str(error["msg"]))
    message = str(error["msg"])
    return message.removeprefix("Value error, ")


_PATTERNS = {  # what a pattern asks for, in words
    IDENTIFIER: "must be a name of letters, digits and _ that does not start with a digit",
    TARGET: "must be table.column, the referenced table's key (e.g. customers.customer_id)",
}


def _is_percent(value: Any) -> bool:
    return isinstance(value, int | float) and 1 < value <= 100


def _label(loc: tuple[str | int, ...], data: Any) -> str:
    """`('columns', 3, 'integer', 'min')` -> `columns[3] (age).min`, skipping union tags."""
    label, node = "", data
    for i, part in enumerate(loc):
        if isinstance(node, dict) and node.get("type") == part in REGISTRY and i < len(loc) - 1:
            continue  # the column's union tag, even where a field has its name (`pattern`)
        if isinstance(part, int) and isinstance(node, list) and 0 <= part < len(node):
            node = node[part]
            name = node.get("name") if isinstance(node, dict) else None
            label += f"[{part}]" + (f" ({name})" if name else "")
        elif isinstance(node, dict) and part in node:
            node = node[part]
            label += f".{part}" if label else str(part)
        elif not isinstance(node, dict) or part not in REGISTRY:
            label += f".{part}" if label else str(part)
    return label or "config"


def config_json_schema() -> dict[str, Any]:
    """The JSON Schema of config files: a single-table dataset, or one with `tables:`."""
    from pydantic import TypeAdapter

    from synthaix.relational.config import RelationalConfig

    schema = TypeAdapter(DatasetConfig | RelationalConfig).json_schema()
    return {"title": SCHEMA_TITLE, **schema}  # what `schema -o` knows its own file by


SCHEMA_TITLE = "SynthAIx dataset config"
