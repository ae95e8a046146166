"""Declared relations (derived values, offsets, per-group distributions, correlations,
derived emails, patterns, constraints) verified on the built data by querying it, never by
trusting the generator. Each relation's SQL runs over the Parquet parts as the table `data`,
on a DuckDB that may read those files and nothing else: the SQL holds config expressions."""

from __future__ import annotations

from synthaix.columns.base import RelationCheck
from synthaix.config import DatasetConfig
from synthaix.report.checks import Check
from synthaix.report.profile import parts_view


def declared(config: DatasetConfig) -> list[RelationCheck]:
    checks = [check for column in config.columns for check in column.relation_checks()]
    return checks + [constraint.relation_check() for constraint in config.constraints]


def verify(config: DatasetConfig, parts: list[str]) -> list[Check]:
    checks = declared(config)
    if not checks or not parts:
        return []
    with parts_view(parts) as con:
        results = [con.execute(check.sql).fetchone() for check in checks]
    return [
        Check(check.column or "(dataset)", "relation", check.relation, observed, failed == 0)
        for check, (failed, observed) in zip(checks, results, strict=True)
    ]
