"""Why a build stopped short of its rows: what its drops say, biggest loss first, and what to
change. Named from the counts, not guessed from the config: a build whose LLM answers all
failed a `pattern` was told its dedupe key could not yield more."""

from __future__ import annotations

from collections import Counter

from synthaix.build.manifest import Dropped

_DISTINCT = "widen the columns' ranges or add columns, or lower rows"


def why_short(
    dropped: Dropped, rejects: Counter[str], unique: list[str], keys: list[str], texts: list[str]
) -> tuple[str, str]:
    """(what the rows were lost to, a hint), from the build's drops and its LLM rejections by
    cause (`rejects`)."""
    causes: list[tuple[int, str, str]] = []  # rows, why, what to change
    if dropped.unique_value:
        why = f"repeating a value of the unique columns ({', '.join(unique)})"
        causes.append((dropped.unique_value, why, f"{_DISTINCT}, or drop unique"))
    if dropped.exact_duplicate:
        why = f"repeating a row over the dedupe key ({', '.join(keys)})"
        fix = f"{_DISTINCT}; or set dedupe.key, or turn the check off: dedupe: {{exact: false}}"
        causes.append((dropped.exact_duplicate, why, fix))
    if dropped.near_duplicate:
        why = f"text near a stored row's ({', '.join(texts)})"
        fix = "raise dedupe.threshold, or turn the check off: dedupe: {near: false}"
        causes.append((dropped.near_duplicate, why, fix))
    for name, rows in dropped.constraint.items():
        fix = f"relax the constraint '{name}' or widen the columns it reads"
        causes.append((rows, f"breaking the constraint '{name}'", fix))
    if dropped.invalid:
        failed = ", ".join(f"{c} {n:,}" for c, n in rejects.most_common() if c != "gave_up")
        why = "no valid LLM value" + (f" (answers rejected: {failed})" if failed else "")
        fix = (
            "the model's answers fail the llm columns' checks (enum, pattern, max_length, "
            "schema): loosen them, or try another model"
        )
        causes.append((dropped.invalid, why, fix))
    if not causes:
        return "the generator yields no more rows", _DISTINCT
    causes.sort(key=lambda cause: -cause[0])
    lost = "; ".join(f"{why}: {rows:,}" for rows, why, _ in causes)
    return f"rows dropped for {lost}", causes[0][2]
