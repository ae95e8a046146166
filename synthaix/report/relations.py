"""Declared relations (derived values, offsets, per-group distributions, correlations,
derived emails, patterns, constraints) verified on the built data by querying it, never by
trusting the generator. Each relation's SQL runs over the dataset's rows (its Parquet parts or
its DuckDB table) as the table `data`, on a DuckDB that may read those and nothing else: the
SQL holds config expressions."""

from __future__ import annotations

from synthaix.columns.base import RelationCheck
from synthaix.config import DatasetConfig
from synthaix.report.checks import Check
from synthaix.report.profile import Source, as_source, source_view


def declared(
    config: DatasetConfig, reshaped: set[str] | None = None, spanned: set[str] | None = None
) -> list[RelationCheck]:
    constraints = [constraint.relation_check() for constraint in config.constraints]
    return column_relations(config, reshaped, spanned) + constraints


def column_relations(
    config: DatasetConfig, reshaped: set[str] | None = None, spanned: set[str] | None = None
) -> list[RelationCheck]:
    """The columns' declared relations, but the distributions of `reshaped` columns and any
    of `spanned` ones (see `checks.spanned`)."""
    return [
        check
        for column in config.columns
        if column.name not in (spanned or ())
        for check in column.relation_checks(config.locale)
        if not (check.shape and check.column in (reshaped or ()))
    ]


def verify(
    config: DatasetConfig,
    rows: Source | list[str],
    reshaped: set[str] | None = None,
    spanned: set[str] | None = None,
) -> list[Check]:
    """The declared relations, each checked over `rows` (a source, or Parquet parts), but
    the distributions of `reshaped` columns (see `checks.reshaped`) and the relations of
    `spanned` ones (`checks.spanned`)."""
    checks, source = declared(config, reshaped, spanned), as_source(rows)
    if not checks or not (source.parts or source.database):
        return []
    with source_view(source) as con:
        results = [(check, check.run(con)) for check in checks]
    return [
        Check(check.column or "(dataset)", "relation", check.relation, result[1], result[0] == 0)
        for check, result in results
        if result is not None
    ]
