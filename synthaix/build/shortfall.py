"""Why a build stopped short of its rows: what its drops say, biggest loss first, and what to
change. Named from the counts, not guessed from the config: a build whose LLM answers all
failed a `pattern` was told its dedupe key could not yield more."""

from __future__ import annotations

from collections import Counter

from synthaix.build.manifest import Dropped

_DISTINCT = "widen the columns' ranges or add columns, or lower rows"


def since(now: Dropped, before: Dropped) -> Dropped:
    """The drops between two counts of one build."""
    constraint = {k: n - before.constraint.get(k, 0) for k, n in now.constraint.items()}
    return Dropped(
        invalid=now.invalid - before.invalid,
        unique_value=now.unique_value - before.unique_value,
        exact_duplicate=now.exact_duplicate - before.exact_duplicate,
        near_duplicate=now.near_duplicate - before.near_duplicate,
        constraint={k: n for k, n in constraint.items() if n},
        in_chunks=now.in_chunks - before.in_chunks,
    )


def why_short(
    dropped: Dropped,
    generated: int,
    rejects: Counter[str],
    unique: list[str],
    keys: list[str],
    texts: list[str],
    primary_key: list[str] | None = None,
    key_set: bool = False,
    counted: bool = False,
) -> tuple[str, str]:
    """(what the rows were lost to, a hint), from the drops of `generated` rows (the last
    round's) and the LLM rejections by cause (`rejects`). Ranked by the share of the rows
    each check saw that it dropped, in the order the checks run (in the chunk: constraints
    and LLM values; then unique, exact, near): the check that drops everything reaching it
    caps the build, even where an earlier one drops more rows. `primary_key`: a composite
    primary key, which is the dedupe key and cannot be turned off. `key_set`: the dedupe key
    is the config's `dedupe.key`; `counted`: the table's rows are per-parent counts (a
    child table: its caller says to lower them)."""
    causes: list[tuple[float, int, str, str]] = []  # share, rows, why, what to change
    reaching = max(generated, 1)
    for name, rows in dropped.constraint.items():
        fix = f"relax the constraint '{name}' or widen the columns it reads"
        causes.append((rows / reaching, rows, f"breaking the constraint '{name}'", fix))
    if dropped.invalid:
        failed = ", ".join(f"{c} {n:,}" for c, n in rejects.most_common() if c != "gave_up")
        why = "no valid LLM value" + (f" (answers rejected: {failed})" if failed else "")
        top = next((c for c, _ in rejects.most_common() if c != "gave_up"), "")
        fix = (
            "the model's answers are no JSON rows: check provider.model, or try "
            "structured_output: json_schema or tools"
            if top in ("malformed_json", "not_returned")
            else "the model's answers fail the llm columns' checks (enum, pattern, max_length, "
            "schema): loosen them, or try another model"
        )
        causes.append((dropped.invalid / reaching, dropped.invalid, why, fix))
    reaching = max(generated - dropped.in_chunks, 1)
    if dropped.unique_value:
        why = f"repeating a value of the unique columns ({', '.join(unique)})"
        share = dropped.unique_value / reaching
        causes.append((share, dropped.unique_value, why, f"{_DISTINCT}, or drop unique"))
    reaching = max(reaching - dropped.unique_value, 1)
    if dropped.exact_duplicate:
        why = f"repeating a row over the dedupe key ({', '.join(keys)})"
        fix = f"{_DISTINCT}; or set dedupe.key, or turn the check off: dedupe: {{exact: false}}"
        if key_set:  # a child's counts are said by its caller: it has no rows to lower
            fix = (
                "widen the ranges of the key's columns (a lookup: more rows in its table, or "
                "weights: uniform, as skewed weights repeat the same rows)"
                f"{'' if counted else ', or lower rows'}; or turn the check off: "
                "dedupe: {exact: false}"
            )
        if primary_key and set(keys) == set(primary_key):
            why = f"repeating the primary key ({', '.join(keys)})"
            fewer = "" if counted else ", or lower rows"
            fix = f"widen the ranges of the key's columns{fewer}: each key is unique"
        causes.append((dropped.exact_duplicate / reaching, dropped.exact_duplicate, why, fix))
    reaching = max(reaching - dropped.exact_duplicate, 1)
    if dropped.near_duplicate:
        why = f"text near a stored row's ({', '.join(texts)})"
        fix = "raise dedupe.threshold, or turn the check off: dedupe: {near: false}"
        causes.append((dropped.near_duplicate / reaching, dropped.near_duplicate, why, fix))
    if not causes:
        return "the generator yields no more rows", _DISTINCT
    causes.sort(key=lambda cause: (-cause[0], -cause[1]))
    lost = "; ".join(
        f"{why}: {rows:,} ({share:.0%} of the rows it saw)" for share, rows, why, _ in causes
    )
    return f"the last round's rows were dropped for {lost}", causes[0][3]
