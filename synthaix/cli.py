"""The `synthaix` command line: build, validate, schema."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import sys
import threading
import time
from collections import Counter
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import pyarrow as pa
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from synthaix import progress
from synthaix.columns.llm import LlmColumn
from synthaix.config import DatasetConfig, load_config
from synthaix.errors import SynthaixError
from synthaix.files import write_text_atomic
from synthaix.llm.client import LlmClient
from synthaix.sink import check_output

app = typer.Typer(
    help="Build synthetic tabular datasets from YAML configs.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)

ConfigArg = Annotated[Path, typer.Argument(help="Dataset config (YAML).", show_default=False)]
DebugOpt = Annotated[bool, typer.Option("--debug", help="Show full tracebacks on errors.")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Overwrite an existing -o file.")]


def _fail(exc: BaseException, debug: bool) -> None:
    if debug:
        console.print_exception()
    if isinstance(exc, OSError) and exc.filename:  # a path the user can fix
        exc = SynthaixError(
            f"cannot use {exc.filename}: {exc.strerror}", hint="check that path and its permissions"
        )
    message = str(exc) if isinstance(exc, SynthaixError) else f"{type(exc).__name__}: {exc}"
    console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    hint = getattr(exc, "hint", None)
    if hint:
        console.print(f"[dim]hint:[/] {escape(hint)}", highlight=False, soft_wrap=True)
    raise typer.Exit(2 if isinstance(exc, SynthaixError) else 1)


@app.command()
def validate(config: ConfigArg, debug: DebugOpt = False) -> None:
    """Check a config without generating anything."""
    try:
        dataset = load_config(config)
        check_output(dataset)
    except SynthaixError as exc:
        _fail(exc, debug)
    table = Table(title=f"{dataset.name}: {dataset.rows:,} rows, seed {dataset.seed}")
    for heading in ("column", "type", "nullable", "unique"):
        table.add_column(heading)
    for column in dataset.columns:
        table.add_row(
            column.name,
            column.type,  # type: ignore[attr-defined]
            f"{column.nullable:.0%}" if column.nullable else "",
            "yes" if column.unique else "",
        )
    out.print(table)
    out.print(f"[green]OK[/] {config} is valid; outputs go to {dataset.output_dir}")


@app.command()
def schema(
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="Write to this file.")
    ] = None,
) -> None:
    """Print the JSON Schema of dataset configs (for editor completion and checks)."""
    text = json.dumps(DatasetConfig.model_json_schema(), indent=2) + "\n"
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text, encoding="utf-8")


class ExportFormat(StrEnum):
    csv = "csv"
    jsonl = "jsonl"
    parquet = "parquet"


class Mode(StrEnum):
    overwrite = "overwrite"
    append = "append"


class Runner(StrEnum):
    thread = "thread"
    dask = "dask"
    ray = "ray"


class _RichProgress:
    def __init__(self, bar: Progress) -> None:
        self.bar = bar
        self.task = bar.add_task("starting Prefect", total=None)

    def started(self, dataset: str, total_rows: int) -> None:
        self.bar.update(self.task, description=f"building {dataset}", total=total_rows)
        _interrupts.flow_started()

    def advanced(self, rows: int) -> None:
        self.bar.advance(self.task, rows)

    def publishing(self) -> None:
        _interrupts.phase = "publishing"

    def published(self) -> None:
        _interrupts.published()

    def not_published(self) -> None:
        _interrupts.failed()


class _Interrupts:
    """Ctrl-C and SIGTERM (from `timeout`, systemd, Kubernetes) stop a build within seconds,
    and say truthfully whether it published. Outputs change only while publishing, which takes
    a moment: a signal then waits for it to finish. Staged parts are removed, a flow run on a
    Prefect server is set to Cancelled, and the temporary server is stopped."""

    def __init__(self) -> None:
        self.phase = "building"  # -> publishing -> published
        self.pending: int | None = None
        self.run_id: str | None = None
        self.cancel_run = False

    def install(self) -> dict[int, Any]:
        """Handle both signals; returns the handlers they had, to restore after the build."""
        return {s: signal.signal(s, self.handle) for s in (signal.SIGINT, signal.SIGTERM)}

    def flow_started(self) -> None:
        from prefect.runtime import flow_run

        self.run_id = flow_run.get_id()
        if threading.current_thread() is threading.main_thread():
            self.install()  # the flow engine put its own SIGTERM handler in place of ours

    def published(self) -> None:
        self.phase = "published"
        if self.pending is not None:
            self.exit(self.pending)

    def failed(self) -> None:
        self.phase = "building"
        if self.pending is not None:
            self.exit(self.pending)

    def handle(self, signum: int, frame: object) -> None:
        if self.phase == "publishing":
            self.pending = signum
            return
        self.exit(signum)

    def exit(self, signum: int) -> None:
        from flows.local_server import stop_temporary_servers
        from synthaix.sink import discard_staged_parts

        name = signal.Signals(signum).name
        if self.phase == "published":
            what = "published; interrupted during shutdown"
        else:
            what = "nothing published; the previous output is unchanged"
        console.print(f"[yellow]interrupted ({name}):[/] {what}")
        discard_staged_parts()
        if self.cancel_run and self.run_id:
            _cancel_flow_run(self.run_id, f"interrupted by {name}")
        stop_temporary_servers()
        os._exit(128 + signum)


_interrupts = _Interrupts()


def _cancel_flow_run(run_id: str, message: str) -> None:
    """Mark the run Cancelled on the server (else it shows RUNNING forever); at most 3 s."""

    def cancel() -> None:
        from prefect.client.orchestration import get_client
        from prefect.states import Cancelled

        with contextlib.suppress(Exception), get_client(sync_client=True) as client:
            client.set_flow_run_state(run_id, Cancelled(message=message), force=True)

    worker = threading.Thread(target=cancel, daemon=True)
    worker.start()
    worker.join(timeout=3)


@app.command()
def build(
    config: ConfigArg,
    rows: Annotated[int | None, typer.Option(help="Override the number of rows.")] = None,
    seed: Annotated[int | None, typer.Option(help="Override the seed.")] = None,
    out_dir: Annotated[Path | None, typer.Option("--out", help="Override output.dir.")] = None,
    mode: Annotated[Mode | None, typer.Option(help="Override mode.", show_default=False)] = None,
    runner: Annotated[
        Runner | None, typer.Option(help="Override runner.type.", show_default=False)
    ] = None,
    report: Annotated[bool, typer.Option("--report", help="Write report.html at the end.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", help="Show Prefect's logs.")] = False,
    debug: DebugOpt = False,
) -> None:
    """Build a dataset: generate, check, and write Parquet + DuckDB outputs."""
    started = time.perf_counter()
    global _interrupts
    _interrupts = _Interrupts()  # a fresh state for each build of the process
    previous_handlers = _interrupts.install()
    try:
        # Check config, outputs and endpoint before starting Prefect (~10 s), so mistakes fail
        # at once with nothing written.
        dataset = load_config(config).with_overrides(
            rows=rows,
            seed=seed,
            out=out_dir,
            mode=mode.value if mode else None,
            runner=runner.value if runner else None,
        )
        check_output(dataset)
        if any(isinstance(c, LlmColumn) for c in dataset.columns):
            LlmClient(dataset.provider).check()
        if not verbose:
            # Prefect's console logs would interleave with the progress bar; they still reach
            # the Prefect API (and UI) when one is configured.
            os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "CRITICAL")
            os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_FLOW_RUNS_LEVEL", "CRITICAL")
        from flows.build_dataset import build_dataset
        from flows.local_server import prefect_api

        columns = [
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("rows"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
        ]
        bar = Progress(*columns, console=console, transient=True, disable=not console.is_terminal)
        with bar, progress.listening(_RichProgress(bar)), prefect_api() as temporary:
            _interrupts.cancel_run = temporary is None  # a temporary server dies with us anyway
            manifest = build_dataset(config=dataset, preflight=False)  # checked above
    except Exception as exc:  # the one place that turns any failure into a one-line message
        _interrupts.failed()
        _fail(exc, debug)
    finally:
        for signum, handler in previous_handlers.items():
            signal.signal(signum, handler)

    wall = time.perf_counter() - started
    rows_built = manifest.rows
    appended = f" ({rows_built.total:,} in total)" if manifest.mode == "append" else ""
    out.print(
        f"[green]built[/] {manifest.dataset}: {rows_built.delivered:,} rows{appended} in "
        f"{wall:.1f} s (flow {manifest.build_seconds:.1f} s, "
        f"{manifest.rows_per_second:,.0f} rows/s)"
    )
    dropped = manifest.dropped
    redrawn = {
        "repeating a unique value": dropped.unique_value,
        "exact duplicates": dropped.exact_duplicate,
        "near duplicates": dropped.near_duplicate,
    }
    if any(redrawn.values()):
        causes = ", ".join(f"{count:,} {why}" for why, count in redrawn.items() if count)
        fills = manifest.fill_rounds
        out.print(f"  redrew {causes} ({fills} fill-up round{'s' if fills != 1 else ''})")
    llm = manifest.llm
    if llm.requests:
        out.print(
            f"  llm: {llm.requests:,} requests, {llm.tokens:,} tokens "
            f"({llm.tokens / max(rows_built.delivered, 1):,.0f} a row), ${llm.cost_usd:,.4f}"
        )
        if llm.retries:
            out.print(f"  retries: {_counts(llm.retries)}")
        if llm.rejected_rows:
            out.print(f"  rejected rows: {_counts(llm.rejected_rows)}")
    for kind, path in manifest.outputs.items():
        out.print(f"  {kind}: {path}")
    out.print(f"  manifest: {dataset.output_dir / 'manifest.json'}")
    if report:
        _report(dataset.output_dir, None, debug)


def _refuse_existing(path: Path | None, force: bool, debug: bool) -> None:
    """A file named with -o may be the user's: never overwritten without --force."""
    if path is not None and path.is_file() and not force:
        hint = "choose another -o path, or add --force to overwrite it"
        _fail(SynthaixError(f"{path} exists", hint=hint), debug)


def _report(output_dir: Path, target: Path | None, debug: bool) -> None:
    from synthaix.report.html import write_report

    if not (output_dir / "manifest.json").is_file():
        hint = "pass a build's output directory, e.g. out/customers (synthaix build CONFIG first)"
        _fail(
            SynthaixError(f"{output_dir} is not the output directory of a build", hint=hint), debug
        )
    try:
        path = write_report(output_dir, target)
    except FileNotFoundError as exc:
        _fail(SynthaixError(f"{exc}", hint="build the dataset first: synthaix build CONFIG"), debug)
    out.print(f"  report: {path}")


@app.command()
def serve(
    spec: Annotated[
        Path, typer.Option("--file", help="The prefect.yaml whose deployments to serve.")
    ] = Path("prefect.yaml"),
    only: Annotated[
        list[str] | None, typer.Option("--only", help="Serve only this deployment (repeatable).")
    ] = None,
    debug: DebugOpt = False,
) -> None:
    """Run the scheduled deployments of prefect.yaml on this machine until Ctrl-C."""
    try:
        from flows.serve import serve_deployments

        serve_deployments(spec, only)
    except Exception as exc:
        _fail(exc, debug)


@app.command("report")
def report_command(
    output_dir: Annotated[Path, typer.Argument(help="A build's output directory.")],
    output: Annotated[Path | None, typer.Option("-o", "--output", help="HTML file.")] = None,
    force: ForceOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Write a self-contained HTML report: profile, charts, constraint checks, samples."""
    _refuse_existing(output, force, debug)
    _report(output_dir, output, debug)


class PreviewFormat(StrEnum):
    table = "table"
    csv = "csv"
    jsonl = "jsonl"


@app.command()
def preview(
    config: ConfigArg,
    rows: Annotated[int, typer.Option(min=1, help="Rows to show.")] = 20,
    seed: Annotated[int | None, typer.Option(help="Override the seed.")] = None,
    fmt: Annotated[
        PreviewFormat, typer.Option("--format", help="table for people; csv or jsonl for scripts.")
    ] = PreviewFormat.table,
    debug: DebugOpt = False,
) -> None:
    """Show the first rows a build makes (unique values and dedupe applied); writes nothing."""
    from synthaix.build.preview import preview_rows

    try:
        dataset = load_config(config).with_overrides(rows=rows, seed=seed)
        table = preview_rows(dataset, llm=_llm_reachable(dataset))
    except Exception as exc:
        _fail(exc, debug)
    if fmt is PreviewFormat.table:
        view = Table(title=f"{dataset.name}: first {table.num_rows} rows (seed {dataset.seed})")
        for field in table.schema:
            view.add_column(f"{field.name}\n[dim]{field.type}[/]", overflow="fold", max_width=40)
        for row in table.to_pylist():
            view.add_row(*("[dim]null[/]" if v is None else escape(str(v)) for v in row.values()))
        out.print(view)
        return
    import pyarrow.csv as pa_csv

    if fmt is PreviewFormat.csv:
        sink = pa.BufferOutputStream()
        pa_csv.write_csv(table, sink)
        sys.stdout.write(sink.getvalue().to_pybytes().decode())
    else:
        for row in table.to_pylist():
            sys.stdout.write(json.dumps(row, default=str, ensure_ascii=False) + "\n")


def _llm_reachable(dataset: DatasetConfig) -> bool:
    """A preview fills llm columns when the provider can be used; else it says why not."""
    if not any(isinstance(c, LlmColumn) for c in dataset.columns):
        return False
    try:
        LlmClient(dataset.provider)
    except SynthaixError as exc:
        console.print(f"[yellow]note:[/] llm columns left empty: {escape(str(exc))}")
        return False
    return True


@app.command()
def export(
    output_dir: Annotated[Path, typer.Argument(help="A build's output directory.")],
    fmt: Annotated[ExportFormat, typer.Option("--format", help="File format.")] = ExportFormat.csv,
    output: Annotated[Path | None, typer.Option("-o", "--output", help="File to write.")] = None,
    force: ForceOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Export a built dataset to one CSV, JSON Lines or Parquet file."""
    from synthaix.export import export_dataset

    try:
        path = export_dataset(output_dir, fmt.value, output, overwrite=force)
    except Exception as exc:
        _fail(exc, debug)
    out.print(f"[green]wrote[/] {path}")


def _counts(counter: Counter[str]) -> str:
    return ", ".join(f"{cause} {n:,}" for cause, n in counter.most_common())


@app.command()
def translate(
    description: Annotated[str, typer.Argument(help="The dataset, in plain words.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Config file to write.")],
    rows: Annotated[int, typer.Option(help="Rows the config asks for.")] = 1000,
    base_url: Annotated[
        str | None, typer.Option(help="Endpoint (default $OPENAI_BASE_URL).")
    ] = None,
    model: Annotated[str, typer.Option(help="Model name.")] = "gpt-4o-mini",
    api_key_env: Annotated[str, typer.Option(help="Variable holding the key.")] = "OPENAI_API_KEY",
    force: ForceOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Ask the LLM for a dataset config matching a description, and write it as YAML."""
    _refuse_existing(output, force, debug)
    from synthaix.llm.provider import ProviderConfig
    from synthaix.llm.translate import to_yaml
    from synthaix.llm.translate import translate as run

    try:
        provider = ProviderConfig(base_url=base_url, model=model, api_key_env=api_key_env)
        config, notes = run(description, provider, rows=rows, name=_name_from(output))
        write_text_atomic(output, to_yaml(config, notes))
    except Exception as exc:
        _fail(exc, debug)
    out.print(f"[green]wrote[/] {output}: {len(config.columns)} columns")
    for note in notes:
        out.print(f"  repaired: {note}")
    out.print(f"next: synthaix validate {output} && synthaix build {output}")


def _name_from(path: Path) -> str | None:
    stem = re.sub(r"[^A-Za-z0-9_]+", "_", path.stem).strip("_")
    return stem if stem and not stem[0].isdigit() else None


@app.command()
def sim(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port (0 picks a free one).")] = 8089,
    latency: Annotated[float, typer.Option(help="Seconds per request.")] = 0.2,
    latency_per_token: Annotated[float, typer.Option(help="Seconds per output token.")] = 0.0,
    rpm: Annotated[int | None, typer.Option(help="Requests per minute before 429s.")] = None,
    tpm: Annotated[int | None, typer.Option(help="Tokens per minute before 429s.")] = None,
    faults: Annotated[
        str, typer.Option(help="Fault rates, e.g. malformed=0.3,rate_limit=0.1,server_error=0.05")
    ] = "",
    seed: Annotated[int, typer.Option(help="Seed of the simulator's choices.")] = 0,
) -> None:
    """Run the OpenAI-compatible simulator: try the LLM path with no key."""
    from synthaix.sim.faults import FaultRates
    from synthaix.sim.server import SimConfig, SimServer

    try:
        rates = FaultRates.parse(faults)
    except ValueError as exc:
        _fail(SynthaixError(f"--faults: {exc}"), False)
    config = SimConfig(latency, latency_per_token, rpm, tpm, rates, seed=seed)
    server = SimServer(config, host, port)
    out.print(f"simulator on {server.url} (models: {', '.join(config.models)}); Ctrl-C stops it")
    out.print(f"  use it with: provider: {{base_url: {server.url}, model: sim-small}}")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        server.server_close()


if __name__ == "__main__":
    app()
