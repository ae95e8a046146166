"""`synthaix build`: the command that runs the build flow."""

from __future__ import annotations

import contextlib
import importlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import rich.progress as bars
import typer
from rich.markup import escape

from synthaix import progress
from synthaix.build.manifest import TIMED_OUT, Dropped, chunks_and_rows, pacing
from synthaix.cli.app import (
    AsOfOpt,
    DebugOpt,
    SetOpt,
    _counts,
    _fail,
    _report,
    _say_spent,
    app,
    console,
    out,
    rows_text,
    traceback_of,
    unexpected,
)
from synthaix.columns.llm import LlmColumn
from synthaix.config import load_config
from synthaix.dedupe.target import lance_tables
from synthaix.errors import ConfigError, OutputError, SynthaixError
from synthaix.fence import confine, dedupe_path, output_root, rebase
from synthaix.llm.stats import EMBEDDING_PRICE, spend, spent_before, usd
from synthaix.overrides import apply_overrides, parse_assignment, typed
from synthaix.relational.config import RelationalConfig, llm_tables

if TYPE_CHECKING:  # loaded by the commands that use them: every CLI start imports this module
    from synthaix.relational.manifest import DatasetManifest

# Without a terminal (CI logs, nohup, a scheduler's log file) there is no bar: a line this
# often instead, so a long build is not silent until its summary. Short builds print none.
PLAIN_EVERY = 30.0


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


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
        # A batch (several configs): what an interrupt says it stopped, and what was published.
        self.batch = False
        self.current: str | None = None  # the dataset being built, or just published
        self.built: list[str] = []  # published, in order
        self.left: list[str] = []  # not started yet
        self.paths: dict[str, Path] = {}  # each dataset's config, to say what is left to build
        self.appends: set[str] = set()  # datasets built with mode append
        self.failed: list[str] = []  # datasets whose build failed
        self.as_of: Any = None  # the build's, when its config uses one: a resume needs it
        self.heartbeats: Any = None  # flows.heartbeat.Heartbeats: they stop on an interrupt
        self.reason: str | None = None  # why, when not a signal from outside
        self.building = ""  # the dataset (or table) the bar counts, for the plain lines
        self.began = False  # a build started generating: a failure says what became of it
        self.said_at = time.monotonic()  # the last plain line, or the build's start
        self._saying = threading.Lock()

    def begin(self, dataset: str) -> None:
        """A batch's next build starts."""
        self.current, self.phase, self.run_id = dataset, "building", None
        if dataset in self.left:
            self.left.remove(dataset)
        self.bar.reset(self.task, description=f"building {dataset}", total=None)

    def install(self) -> dict[int, Any]:
        return {s: signal.signal(s, self.handle) for s in (signal.SIGINT, signal.SIGTERM)}

    def started(self, dataset: str, total_rows: int) -> None:
        from prefect.runtime import flow_run

        self.bar.update(self.task, description=f"building {dataset}", total=total_rows)
        self.began = True
        if dataset != self.building:
            self.building, self.said_at = dataset, time.monotonic()
            if not console.is_terminal:  # a chunk may take minutes (llm columns): a clock too
                threading.Thread(target=self._ticking, args=(dataset,), daemon=True).start()
        self.run_id = flow_run.get_id()
        if threading.current_thread() is threading.main_thread():
            self.install()  # the flow engine put its own SIGTERM handler in place of ours

    def advanced(self, rows: int) -> None:
        self.bar.advance(self.task, rows)
        if not console.is_terminal:
            self._plain_line()

    def _ticking(self, dataset: str) -> None:
        """Plain lines while `dataset` builds, rows or not."""
        while self.building == dataset and self.phase == "building":
            time.sleep(min(1.0, max(PLAIN_EVERY, 0.05)))
            if self.building == dataset and self.phase == "building":
                self._plain_line()

    def _plain_line(self) -> None:
        """`orders: 2,400,000 of 5,000,000 rows (48%), 1 min 05 s, about 1 min 10 s left`,
        at most every PLAIN_EVERY seconds."""
        with self._saying:
            if time.monotonic() - self.said_at < PLAIN_EVERY:
                return
            self.said_at = time.monotonic()
            task = self.bar.tasks[0]
            done, total = int(task.completed), int(task.total or 0)
            share = f" ({done / total:.0%})" if total else ""
            left = task.time_remaining
            eta = f", about {_duration(left)} left" if left else ""
            console.print(
                f"{escape(self.building)}: {done:,} of {total:,} rows{share}, "
                f"{_duration(task.elapsed or 0)}{eta}",
                highlight=False,
            )

    def publishing(self) -> None:
        self.phase = "publishing"
        # The bar stood at 100 % without a word while a big build published (10 s at 3M rows).
        self.bar.update(self.task, description="publishing")
        if not console.is_terminal and (self.bar.tasks[0].elapsed or 0) >= PLAIN_EVERY:
            console.print(f"{escape(self.building)}: publishing", highlight=False)

    def note(self, text: str) -> None:
        console.print(f"[yellow]note:[/] {escape(text)}")

    def published(self) -> None:
        self.phase = "published"
        if self.batch and self.current is not None and self.current not in self.built:
            self.built.append(self.current)
        if self.pending is not None:
            self.exit(self.pending)

    def not_published(self) -> None:
        self.phase, self.building = "building", ""  # "": its plain lines stop
        if self.pending is not None:
            self.exit(self.pending)

    def cancelled(self) -> None:
        """The run was cancelled on the Prefect server (the UI, `prefect flow-run cancel`):
        stopped as by SIGTERM, on the main thread (its handler), saying why. (A temporary
        server's run: nobody else can reach it.)"""
        if self.cancel_run:
            self.reason = "cancelled on the Prefect server"
            os.kill(os.getpid(), signal.SIGTERM)

    def handle(self, signum: int, frame: object) -> None:
        if self.phase == "publishing":
            self.pending = signum
        else:
            self.exit(signum)

    def exit(self, signum: int) -> None:
        from flows.local_server import stop_temporary_servers
        from synthaix.sink import discard_staged_parts

        name = self.reason or signal.Signals(signum).name
        if self.batch:
            where, what = self._batch_state()
            console.print(f"[yellow]interrupted ({name}){escape(where)}:[/] {escape(what)}")
            self._say_what_is_left()
        else:
            if self.phase == "published":
                what = "published; interrupted during shutdown"
            else:
                what = "nothing published; the previous output is unchanged"
            console.print(f"[yellow]interrupted ({name}):[/] {what}")
        if self.as_of is not None and self.phase != "published":
            at = f"{self.as_of:%Y-%m-%dT%H:%M:%S}"
            console.print(f"  to resume it, build again with --as-of {at}")
        discard_staged_parts()
        if self.heartbeats is not None:
            self.heartbeats.stop()  # before the run is set Cancelled: no heartbeat after it
        if self.cancel_run and self.run_id:
            why = name if self.reason else f"interrupted by {name}"
            _cancel_flow_run(self.run_id, why)
        stop_temporary_servers()
        os._exit(128 + signum)

    def _say_what_is_left(self) -> None:
        """The configs a batch stopped before publishing, as a command finishes them (the
        whole batch again would build the published ones again: a second append)."""
        unfinished = [] if self.phase == "published" or self.current is None else [self.current]
        names = [*self.failed, *unfinished, *self.left]
        paths = list(dict.fromkeys(str(self.paths[n]) for n in names if n in self.paths))
        if not paths:
            return
        again = [n for n in self.built if n in self.appends]
        warning = f"; the whole batch would append {', '.join(again)} again" if again else ""
        console.print(
            f"  to finish it, build only: {escape(' '.join(paths))} (with the same options)"
            + escape(warning)
        )

    def _batch_state(self) -> tuple[str, str]:
        """Which dataset an interrupt stopped, and what of the batch is published."""
        parts = []
        if self.current is None:
            where = ""
        elif self.phase == "published":
            where = f" after publishing {self.current}"
        else:
            where = f" while building {self.current}"
            parts.append(f"nothing of {self.current} published, its previous output is unchanged")
        if self.built:
            parts.append(f"built and published: {', '.join(self.built)}")
        elif self.current is None:
            parts.append("nothing published; the previous outputs are unchanged")
        if self.failed:
            parts.append(f"failed: {', '.join(self.failed)}")
        if self.left:
            parts.append(f"not built: {', '.join(self.left)}")
        return where, "; ".join(parts)


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


def _seed(text: str) -> int | str:
    if text.strip() == "as_of":
        return "as_of"
    try:
        return int(text)
    except ValueError:
        raise typer.BadParameter(f"{text!r} is neither an integer nor as_of") from None


ConfigsArg = Annotated[
    list[Path],
    typer.Argument(
        help="Dataset configs (YAML), or folders of them (their *.yaml and *.yml files). "
        "Several build one after another in one Prefect session.",
        show_default=False,
    ),
]
UNSET = "Unset: the config's value."


@app.command()
def build(
    configs: ConfigsArg,
    rows: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Rows to build (of a multi-table config: of each table without a parent; "
            f"children's totals scale with them). {UNSET}",
            show_default=False,
        ),
    ] = None,
    seed: Annotated[
        Any,
        typer.Option(
            parser=_seed,
            metavar="INTEGER|as_of",
            help=f"The seed, or as_of: a seed derived from the as-of time. {UNSET}",
            show_default=False,
        ),
    ] = None,
    out_dir: Annotated[
        Path | None,
        typer.Option("--out", help=f"Output folder (output.dir). {UNSET}", show_default=False),
    ] = None,
    mode: Annotated[
        Literal["overwrite", "append"] | None,
        typer.Option(help=f"overwrite or append. {UNSET}", show_default=False),
    ] = None,
    runner: Annotated[
        Literal["thread", "dask", "ray"] | None,
        typer.Option(help=f"runner.type. {UNSET}", show_default=False),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            min=1, help=f"Chunk tasks at once (runner.workers). {UNSET}", show_default=False
        ),
    ] = None,
    chunk_size: Annotated[
        int | None,
        typer.Option(min=1, help=f"Rows per chunk task. {UNSET}", show_default=False),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(help=f"LLM model (provider.model). {UNSET}", show_default=False),
    ] = None,
    base_url: Annotated[
        str | None,
        typer.Option(help=f"LLM endpoint (provider.base_url). {UNSET}", show_default=False),
    ] = None,
    as_of: AsOfOpt = None,
    assignments: SetOpt = None,
    report: Annotated[
        bool, typer.Option("--report", help="Write each dataset's report.html at the end.")
    ] = False,
    verbose: Annotated[bool, typer.Option("--verbose", help="Show Prefect's logs.")] = False,
    debug: DebugOpt = False,
) -> None:
    """Build datasets: generate, check, and write Parquet + DuckDB outputs. Options apply to
    every config given."""
    started = time.perf_counter()
    watch = _Watch()
    previous_handlers = watch.install()
    code, batch = 0, False
    try:
        # Check options, configs, outputs and endpoints before starting Prefect (~10 s), so
        # mistakes fail at once with nothing written.
        chosen = {
            "rows": rows,
            "seed": seed,
            "out": out_dir,
            "mode": mode,
            "runner": runner,
            "workers": workers,
            "chunk_size": chunk_size,
            "model": model,
            "base_url": base_url,
            "as_of": as_of,
        }
        overrides = typed(chosen) | dict(parse_assignment(a) for a in assignments or [])
        paths, batch = _config_files(configs)
        if batch:
            code = _build_batch(paths, overrides, watch, report, verbose, debug)
        else:
            dataset = _prepare(paths[0], overrides)
            _quiet_prefect(verbose)
            with watch.bar, progress.listening(watch), _api() as temporary, _beating(watch):
                watch.cancel_run = temporary is None  # a temporary server dies with us anyway
                watch.as_of = dataset.as_of
                manifest = _flow()(config=dataset, preflight=False)  # checked above
    except Exception as exc:  # the one place that turns any failure into a one-line message
        if watch.phase == "published":  # its data are whole: a retry would append them twice
            if code := _after_publish(dataset, exc):
                raise typer.Exit(code) from None
            return
        watch.not_published()
        if watch.began:  # it had started: say, as an interrupt does, what became of it
            console.print(
                f"[yellow]nothing published:[/] {escape(str(dataset.output_dir))} is as it was"
            )
        _fail(exc, debug)
    finally:
        for signum, handler in previous_handlers.items():
            signal.signal(signum, handler)
    if batch:
        if code:
            raise typer.Exit(code)
        return

    wall = time.perf_counter() - started
    from synthaix.relational.manifest import DatasetManifest

    if isinstance(manifest, DatasetManifest):
        _print_tables(manifest, wall)
        if report:
            _report(dataset.output_dir, None, debug)
        return
    delivered, llm, fills = manifest.rows.delivered, manifest.llm, manifest.fill_rounds
    appended = f" ({manifest.rows.total:,} in total)" if manifest.mode == "append" else ""
    out.print(
        f"[green]built[/] {manifest.dataset}: {rows_text(delivered)}{appended} in {wall:.1f} s "
        f"(flow {manifest.build_seconds:.1f} s, {manifest.rows_per_second:,.0f} rows/s)"
    )
    if manifest.resumed_chunks:
        out.print(
            f"  resumed {chunks_and_rows(manifest.resumed_chunks, manifest.resumed_rows)} "
            "saved by an interrupted attempt"
        )
    if causes := _redrawn(manifest.dropped):
        rounds = f"{fills} fill-up round{'s' if fills != 1 else ''}"
        if not fills:  # replaced by rows planned ahead in the first round
            rounds = "from spare rows of the first round, no fill-up round"
        out.print(f"  redrew {causes} ({rounds})")
    if llm.requests:
        out.print(
            f"  llm: {llm.requests:,} request{'s' * (llm.requests != 1)}, {llm.tokens:,} tokens "
            f"({llm.tokens / max(llm.rows_filled or delivered, 1):,.0f} a row filled), {usd(llm)}"
        )
    if timed_out := llm.retries.get("timeout", 0):
        out.print(f"  timed out: {timed_out:,} {TIMED_OUT}")
    if (spent := manifest.embeddings).requests:
        out.print(f"  embeddings: {spend(spent, EMBEDDING_PRICE)}")
    total = manifest.llm_total
    if manifest.earlier_attempts and total.requests:
        out.print(f"  llm, all {len(manifest.earlier_attempts) + 1} attempts: {spend(total)}")
    _llm_details(llm, "  ")
    for kind, path in manifest.outputs.items():
        out.print(f"  {kind}: {path}")
    out.print(f"  manifest: {dataset.output_dir / 'manifest.json'}")
    if report:
        _report(dataset.output_dir, None, debug)


def _llm_details(llm: Any, indent: str) -> None:
    """What the provider allowed, and what was retried and rejected, of a build's requests."""
    if not llm.requests:
        return
    out.print(f"{indent}pacing: {pacing(llm)}")
    if llm.retries:
        out.print(f"{indent}retries: {_counts(llm.retries)}")
    if llm.rejected_rows:
        out.print(f"{indent}rejected rows: {_counts(llm.rejected_rows)}")


def _redrawn(dropped: Dropped) -> str:
    """The rows dropped and replaced, by cause: `1,204 exact duplicates, 3 breaking ...`."""
    causes = {
        "with no valid LLM value": dropped.without_value,
        "repeating a unique value": dropped.unique_value,
        "exact duplicates": dropped.exact_duplicate,
        "near duplicates": dropped.near_duplicate,
    }
    if len(dropped.constraint) == 1:
        causes[f"breaking {escape(next(iter(dropped.constraint)))}"] = dropped.broke_constraints
    elif dropped.constraint:
        each = ", ".join(f"{escape(k)} {n:,}" for k, n in dropped.constraint.items())
        causes[f"breaking constraints ({each}; a row may break several)"] = (
            dropped.broke_constraints
        )
    return ", ".join(f"{count:,} {why}" for why, count in causes.items() if count)


def _print_tables(manifest: DatasetManifest, wall: float) -> None:
    out.print(
        f"[green]built[/] {manifest.dataset}: {rows_text(manifest.delivered)} in "
        f"{len(manifest.tables)} tables in {wall:.1f} s"
    )
    for name in manifest.order:
        table = manifest.tables[name]
        appended = f" ({table.rows.total:,} in total)" if manifest.mode == "append" else ""
        causes = _redrawn(table.dropped)
        redrawn = f", redrew {causes}" if causes else ""
        llm = table.llm
        cost = f", llm {spend(llm)}" if llm.requests else ""
        if table.earlier_attempts and table.llm_total.requests:
            cost += (
                f" (all attempts: {table.llm_total.requests:,}, {usd(table.llm_total, hint=False)})"
            )
        if (spent := table.embeddings).requests:
            cost += f", embeddings {spent.requests:,} requests {usd(spent, hint=False)}"
        resumed = (
            f", {chunks_and_rows(table.resumed_chunks, table.resumed_rows)} resumed"
            if table.resumed_chunks
            else ""
        )
        out.print(f"  {name}: {rows_text(table.rows.delivered)}{appended}{redrawn}{cost}{resumed}")
        if timed_out := llm.retries.get("timeout", 0):  # as for one table: cost understated
            out.print(f"    timed out: {timed_out:,} {TIMED_OUT}")
        _llm_details(llm, "    ")
    for kind, path in manifest.outputs.items():
        out.print(f"  {kind}: {path}")


def _config_files(arguments: list[Path]) -> tuple[list[Path], bool]:
    """The config files named (a folder: its *.yaml and *.yml, sorted), each once; and whether
    they are a batch (several, or a folder), which prints one line per dataset."""
    files: list[Path] = []
    for argument in arguments:
        if argument.is_dir():
            found = sorted(
                p for p in argument.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file()
            )
            if not found:
                raise ConfigError(f"{argument} holds no config (*.yaml or *.yml)")
            files.extend(found)
        else:
            files.append(argument)
    seen: set[Path] = set()
    unique = [f for f in files if not (f.resolve() in seen or seen.add(f.resolve()))]
    return unique, len(unique) > 1 or any(a.is_dir() for a in arguments)


def _prepare(path: Path, overrides: dict[str, Any]) -> Any:
    """The config with the options applied, its outputs and LLM endpoint checked."""
    # At load too: ranges are checked at that time, not at now (and again with the options,
    # which may make the config use it, as --seed as_of does).
    as_of = overrides.get("as_of")
    dataset = apply_overrides(load_config(path, as_of=as_of), overrides, origin="options")
    if as_of is not None and dataset.as_of is None:
        console.print(
            f"[yellow]note:[/] {escape(str(path))} has no relative times and no seed: as_of, "
            "so --as-of changes nothing"
        )
    if root := output_root():  # as the flow does (tasks/plan.py), so checks see the real paths
        dataset = rebase(dataset, root)
        confine(dataset, root)
    from synthaix.llm.client import LlmClient
    from synthaix.relational.sink import RelationalWriter
    from synthaix.sink import check_output

    if isinstance(dataset, RelationalConfig):
        RelationalWriter(dataset).check()
        with_llm = [dataset.plan(t).config for t in llm_tables(dataset)]
    else:
        check_output(dataset)
        with_llm = [dataset] if any(isinstance(c, LlmColumn) for c in dataset.columns) else []
    if with_llm:
        LlmClient(with_llm[0].provider).check()
    return dataset


def _api() -> Any:
    """The Prefect API to build with. A temporary server starts, when one is needed, before
    Prefect is imported, and boots while the flow is imported."""
    from flows.local_server import prefect_api, spawn_early

    return prefect_api(meanwhile=_flow, early=spawn_early())


@contextlib.contextmanager
def _beating(watch: _Watch) -> Iterator[None]:
    """Flow-run heartbeats sent by this process, which stop as each run's body ends (see
    flows/heartbeat.py)."""
    from flows.heartbeat import Heartbeats

    with Heartbeats() as watch.heartbeats:
        watch.heartbeats.on_cancel = watch.cancelled
        yield


def _flow() -> Any:
    """The build flow (importing it imports Prefect: ~1.5 s), and what Prefect imports only
    when a flow runs: while a temporary server boots, they cost no wait (fastapi's encoder,
    which serializes the flow-run parameters, alone is 0.2-0.4 s)."""
    from flows.build_dataset import build_dataset

    for module in ("fastapi.encoders", "prefect.flow_engine", "prefect.task_engine"):
        importlib.import_module(module)

    return build_dataset


def _quiet_prefect(verbose: bool) -> None:
    if not verbose:
        # Prefect's console logs would interleave with the progress bar; they still reach
        # the Prefect API (and UI) when one is configured.
        os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "CRITICAL")
        os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_FLOW_RUNS_LEVEL", "CRITICAL")


def _build_batch(
    paths: list[Path],
    overrides: dict[str, Any],
    watch: _Watch,
    report: bool,
    verbose: bool,
    debug: bool,
) -> int:
    """Check every config, then build the valid ones one after another in one Prefect session
    (one temporary server), one flow run each. One line per dataset as it ends, then the
    counts. Returns the exit code: 0, or 2 (1 if a failure was not the user's to fix, or a
    report's check failed)."""
    ready: list[tuple[Path, Any]] = []
    codes: list[int] = []
    failing_checks = 0  # datasets built whose report fails a check
    for path in paths:
        try:
            ready.append((path, _prepare(path, overrides)))
        except Exception as exc:
            codes.append(_failed(str(path), exc, debug))
    _distinct_outputs(ready)
    if ready:
        _quiet_prefect(verbose)
        watch.batch = True
        watch.left = [dataset.name for _, dataset in ready]
        watch.paths = {dataset.name: path for path, dataset in ready}
        watch.appends = {dataset.name for _, dataset in ready if dataset.mode == "append"}
        # On a terminal, lines go above the progress bar through its console (rich's `out`
        # would write at the cursor, into the bar); a redirected stdout gets them directly.
        lines = console if console.is_terminal and out.is_terminal else out
        with watch.bar, progress.listening(watch), _api() as temporary, _beating(watch):
            watch.cancel_run = temporary is None
            build_dataset = _flow()
            for path, dataset in ready:
                watch.begin(dataset.name)
                began = time.perf_counter()
                try:
                    watch.as_of = dataset.as_of
                    manifest = build_dataset(config=dataset, preflight=False)
                except Exception as exc:
                    if watch.phase == "published":  # whole: not to be built again
                        if code := _after_publish(dataset, exc):
                            codes.append(code)
                        continue
                    watch.not_published()
                    watch.current = None
                    watch.failed.append(dataset.name)
                    codes.append(_failed(f"{path} ({dataset.name})", exc, debug))
                    continue
                finally:
                    if threading.current_thread() is threading.main_thread():
                        watch.install()  # the flow engine may have left its own handler
                line = _built_line(manifest, time.perf_counter() - began, dataset.output_dir)
                if report:
                    try:
                        from synthaix.report.html import write_checked_report

                        path, checks = write_checked_report(dataset.output_dir, None)
                    except Exception as exc:
                        why = "built and published, but its report failed: "
                        codes.append(_failed(f"{path} ({dataset.name})", exc, debug, why))
                        continue
                    failing = [f"{c.column} {c.name}" for c in checks if not c.passed]
                    line += f", report {path}"
                    if failing:  # published data that breaks its own config: not a pass
                        line += f", checks [bold red]FAIL[/]: {escape(', '.join(failing[:10]))}"
                        failing_checks += 1
                lines.print(line, highlight=False)
    checked = f", {failing_checks} failing report checks" if failing_checks else ""
    out.print(f"{len(paths) - len(codes)} built, {len(codes)} failed{checked}")
    return min([*codes, *([1] if failing_checks else [])], default=0)


def _after_publish(dataset: Any, exc: Exception) -> int:
    """The build published, then failed: what the output holds is this build, whole; said
    so, so that a retry does not build (or append) it again. The exit code: 0 when the error
    was outside the output (the Prefect server went away as the run ended), 2 when a part of
    it is still to update (its Parquet link or manifest: readers see the earlier build)."""
    console.print(
        f"[yellow]published:[/] {escape(dataset.name)} in {escape(str(dataset.output_dir))} "
        f"holds this build; an error came after the publish: "
        f"{escape(unexpected(exc) if not isinstance(exc, SynthaixError) else str(exc))}",
        highlight=False,
    )
    if hint := getattr(exc, "hint", None):
        console.print(f"[dim]hint:[/] {escape(hint)}", highlight=False)
    return 2 if isinstance(exc, OutputError) else 0


def _distinct_outputs(ready: list[tuple[Path, Any]]) -> None:
    """Two configs of a batch must not write the same output folder, DuckDB file or dedupe
    table (a table in a shared `dedupe.uri` is named after the dataset, or the table of a
    multi-table one: the second build would replace the first's)."""
    owners: dict[Any, Path] = {}
    clashes = []
    for path, dataset in ready:
        targets: list[tuple[Any, str]] = [(dataset.output_dir.resolve(), str(dataset.output_dir))]
        if "duckdb" in dataset.output.formats:
            targets.append((dataset.duckdb_path.resolve(), str(dataset.duckdb_path)))
        targets += _dedupe_tables(dataset)
        for key, target in targets:
            owner = owners.setdefault(key, path)
            if owner != path:
                clashes.append(f"  {owner} and {path} both write {target}")
    if clashes:
        raise ConfigError(
            "the batch would write an output twice:\n" + "\n".join(clashes),
            hint="give each config its own output.dir (and output.duckdb), and each dataset "
            "(or table) sharing a dedupe.uri its own name; --out applies to every config of a "
            "batch",
        )


def _dedupe_tables(dataset: Any) -> list[tuple[Any, str]]:
    """The dedupe tables a build writes in a `dedupe.uri` given in its config."""
    tables = []
    for name, uri in lance_tables(dataset):
        where = dedupe_path(uri)
        where = where.resolve() if isinstance(where, Path) else where.rstrip("/")
        tables.append(((where, name), f"the dedupe table {name} in {uri}"))
    return tables


def _built_line(manifest: Any, seconds: float, output_dir: Path) -> str:
    from synthaix.relational.manifest import DatasetManifest

    if isinstance(manifest, DatasetManifest):
        delivered = manifest.delivered
        what = f"{rows_text(delivered)} in {len(manifest.tables)} tables"
    else:
        delivered = manifest.rows.delivered
        total = f" ({manifest.rows.total:,} in total)" if manifest.mode == "append" else ""
        what = f"{rows_text(delivered)}{total}"
    rate = delivered / seconds if seconds > 0 else 0.0
    paid = f", llm {spend(manifest.llm)}" if manifest.llm.requests else ""
    return (
        f"[green]built[/] {escape(manifest.dataset)}: {what} in {seconds:.1f} s "
        f"({rate:,.0f} rows/s){paid} -> {escape(str(output_dir))}"
    )


def _failed(label: str, exc: BaseException, debug: bool, why: str = "") -> int:
    """Say why one dataset of a batch failed (in full on stderr, in one line on stdout) and go
    on; the exit code it calls for: 2 for an error the user can fix, else 1."""
    if debug:
        traceback_of(exc)
    if isinstance(exc, OSError) and exc.filename:  # as _fail: a path the user can fix
        message, hint = f"cannot use {exc.filename}: {exc.strerror}", "check that path"
    elif isinstance(exc, SynthaixError):
        message, hint = str(exc), exc.hint
    else:
        message, hint = unexpected(exc), None
    message = why + message
    named = message if label in message else f"{label}: {message}"
    console.print(f"[bold red]error:[/] {escape(named)}", highlight=False)
    if hint:
        console.print(f"[dim]hint:[/] {escape(hint)}", highlight=False)
    _say_spent(exc)
    head, *problems = message.splitlines() or [""]
    if problems:  # invalid config (N problems): the first one
        more = " ..." if len(problems) > 1 else ""
        head = f"{head.rstrip(':')}: {problems[0].strip()}{more}"
    paid = (
        f" (spent before failing: {spend(spent)})" if (spent := spent_before(exc)).requests else ""
    )
    out.print(f"[red]failed[/] {escape(label)}: {escape(head)}{paid}", highlight=False)
    user_error = isinstance(exc, SynthaixError) or (isinstance(exc, OSError) and exc.filename)
    return 2 if user_error else 1
