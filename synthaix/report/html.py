"""The HTML report: one self-contained file (inline CSS and SVG charts, no scripts, no network)."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from html import escape
from pathlib import Path
from typing import Any

from synthaix.build.manifest import Manifest, cost_lines, read_manifest, resume_lines
from synthaix.errors import OutputError
from synthaix.files import REPORT_MARK, is_own_report, write_text_atomic
from synthaix.llm.stats import usd
from synthaix.report.checks import (
    Check,
    duckdb_copy,
    reshaped,
    run_checks,
    significant,
    spanned,
)
from synthaix.report.profile import (
    ColumnProfile,
    DatasetProfile,
    dataset_source,
    duplicate_key,
    profile_source,
)
from synthaix.report.relations import verify

CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;
max-width:1180px;color:#1d2330;background:#f6f7fb}
h1{font-size:24px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 10px}
.muted{color:#667085}.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(360px,1fr));
gap:14px}.card{background:#fff;border:1px solid #e3e6ee;border-radius:10px;padding:14px}
.card h3{margin:0 0 6px;font-size:15px}.card h3 small{color:#667085;font-weight:normal}
table{border-collapse:collapse;width:100%}td,th{padding:4px 8px;border-bottom:1px solid #eef0f4;
text-align:left;vertical-align:top}th{font-weight:600;color:#475467}
.stats td{font-variant-numeric:tabular-nums}.pass{color:#067647;font-weight:600}
.fail{color:#b42318;font-weight:600}.kpis{display:flex;gap:12px;flex-wrap:wrap;margin:14px 0}
.kpi{background:#fff;border:1px solid #e3e6ee;border-radius:10px;padding:10px 14px;min-width:130px}
.kpi b{display:block;font-size:20px}.kpi small{display:block}
.sample{overflow-x:auto;background:#fff;border-radius:10px;
border:1px solid #e3e6ee}.sample td{white-space:nowrap;max-width:320px;overflow:hidden;
text-overflow:ellipsis}svg text{font:11px system-ui,sans-serif;fill:#475467}
"""


def write_report(output_dir: Path, target: Path | None = None, overwrite: bool = False) -> Path:
    """Profile the dataset in `output_dir`, check it against its config, write the HTML."""
    return write_checked_report(output_dir, target, overwrite)[0]


def write_checked_report(
    output_dir: Path, target: Path | None = None, overwrite: bool = False
) -> tuple[Path, list[Check]]:
    """`write_report`, also returning every check the report shows. The output folder's
    report.html is replaced only when SynthAIx wrote it (or `overwrite`)."""
    from synthaix.relational.manifest import is_dataset_manifest

    default = output_dir / "report.html"
    if target is None and default.is_file() and not overwrite and not is_own_report(default):
        raise OutputError(
            f"{default} exists and is not a report SynthAIx wrote",
            hint=f"move it away, or write the report with: synthaix report {output_dir} "
            "-o PATH (or --force to replace that file)",
        )

    if is_dataset_manifest((output_dir / "manifest.json").read_text(encoding="utf-8")):
        from synthaix.report.tables import write_tables_report

        return write_tables_report(output_dir, target)
    manifest, profile, checks = _checked(output_dir)
    html = render(manifest, profile, checks)
    return write_text_atomic(target or output_dir / "report.html", html), checks


def check_dataset(output_dir: Path) -> list[Check]:
    """Every check of the single-table dataset built in `output_dir`."""
    return _checked(output_dir)[2]


def _checked(output_dir: Path) -> tuple[Manifest, DatasetProfile, list[Check]]:
    manifest = read_manifest(output_dir)
    config = manifest.dataset_config()
    profile = profile_source(dataset_source(config, output_dir), duplicate_key(config))
    checks = run_checks(config, profile, manifest)
    checks += verify(config, profile.source, reshaped(config, manifest), spanned(config, manifest))
    if (copy := duckdb_copy(config, output_dir, config.table, profile.source)) is not None:
        checks.append(copy)
    return manifest, profile, checks


def cost_kpis(manifest: Any) -> list[tuple[str, str]]:
    """LLM cost (this attempt's, and with interrupted attempts'), embeddings cost and resumed
    chunks."""
    if not manifest.llm_total.requests:  # no llm request in any attempt: no cost card
        kpis = []
    elif not manifest.earlier_attempts:
        kpis = [("LLM cost", usd(manifest.llm, hint=False))]
    else:
        kpis = [
            ("LLM cost, this attempt", usd(manifest.llm, hint=False)),
            ("LLM cost, all attempts", usd(manifest.llm_total, hint=False)),
        ]
    if manifest.embeddings.requests:
        kpis.append(("embeddings cost", usd(manifest.embeddings, hint=False)))
    if manifest.resumed_chunks:
        kpis.append(("resumed chunks", f"{manifest.resumed_chunks:,}"))
    return kpis


def duplicates(profile: DatasetProfile) -> tuple[str, str]:
    """The duplicate rate, and what it counts."""
    key, found = profile.duplicate_key, profile.duplicate_rows
    if found is None:  # every column an id or filled later: nothing tells rows apart
        return "n/a", "no columns to compare (ids only)"
    columns = ", ".join(key) if len(key) <= 4 else f"{len(key)} columns"
    return f"{found / max(profile.rows, 1):.2%}", f"{found:,} rows over ({columns})"


def duplicates_line(profile: DatasetProfile, exact: bool) -> str:
    """The duplicates in words: what makes two rows duplicates, as the exact dedupe sees it."""
    key, found = profile.duplicate_key, profile.duplicate_rows
    if found is None:
        return "not counted: every column is a generated id (uuid, sequence) or filled later"
    off = "" if exact else "; the exact dedupe is off for this dataset"
    return (
        f"{found:,} of {profile.rows:,} rows repeat another row's ({', '.join(key)}), text "
        f"trimmed and case-folded, as the exact dedupe compares rows{off}"
    )


def kpi(label: str, value: str, note: str = "") -> str:
    small = f"<small class=muted>{escape(note)}</small>" if note else ""
    return (
        f"<div class=kpi><span class=muted>{escape(label)}</span><b>{escape(value)}</b>"
        f"{small}</div>"
    )


def render(manifest: Manifest, profile: DatasetProfile, checks: list[Check]) -> str:
    kpis: list[tuple[str, ...]] = [
        ("rows", f"{profile.rows:,}"),
        ("columns", str(len(profile.columns))),
        ("duplicate rows", *duplicates(profile)),
        ("checks", f"{sum(c.passed for c in checks)}/{len(checks)} pass"),
        ("dropped", f"{manifest.dropped.total:,}"),
        *cost_kpis(manifest),
    ]
    parts = [
        f"<!doctype html><html lang=en><head><meta charset=utf-8>{REPORT_MARK}",
        f"<title>{escape(manifest.dataset)} - SynthAIx report</title>",
        f"<style>{CSS}</style></head><body>",
        f"<h1>{escape(manifest.dataset)}</h1>",
        f"<div class=muted>build {escape(manifest.build_id)} · {escape(manifest.created_at)}"
        f" · seed {manifest.seed} · mode {escape(manifest.mode)} · config "
        f"<code>{escape(manifest.config_hash[:19])}</code></div>",
        "<div class=kpis>" + "".join(kpi(*k) for k in kpis) + "</div>",
        _summary_table(manifest, profile),
        "<h2>Columns</h2><div class=grid>",
        *[_column_card(c, [k for k in checks if k.column == c.name]) for c in profile.columns],
        "</div>",
        "<h2>Constraint checks</h2>",
        _checks_table(checks),
        "<h2>Sample rows</h2>",
        _sample_table(profile),
        "</body></html>",
    ]
    return "\n".join(parts)


def _summary_table(manifest: Manifest, profile: DatasetProfile) -> str:
    rows, dropped, llm = manifest.rows, manifest.dropped, manifest.llm
    counts = (
        f"the build delivered {rows.delivered:,} of {rows.generated:,} generated (the rest "
        f"dropped, or {rows.unused:,} unused: made beyond the rows needed); {profile.rows:,} in "
        f"the dataset now"
    )
    if profile.rows != rows.total:  # read from the data: a part removed or copied since
        counts += f", where the manifest says {rows.total:,}"
    exact = manifest.dataset_config().dedupe.exact
    items = [
        ("rows", counts),
        ("duplicates", duplicates_line(profile, exact)),
        ("dropped", dropped.causes()),
    ]
    if dropped.constraint:
        items.append(("broke a constraint", dropped.by_constraint()))
    items += [
        ("time", ", ".join(f"{k} {v:.1f} s" for k, v in manifest.seconds.items())),
        ("outputs", ", ".join(f"{k}: {v}" for k, v in manifest.outputs.items())),
    ]
    items += resume_lines(manifest)
    if llm.requests or manifest.llm_total.requests:
        items += cost_lines(manifest)
        items += [
            ("retries", _counts(llm.retries)),
            ("rejected rows", _counts(llm.rejected_rows)),
        ]
    return f"<div class=card><table>{_rows(items)}</table></div>"


def _rows(items: list[tuple[str, str]]) -> str:
    return "".join(f"<tr><th>{k}</th><td>{escape(v)}</td></tr>" for k, v in items)


def _counts(counts: Counter[str]) -> str:
    return ", ".join(f"{k.replace('_', ' ')} {n:,}" for k, n in counts.most_common()) or "none"


def _column_card(column: ColumnProfile, checks: list[Check]) -> str:
    stats = [
        ("nulls", f"{column.nulls:,} ({column.null_rate:.1%})"),
        ("distinct", f"{column.distinct:,}"),
    ]
    if column.minimum is not None:
        stats.append(("min / max", f"{_fmt(column.minimum)} / {_fmt(column.maximum)}"))
    if column.mean is not None:
        stats.append(("mean / std", f"{_fmt(column.mean)} / {_fmt(column.std)}"))
    if column.max_length is not None:
        stats.append(("longest", f"{column.max_length} characters"))
    verdicts = "".join(
        f"<span class={'pass' if c.passed else 'fail'}>{'✓' if c.passed else '✗'} "
        f"{escape(c.name)}</span> "
        for c in checks
    )
    chart = _histogram_svg(column) if column.histogram and not column.top else _bars_svg(column)
    return (
        f"<div class=card><h3>{escape(column.name)} <small>{escape(column.sql_type)}</small></h3>"
        f"{chart}<table class=stats>{_rows(stats)}</table><div>{verdicts}</div></div>"
    )


def _histogram_svg(column: ColumnProfile, width: int = 340, height: int = 120) -> str:
    top = max(n for _, _, n in column.histogram) or 1
    bar = width / len(column.histogram)
    rects = "".join(
        f'<rect x="{i * bar:.1f}" y="{height - 18 - n / top * (height - 24):.1f}" '
        f'width="{bar - 1:.1f}" height="{n / top * (height - 24):.1f}" fill="#4f7cff">'
        f"<title>{_fmt(lo, column)} to {_fmt(hi, column)}: {n:,}</title></rect>"
        for i, (lo, hi, n) in enumerate(column.histogram)
    )
    first, last = column.histogram[0][0], column.histogram[-1][1]
    labels = (
        f'<text x="0" y="{height - 4}">{escape(_fmt(first, column))}</text>'
        f'<text x="{width}" y="{height - 4}" text-anchor="end">{escape(_fmt(last, column))}</text>'
    )
    return f'<svg viewBox="0 0 {width} {height}" width="100%" role="img">{rects}{labels}</svg>'


def _bars_svg(column: ColumnProfile, width: int = 340) -> str:
    if not column.top:
        return ""
    top = max(n for _, n in column.top) or 1
    row, bars = 18, []
    for i, (value, n) in enumerate(column.top):
        length = n / top * (width - 190)
        bars.append(
            f'<text x="0" y="{i * row + 13}">{escape(_fmt(value)[:28])}</text>'
            f'<rect x="150" y="{i * row + 3}" width="{length:.1f}" height="{row - 6}" '
            f'fill="#12b76a"></rect><text x="{155 + length:.1f}" y="{i * row + 13}">{n:,}</text>'
        )
    height = row * len(column.top)
    return f'<svg viewBox="0 0 {width} {height}" width="100%" role="img">{"".join(bars)}</svg>'


def _checks_table(checks: list[Check]) -> str:
    rows = "".join(
        f"<tr><td>{escape(c.column)}</td><td>{escape(c.name)}</td><td>{escape(c.expected)}</td>"
        f"<td>{escape(c.observed)}</td><td class={'pass' if c.passed else 'fail'}>"
        f"{'pass' if c.passed else 'FAIL'}</td></tr>"
        for c in checks
    )
    head = "<tr><th>column</th><th>check</th><th>expected</th><th>observed</th><th></th></tr>"
    return f"<div class=card><table>{head}{rows}</table></div>"


def _sample_table(profile: DatasetProfile) -> str:
    columns = profile.sample_columns
    head = "".join(f"<th>{escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{escape(_stored(row[c]))}</td>" for c in columns) + "</tr>"
        for row in profile.sample
    )
    return f"<div class=sample><table><tr>{head}</tr>{body}</table></div>"


def _stored(value: Any) -> str:
    """A sample row's value as stored: rounded, 668.79 showed as 668.8, and a total looked
    wrong against its quantity and price."""
    return "null" if value is None else str(value)


def _fmt(value: Any, column: ColumnProfile | None = None) -> str:
    if value is None:
        return "null"
    if column is not None and column.histogram_of == "length":
        return f"{value:.0f} chars"
    if column is not None and not column.numeric and isinstance(value, float):
        moment = dt.datetime.fromtimestamp(value, dt.UTC)  # histogram edges of dates are epochs
        return moment.strftime("%Y-%m-%d" if column.sql_type == "DATE" else "%Y-%m-%d %H:%M")
    if isinstance(value, float):
        return significant(value, 4) if abs(value) < 1e6 else f"{value:,.0f}"
    return str(value)
