"""The `synthaix` command line: the Typer app, its consoles and one way to fail."""

from __future__ import annotations

import datetime as dt
import sys
import traceback
from collections import Counter
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from synthaix.errors import RedactedError, SynthaixError
from synthaix.llm.stats import spend, spent_before

app = typer.Typer(
    help="Build synthetic tabular datasets from YAML configs.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)

ConfigArg = Annotated[Path, typer.Argument(help="Dataset config (YAML).", show_default=False)]


def _as_of(text: str) -> dt.datetime:
    try:
        return dt.datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(
            f"{text!r} is not an ISO date-time, e.g. 2025-03-01T10:00"
        ) from None


AsOfOpt = Annotated[
    dt.datetime | None,
    typer.Option(
        parser=_as_of,
        metavar="DATETIME",
        help="The time relative times in the config resolve against, ISO "
        "(2025-03-01T10:00, UTC unless it has an offset). Unset: the config's as_of, else now.",
        show_default=False,
    ),
]
DebugOpt = Annotated[bool, typer.Option("--debug", help="Show full tracebacks on errors.")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Overwrite an existing -o file.")]
SetOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        metavar="KEY.PATH=VALUE",
        help="Set any config value, e.g. --set runner.workers=8 --set columns.age.max=70 "
        "(the value is read as YAML); repeatable. Unset: the config's values.",
        show_default=False,
    ),
]


def _fail(exc: BaseException, debug: bool) -> NoReturn:
    if debug:
        traceback_of(exc)
    if isinstance(exc, OSError) and exc.filename:  # a path the user can fix
        hint = "check that path and its permissions"
        exc = SynthaixError(f"cannot use {exc.filename}: {exc.strerror}", hint=hint)
    message = str(exc) if isinstance(exc, SynthaixError) else unexpected(exc)
    console.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    if hint := getattr(exc, "hint", None):
        console.print(f"[dim]hint:[/] {escape(hint)}", highlight=False)
    _say_spent(exc)
    raise typer.Exit(2 if isinstance(exc, SynthaixError) else 1)


def traceback_of(exc: BaseException) -> None:
    """--debug: the full traceback, less every secret the process holds."""
    from synthaix.llm.credentials import scrubbed

    console.print(escape(scrubbed("".join(traceback.format_exception(exc)))), highlight=False)


def unexpected(exc: BaseException) -> str:
    """An error SynthaixError did not word: its type and text, less every secret the process
    holds, cut to a readable length (a RedactedError from the flow is that already)."""
    from synthaix.llm.credentials import redacted

    return str(exc if isinstance(exc, RedactedError) else redacted(exc))


def _say_spent(exc: BaseException) -> None:
    """What a failed build paid for before it failed: a provider bills those requests."""
    spent = spent_before(exc)
    if spent.requests:
        console.print(f"[dim]spent before failing:[/] {spend(spent)}", highlight=False)
    if timed_out := spent.retries.get("timeout", 0):  # as a build that ends says it
        from synthaix.build.manifest import TIMED_OUT

        console.print(f"[dim]timed out:[/] {timed_out:,} {TIMED_OUT}", highlight=False)


def rows_text(count: int) -> str:
    """`1 row`, `2,000 rows`."""
    return f"{count:,} row{'s' * (count != 1)}"


def _counts(counter: Counter[str]) -> str:
    return ", ".join(f"{cause} {n:,}" for cause, n in counter.most_common())


def _report(
    output_dir: Path,
    target: Path | None,
    debug: bool,
    force: bool = False,
    as_json: bool = False,
) -> None:
    """Write the report and print its checks' tally; exit 1 when one fails, the report
    written all the same. `build --report` calls this too: a build that published data
    failing its checks exits 1, after its summary."""
    from synthaix.report.html import write_checked_report

    if not (output_dir / "manifest.json").is_file():
        hint = "pass a build's output directory, e.g. out/customers (synthaix build CONFIG first)"
        message = f"{output_dir} is not the output directory of a build"
        _fail(SynthaixError(message, hint=hint), debug)
    try:
        path, checks = write_checked_report(output_dir, target, overwrite=force)
    except FileNotFoundError as exc:
        _fail(SynthaixError(f"{exc}", hint="build the dataset first: synthaix build CONFIG"), debug)
    except SynthaixError as exc:  # worded already, with its own hint
        _fail(exc, debug)
    except Exception as exc:  # a part edited or cut short, a database another program holds
        import duckdb
        import pyarrow as pa

        if not isinstance(exc, duckdb.Error | pa.ArrowException | OSError):
            _fail(exc, debug)  # a bug: said as one, exit 1
        if debug:
            traceback_of(exc)
        stale = " (a report.html there is from an earlier run)" if target is None else ""
        _fail(
            SynthaixError(
                f"cannot check {output_dir}: {unexpected(exc)}",
                hint="its data does not read as its manifest says: a file changed, cut short "
                f"or held by another program{stale}; build it again to replace it",
            ),
            False,
        )
    if as_json:  # for scripts: every check, and the same exit codes
        import dataclasses
        import json

        failing = sum(not c.passed for c in checks)
        document = {
            "report": str(path),
            "checks": len(checks),
            "failed": failing,
            "results": [dataclasses.asdict(c) for c in checks],
        }
        sys.stdout.write(json.dumps(document, indent=1, ensure_ascii=False) + "\n")
        if failing:
            raise typer.Exit(1)
        return
    out.print(f"  report: {path}")
    failed = Counter(f"{c.column} {c.name}" for c in checks if not c.passed)
    tally = f"  checks {len(checks) - failed.total()}/{len(checks)} pass"
    if not failed:
        out.print(tally, highlight=False)
        return
    labels = [f"{name} x{n}" if n > 1 else name for name, n in failed.items()]
    more = f" and {len(labels) - 10:,} more" if len(labels) > 10 else ""
    names = escape(", ".join(labels[:10]))
    out.print(f"{tally}; [bold red]FAIL[/]: {names}{more}", highlight=False)
    raise typer.Exit(1)
