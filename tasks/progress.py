"""Live progress and the end-of-build artifacts in the Prefect UI."""

from __future__ import annotations

import time
from pathlib import Path
from urllib.parse import quote
from uuid import UUID

import pyarrow as pa
from prefect import get_run_logger, task
from prefect.artifacts import (
    create_link_artifact,
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.cache_policies import NO_CACHE

from synthaix.build.manifest import Manifest, summary_markdown
from synthaix.config import DatasetConfig
from synthaix.fence import PREFECT_VARIABLE, output_root
from synthaix.llm.stats import spend
from synthaix.relational.config import RelationalConfig
from synthaix.relational.manifest import DatasetManifest
from synthaix.relational.manifest import summary_markdown as tables_summary

SAMPLE_ROWS = 10
REPORT_BASE_URL = "synthaix_report_base_url"  # a Prefect Variable
UPDATE_SECONDS = 1.0  # at most one progress update a second: each is a request to the server


def artifact_key(config: DatasetConfig | RelationalConfig, kind: str) -> str:
    return f"{config.name}-{kind}".replace("_", "-").lower()


class ProgressArtifact:
    """A progress artifact of the flow run, updated as rows are delivered."""

    def __init__(self, config: DatasetConfig, dataset: RelationalConfig | None = None) -> None:
        """`dataset`: the multi-table dataset `config` is a table of (`<name>-<table>-progress`)."""
        self.total = config.rows
        self.done = 0
        self._last = 0.0
        of, kind = config.name, "progress"
        if dataset is not None:
            of, kind = f"{dataset.name}.{config.name}", f"{config.name}-progress"
        self.id: UUID = create_progress_artifact(  # type: ignore[assignment]
            progress=0.0,
            key=artifact_key(dataset or config, kind),
            description=f"Rows of {of} delivered, in percent",
        )

    def finished(self) -> None:
        """The build is whole: 100 %, also when it had nothing to deliver (a slot appended
        already), which left the run's progress at 0 %."""
        if self.done < self.total:
            update_progress_artifact(self.id, progress=100.0)

    def advanced(self, table: pa.Table) -> None:
        self.done += table.num_rows
        now = time.monotonic()
        if now - self._last >= UPDATE_SECONDS or self.done >= self.total:
            self._last = now
            done = min(1.0, self.done / max(self.total, 1))
            update_progress_artifact(self.id, progress=round(100 * done, 1))


@task(name="write-report", cache_policy=NO_CACHE)
def write_report(config: DatasetConfig | RelationalConfig) -> str:
    """The HTML report of the published dataset, and a link artifact to it. The link is
    `<synthaix_report_base_url>/<path under the output root>` when the worker serves its
    output root over HTTP (Prefect Variable synthaix_report_base_url), else a file:// URL."""
    from synthaix.report.html import write_report as write_html

    path = write_html(config.output_dir).resolve()
    link = _report_url(path)
    create_link_artifact(
        link=link,
        link_text=f"{config.name} report",
        key=artifact_key(config, "report"),
        description=f"HTML report of {config.name}: profile, checks, samples",
    )
    return link


def _report_url(path: Path) -> str:
    from prefect.variables import Variable

    base = Variable.get(REPORT_BASE_URL, default=None)
    root = output_root() or Variable.get(PREFECT_VARIABLE, default=None)
    folder = Path(root).expanduser().resolve() if root else None
    if base and folder is not None and path.is_relative_to(folder):
        return f"{str(base).rstrip('/')}/{quote(path.relative_to(folder).as_posix())}"
    return path.as_uri()


def summary_text(
    config: DatasetConfig | RelationalConfig,
    manifest: Manifest | DatasetManifest,
    report: str | None = None,
) -> str:
    """The summary artifact's Markdown. Output paths are absolute: a UI reader does not know
    the worker's working directory. A rerun of an appended slot says first that it built
    nothing (its summary was the last build's, read as a second append)."""
    absolute = {kind: str(Path(path).absolute()) for kind, path in manifest.outputs.items()}
    unchanged = manifest._unchanged
    manifest = manifest.model_copy(update={"outputs": absolute})
    if isinstance(manifest, DatasetManifest):
        markdown = tables_summary(manifest)
    else:
        markdown = summary_markdown(manifest)
    if report is not None:
        markdown += f"\n\n**Report:** [{report.rsplit('/', 1)[-1]}]({report})\n"
    if unchanged is None:
        return markdown
    last = markdown.replace("\n# ", "\n## ").replace("# ", "## ", 1)
    said = f"{unchanged}. The output is as its last build left it:"
    return f"# {config.name}: nothing built\n\n{said}\n\n{last}"


def built_line(manifest: Manifest | DatasetManifest) -> str:
    """One log line of what a run made, where, at what cost."""
    if manifest._unchanged is not None:
        return manifest._unchanged
    if isinstance(manifest, DatasetManifest):
        made = ", ".join(f"{t} {m.rows.delivered:,}" for t, m in manifest.tables.items())
        delivered = f"{manifest.delivered:,} rows ({made})"
    else:
        delivered = f"{manifest.rows.delivered:,} rows ({manifest.rows.total:,} in total)"
    where = manifest.outputs.get("duckdb") or next(iter(manifest.outputs.values()), "")
    where = str(Path(where).absolute())  # a worker's folder is a clone: a relative path says little
    llm = f"; llm {spend(manifest.llm)}" if manifest.llm.requests else ""
    return f"built {manifest.dataset}: {delivered}, {manifest.mode} -> {where}{llm}"


@task(name="report-build", cache_policy=NO_CACHE)
def report_artifacts(
    config: DatasetConfig | RelationalConfig,
    manifest: Manifest | DatasetManifest,
    sample: pa.Table | dict[str, pa.Table | None] | None,
    report: str | None = None,
) -> None:
    """The build summary (Markdown, with the report's link) and the first rows (a table
    artifact; one per table of a multi-table dataset, `<name>-<table>-sample`)."""
    markdown = summary_text(config, manifest, report)
    if manifest._unchanged is None:  # an unchanged slot's line was logged already
        get_run_logger().info(built_line(manifest))  # the run's logs say what it made, too
    create_markdown_artifact(
        markdown=markdown,
        key=artifact_key(config, "summary"),
        description="SynthAIx build summary",
    )
    samples = sample if isinstance(sample, dict) else {"": sample}
    for table, rows_of in samples.items():
        if rows_of is None:
            continue
        rows = [
            {k: v if isinstance(v, int | float | bool | None) else str(v) for k, v in row.items()}
            for row in rows_of.slice(0, SAMPLE_ROWS).to_pylist()
        ]
        name = f"{config.name}.{table}" if table else config.name
        key = artifact_key(config, f"{table}-sample" if table else "sample")
        create_table_artifact(table=rows, key=key, description=f"First rows of {name}")
