"""`synthaix build`: the command that runs the build flow."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from pathlib import Path
from typing import Annotated, Any, Literal

import rich.progress as bars
import typer
from rich.markup import escape

from synthaix import progress
from synthaix.cli.app import ConfigArg, DebugOpt, _counts, _fail, _report, app, console, out
from synthaix.columns.llm import LlmColumn
from synthaix.config import load_config
from synthaix.llm.client import LlmClient
from synthaix.relational.config import RelationalConfig, llm_tables
from synthaix.relational.manifest import DatasetManifest
from synthaix.relational.sink import RelationalWriter
from synthaix.sink import check_output


class _Watch:
    """A build's progress bar and signal handler. Ctrl-C and SIGTERM (from `timeout`, systemd,
    Kubernetes) stop a build within seconds, and say truthfully whether it published. Outputs
    change only while publishing, which takes a moment: a signal then waits for it to finish.
    Staged parts are removed, a flow run on a Prefect server is set to Cancelled, and the
    temporary server is stopped."""

    def __init__(self) -> None:
        self.bar = bars.Progress(
            bars.SpinnerColumn(),
            bars.TextColumn("{task.description}"),
            bars.BarColumn(),
            bars.MofNCompleteColumn(),
            bars.TextColumn("rows"),
            bars.TimeElapsedColumn(),
            bars.TimeRemainingColumn(),
            console=console,
            transient=True,
            disable=not console.is_terminal,
        )
        self.task = self.bar.add_task("starting Prefect", total=None)
        self.phase = "building"  # -> publishing -> published
        self.pending: int | None = None
        self.run_id: str | None = None
        self.cancel_run = False

    def install(self) -> dict[int, Any]:
        return {s: signal.signal(s, self.handle) for s in (signal.SIGINT, signal.SIGTERM)}

    def started(self, dataset: str, total_rows: int) -> None:
        from prefect.runtime import flow_run

        self.bar.update(self.task, description=f"building {dataset}", total=total_rows)
        self.run_id = flow_run.get_id()
        if threading.current_thread() is threading.main_thread():
            self.install()  # the flow engine put its own SIGTERM handler in place of ours

    def advanced(self, rows: int) -> None:
        self.bar.advance(self.task, rows)

    def publishing(self) -> None:
        self.phase = "publishing"

    def published(self) -> None:
        self.phase = "published"
        if self.pending is not None:
            self.exit(self.pending)

    def not_published(self) -> None:
        self.phase = "building"
        if self.pending is not None:
            self.exit(self.pending)

    def handle(self, signum: int, frame: object) -> None:
        if self.phase == "publishing":
            self.pending = signum
        else:
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
    mode: Annotated[
        Literal["overwrite", "append"] | None,
        typer.Option(help="Override mode.", show_default=False),
    ] = None,
    runner: Annotated[
        Literal["thread", "dask", "ray"] | None,
        typer.Option(help="Override runner.type.", show_default=False),
    ] = None,
    report: Annotated[bool, typer.Option("--report", help="Write report.html at the end.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", help="Show Prefect's logs.")] = False,
    debug: DebugOpt = False,
) -> None:
    """Build a dataset: generate, check, and write Parquet + DuckDB outputs."""
    started = time.perf_counter()
    watch = _Watch()
    previous_handlers = watch.install()
    try:
        # Check config, outputs and endpoint before starting Prefect (~10 s), so mistakes fail
        # at once with nothing written.
        overrides = {"rows": rows, "seed": seed, "out": out_dir, "mode": mode, "runner": runner}
        dataset = load_config(config).with_overrides(**overrides)
        if isinstance(dataset, RelationalConfig):
            RelationalWriter(dataset).check()
            with_llm = [dataset.plan(t).config for t in llm_tables(dataset)]
        else:
            check_output(dataset)
            with_llm = [dataset] if any(isinstance(c, LlmColumn) for c in dataset.columns) else []
        if with_llm:
            LlmClient(with_llm[0].provider).check()
        if not verbose:
            # Prefect's console logs would interleave with the progress bar; they still reach
            # the Prefect API (and UI) when one is configured.
            os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "CRITICAL")
            os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_FLOW_RUNS_LEVEL", "CRITICAL")
        from flows.build_dataset import build_dataset
        from flows.local_server import prefect_api

        with watch.bar, progress.listening(watch), prefect_api() as temporary:
            watch.cancel_run = temporary is None  # a temporary server dies with us anyway
            manifest = build_dataset(config=dataset, preflight=False)  # checked above
    except Exception as exc:  # the one place that turns any failure into a one-line message
        watch.not_published()
        _fail(exc, debug)
    finally:
        for signum, handler in previous_handlers.items():
            signal.signal(signum, handler)

    wall = time.perf_counter() - started
    if isinstance(manifest, DatasetManifest):
        _print_tables(manifest, wall)
        if report:
            _report(dataset.output_dir, None, debug)
        return
    delivered, llm, fills = manifest.rows.delivered, manifest.llm, manifest.fill_rounds
    appended = f" ({manifest.rows.total:,} in total)" if manifest.mode == "append" else ""
    out.print(
        f"[green]built[/] {manifest.dataset}: {delivered:,} rows{appended} in {wall:.1f} s "
        f"(flow {manifest.build_seconds:.1f} s, {manifest.rows_per_second:,.0f} rows/s)"
    )
    if manifest.resumed_chunks:
        out.print(f"  resumed {manifest.resumed_chunks:,} chunks saved by an interrupted attempt")
    redrawn = {
        "repeating a unique value": manifest.dropped.unique_value,
        "exact duplicates": manifest.dropped.exact_duplicate,
        "near duplicates": manifest.dropped.near_duplicate,
        **{f"breaking {escape(k)}": n for k, n in manifest.dropped.constraint.items()},
    }
    if any(redrawn.values()):
        causes = ", ".join(f"{count:,} {why}" for why, count in redrawn.items() if count)
        out.print(f"  redrew {causes} ({fills} fill-up round{'s' if fills != 1 else ''})")
    if llm.requests:
        out.print(
            f"  llm: {llm.requests:,} requests, {llm.tokens:,} tokens "
            f"({llm.tokens / max(delivered, 1):,.0f} a row), ${llm.cost_usd:,.4f}"
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


def _print_tables(manifest: DatasetManifest, wall: float) -> None:
    out.print(
        f"[green]built[/] {manifest.dataset}: {manifest.delivered:,} rows in "
        f"{len(manifest.tables)} tables in {wall:.1f} s"
    )
    for name in manifest.order:
        table = manifest.tables[name]
        appended = f" ({table.rows.total:,} in total)" if manifest.mode == "append" else ""
        redrawn = f", {table.dropped.total:,} redrawn" if table.dropped.total else ""
        llm = table.llm
        cost = f", llm {llm.requests:,} requests ${llm.cost_usd:,.4f}" if llm.requests else ""
        resumed = f", {table.resumed_chunks} chunks resumed" if table.resumed_chunks else ""
        out.print(f"  {name}: {table.rows.delivered:,} rows{appended}{redrawn}{cost}{resumed}")
    for kind, path in manifest.outputs.items():
        out.print(f"  {kind}: {path}")
