"""The commands that need no Prefect: validate, schema, preview, report, export, translate,
sim."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import sys
from pathlib import Path
from typing import Annotated, Any, Literal

import pyarrow as pa
import typer
from rich.markup import escape
from rich.table import Table

from synthaix.cli.app import (
    AsOfOpt,
    ConfigArg,
    DebugOpt,
    ForceOpt,
    SetOpt,
    _fail,
    _report,
    app,
    console,
    out,
    rows_text,
)
from synthaix.columns.llm import LlmColumn
from synthaix.columns.refs import table_hint
from synthaix.config import DatasetConfig, load_config
from synthaix.errors import ConfigError, OutputError, SynthaixError
from synthaix.fence import confine, output_root, rebase
from synthaix.files import write_text_atomic
from synthaix.llm.stats import LlmStats, spend
from synthaix.overrides import apply_overrides, parse_assignment


def _refuse_existing(path: Path | None, force: bool, debug: bool) -> None:
    """A file named with -o may be the user's: never overwritten without --force."""
    if path is not None and path.is_dir():
        _fail(SynthaixError(f"{path} is a folder", hint="give -o a file path"), debug)
    if path is not None and path.is_file() and not force:
        hint = "choose another -o path, or add --force to overwrite it"
        _fail(SynthaixError(f"{path} exists", hint=hint), debug)


def _check_output(dataset: Any) -> None:
    if _is_tables(dataset):
        from synthaix.relational.sink import RelationalWriter, check_same_tables

        writer = RelationalWriter(dataset)
        writer.check()
        if dataset.mode == "append":  # as the build, which checks again under its lock
            check_same_tables(dataset, writer.previous_manifest(), writer.root)
    else:
        from synthaix.sink import check_output

        check_output(dataset)


def _busy_note(dataset: Any) -> str:
    """What validate says, instead of checking the output, of one another build writes (its
    publish holds the database: the checks would call it open in another program)."""
    from synthaix.errors import OutputBusy
    from synthaix.sink import not_locked

    try:
        not_locked(dataset.output_dir)
    except OutputBusy as exc:
        return f"{exc}: its output was not checked; run validate again once that build ends"
    return ""


def _as_built(config: Path, assignments: list[str] | None, as_of: dt.datetime | None = None) -> Any:
    """The config a build would make: with `--set` (and --as-of) applied, its outputs where a
    build would really write them (under SYNTHAIX_OUTPUT_ROOT)."""
    changes = dict(parse_assignment(a) for a in assignments or [])
    if as_of is not None:  # as build: also an option (--set seed=as_of may use it), and
        changes.setdefault("as_of", as_of)  # a --set as_of wins
    dataset = load_config(config, as_of=changes.get("as_of"))
    if assignments:
        dataset = apply_overrides(dataset, changes, origin="options")
    if root := output_root():
        dataset = rebase(dataset, root)
        confine(dataset, root)
    return dataset


def _embedder_notes(dataset: Any) -> list[str]:
    """What validate sees of the near check's embedder that the config's rules cannot: a
    package missing here (another machine, a worker, may have it), a price that prices
    nothing."""
    import importlib.util

    from synthaix.dedupe.keys import text_columns

    configs = [dataset.plan(n).config for n in dataset.order] if _is_tables(dataset) else [dataset]
    used = {c.dedupe.embedder for c in configs if text_columns(c)}  # the near check is on
    notes = []
    if (
        "sentence-transformers" in used
        and importlib.util.find_spec("sentence_transformers") is None
    ):
        notes.append(
            "dedupe.embedder 'sentence-transformers' needs the optional package, which is not "
            "installed here: a build here stops before any request (pip install 'synthaix[st]')"
        )
    if any(c.dedupe.embedder != "openai" and c.dedupe.price_per_million for c in configs):
        notes.append("dedupe.price_per_million prices the openai embedder only: it has no effect")
    return notes


@app.command()
def validate(config: ConfigArg, assignments: SetOpt = None, debug: DebugOpt = False) -> None:
    """Check a config without generating anything (with --set: the config a build with the
    same --set would make)."""
    try:
        dataset = _as_built(config, assignments)
        busy = _busy_note(dataset)  # the output's checks need it idle: said below
        if not busy:
            _check_output(dataset)
    except SynthaixError as exc:
        _fail(exc, debug)
    for note in [busy, *_embedder_notes(dataset)]:
        if note:
            out.print(f"[yellow]note:[/] {escape(note)}")
    if dataset.as_of is not None:  # relative times or seed: as_of
        out.print(
            f"as_of {dataset.as_of:%Y-%m-%d %H:%M:%S} UTC (the config's, else now): relative "
            "times and seed: as_of stand at it; a build takes --as-of, and a deployment run "
            "its scheduled start"
        )
    if _is_tables(dataset):
        _show_tables(dataset)
        out.print(f"[green]OK[/] {config} is valid; outputs go to {dataset.output_dir}")
        return
    seed = f"as_of ({dataset.seed})" if dataset._seed_as_of else dataset.seed
    title = f"{dataset.name}: {rows_text(dataset.rows)}, seed {seed}"
    table = Table("column", "type", "nullable", "unique", title=title)
    for c in dataset.columns:
        nullable = f"{c.nullable:.0%}" if c.nullable else ""
        table.add_row(c.name, c.type, nullable, "yes" if c.unique else "")  # type: ignore[attr-defined]
    out.print(table)
    out.print(f"[green]OK[/] {config} is valid; outputs go to {dataset.output_dir}")


@app.command()
def schema(
    output: Annotated[
        Path | None,
        typer.Option(
            "-o", "--output", help="Write to this file (it replaces only a schema it wrote)."
        ),
    ] = None,
    force: ForceOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Print the JSON Schema of dataset configs (for editor completion and checks)."""
    from synthaix.config import SCHEMA_TITLE, config_json_schema
    from synthaix.files import write_text_atomic

    text = json.dumps(config_json_schema(), indent=2) + "\n"
    if output is None:
        sys.stdout.write(text)
        return
    try:
        found = json.loads(output.read_text(encoding="utf-8"))
        # Its title, or (written before it had one) the definitions of both config kinds.
        ours = found.get("title") == SCHEMA_TITLE or {"DatasetConfig", "RelationalConfig"} <= set(
            found.get("$defs", {})
        )
    except (OSError, ValueError, AttributeError):
        ours = False
    _refuse_existing(output, force or ours, debug)  # a config of the user's was replaced
    try:
        write_text_atomic(output, text)
    except OSError as exc:
        _fail(exc, debug)


@app.command("report")
def report_command(
    output_dir: Annotated[Path, typer.Argument(help="A build's output directory.")],
    output: Annotated[Path | None, typer.Option("-o", "--output", help="HTML file.")] = None,
    force: ForceOpt = False,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            help="Print every check as JSON (column, name, expected, observed, passed) "
            "instead of the tally; the exit codes stay: 1 when a check fails.",
        ),
    ] = False,
    debug: DebugOpt = False,
) -> None:
    """Write a self-contained HTML report: profile, charts, constraint checks, samples
    (for multi-table datasets: per table, with keys, references and counts checked)."""
    _refuse_existing(output, force, debug)
    _report(output_dir, output, debug, force, as_json)


def _is_tables(config: object) -> bool:
    return hasattr(config, "tables")  # a RelationalConfig, without importing it for a table


def _show_tables(dataset: Any) -> None:
    """Each table in build order: its size, what it reads, its keys and columns."""
    for name in dataset.order:
        plan = dataset.plan(name)
        spec = plan.spec
        if spec.parent is not None:
            count = spec.count
            mean = count.resolved(count)[0] if count else 0.0
            per = f", {count.distribution} {mean:g} per {spec.parent}" if count else ""
            about = plan.estimated_rows
            size = rows_text(spec.rows) if spec.rows else f"~{about:,.0f} row{'s' * (about != 1)}"
            size += per
        else:
            size = rows_text(spec.rows or 0)
        reads = ", ".join(
            [f"{a.name} ({a.kind})" for a in plan.aliases.values()]
            + [f"{s.table} (siblings, as {s.name})" for s in spec.siblings]
        )
        title = f"{name}: {size}" + (f"; reads {reads}" if reads else "")
        table = Table("column", "type", "key", "nullable", title=title)
        for c in spec.columns:
            key = "primary" if c.primary_key else ""
            to = getattr(c, "to", None)
            key = key or (f"-> {to}" if to else "")
            nullable = f"{c.nullable:.0%}" if c.nullable else ""
            table.add_row(c.name, c.type, key, nullable)  # type: ignore[attr-defined]
        out.print(table)


@app.command()
def preview(
    config: ConfigArg,
    rows: Annotated[int, typer.Option(min=1, help="Rows to show.")] = 20,
    seed: Annotated[int | None, typer.Option(help="Override the seed.")] = None,
    fmt: Annotated[
        Literal["table", "csv", "jsonl"],
        typer.Option("--format", help="table for people; csv or jsonl for scripts."),
    ] = "table",
    table: Annotated[
        str | None,
        typer.Option(
            "--table",
            help="Show only this table of a multi-table config (needed with csv or jsonl).",
        ),
    ] = None,
    as_of: AsOfOpt = None,
    assignments: SetOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Show the first rows a build makes (unique values and dedupe applied); writes nothing."""
    from synthaix.build.preview import preview_rows

    spent: list[LlmStats] = []  # what the llm columns shown cost
    notes: list[str] = []
    try:
        dataset = _as_built(config, assignments, as_of)  # what `build --set` would build
        names = list(dataset.order) if _is_tables(dataset) else [dataset.name]
        if table is not None and table not in names:
            raise ConfigError(
                f"{config} has no table '{table}'; its tables: {', '.join(names)}",
                hint=table_hint(table, names),
            )
        if table is None and fmt != "table" and len(names) > 1:
            raise ConfigError(
                f"--format {fmt} prints one table; {config} has {len(names)}: {', '.join(names)}",
                hint=f"choose one with --table, e.g. --table {names[0]} (or use --format table"
                " to see them all)",
            )
        if _is_tables(dataset):
            from synthaix.relational.config import needed_for
            from synthaix.relational.preview import preview_tables, unapplied_constraints

            dataset = dataset.with_overrides(seed=seed)
            built = needed_for(dataset, table) if table is not None else dataset.order
            configs = [dataset.plan(name).config for name in built]
            with_llm = [c for c in configs if any(isinstance(x, LlmColumn) for x in c.columns)]
            reachable = bool(with_llm) and _llm_reachable(with_llm[0])
            tables = preview_tables(dataset, rows, llm=reachable, only=table, on_spent=spent.append)
            if unchecked := unapplied_constraints(dataset, built):
                notes.append(
                    f"constraints over llm values ({', '.join(unchecked)}) are not applied in a "
                    "multi-table preview: a build drops and redraws the rows that break them"
                )
        else:
            dataset = dataset.with_overrides(seed=seed)
            reachable = _llm_reachable(dataset)
            made = preview_rows(dataset, rows, llm=reachable, on_spent=spent.append)
            tables = {dataset.name: made}
    except Exception as exc:
        _fail(exc, debug)
    for name, rows_of in tables.items():  # with --table, only that one was made
        _show_rows(dataset, name, rows_of, fmt, several=_is_tables(dataset))
    for note in notes:  # on stderr, as the cost: csv and jsonl stay clean
        console.print(f"[yellow]note:[/] {escape(note)}")
    if spent and spent[0].requests:  # on stderr: csv and jsonl stay clean
        console.print(f"[dim]llm columns of the rows shown:[/] {spend(spent[0])}", highlight=False)


def _show_rows(dataset: Any, name: str, table: pa.Table, fmt: str, several: bool) -> None:
    """One table's rows; csv and jsonl print nothing else (the caller shows one table)."""
    if fmt == "table":
        name = f"{dataset.name}.{name}" if several else name
        title = f"{name}: first {rows_text(table.num_rows)} (seed {dataset.seed})"
        groups = _column_groups(table, out.width)
        for first, last in groups:
            which = f"column {last}" if last == first + 1 else f"columns {first + 1}-{last}"
            shown = "" if len(groups) == 1 else f", {which} of {table.num_columns}"
            view = Table(title=title + shown)
            for field in list(table.schema)[first:last]:
                view.add_column(
                    f"{field.name}\n[dim]{field.type}[/]", overflow="fold", max_width=40
                )
            for row in table.select(list(range(first, last))).to_pylist():
                view.add_row(
                    *("[dim]null[/]" if v is None else escape(str(v)) for v in row.values())
                )
            out.print(view)
        return
    import tempfile

    from synthaix.export import write_rows

    with tempfile.TemporaryDirectory(prefix="synthaix-preview-") as folder:
        path = Path(folder) / f"rows.{fmt}"
        write_rows(table, fmt, path)  # type: ignore[arg-type]
        sys.stdout.write(path.read_text(encoding="utf-8"))


def _column_groups(table: pa.Table, width: int) -> list[tuple[int, int]]:
    """Columns [first, last) per table printed: as many as fit the terminal at their width
    (header, type or longest value, up to 40). Squeezed into one table, 22 columns on 80
    characters printed their names a letter a line."""
    groups, first, used = [], 0, 1
    for index, field in enumerate(table.schema):
        values = table.column(index).slice(0, 50).to_pylist()
        wide = max([len(field.name), len(str(field.type)), *(len(str(v)) for v in values)])
        need = min(wide, 40) + 3  # a cell's padding and its border
        if index > first and used + need > width:
            groups.append((first, index))
            first, used = index, 1
        used += need
    groups.append((first, table.num_columns))
    return groups


def _llm_reachable(dataset: DatasetConfig) -> bool:
    """A preview fills llm columns when the provider can be used; else it says why not."""
    if not any(isinstance(c, LlmColumn) for c in dataset.columns):
        return False
    from synthaix.llm.client import LlmClient

    try:  # one quick request: a dead endpoint would be retried for the whole timeout
        LlmClient(dataset.provider).check()
    except SynthaixError as exc:
        console.print(f"[yellow]note:[/] llm columns left empty: {escape(str(exc))}")
        return False
    return True


@app.command()
def export(
    output_dir: Annotated[Path, typer.Argument(help="A build's output directory.")],
    fmt: Annotated[
        Literal["csv", "jsonl", "parquet"] | None,
        typer.Option("--format", help="File format (default: -o's suffix, else csv)."),
    ] = None,
    output: Annotated[
        str | None,
        typer.Option("-o", "--output", help="File, or folder (an existing one, or ending in /)."),
    ] = None,
    table: Annotated[
        str | None,
        typer.Option("--table", help="The table to export (needed when the dataset has several)."),
    ] = None,
    force: ForceOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Export a built dataset (or one table of a multi-table dataset) to one CSV, JSON Lines
    or Parquet file."""
    from synthaix.export import export_dataset

    try:
        target, fmt, folder = _export_target(output, fmt)
        path = export_dataset(output_dir, fmt, target, force, table, folder)
    except Exception as exc:
        _fail(exc, debug)
    out.print(f"[green]wrote[/] {path}")


_SUFFIXES = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}


def _export_target(output: str | None, fmt: str | None) -> tuple[Path | None, Any, bool]:
    """-o as a path, the format (--format's, else the file's suffix's, else csv) and whether
    -o is a folder: an existing one, or a name ending in a separator (made with the export:
    it was a file of that name). A suffix of another format is refused (JSON Lines written
    to o.csv)."""
    if output is None:
        return None, fmt or "csv", False
    target = Path(output)
    if output.endswith(("/", os.sep)) or target.is_dir():
        return target, fmt or "csv", True
    if target.suffix.lower() == ".json":  # a reader expects one JSON document there
        raise OutputError(
            f"-o {output}: export writes JSON Lines (one object a line), not one JSON document",
            hint=f"name it {target.with_suffix('.jsonl').name}",
        )
    named = _SUFFIXES.get(target.suffix.lower())
    if fmt is not None and named is not None and named != fmt:
        raise OutputError(
            f"-o {output} names a {named} file, but --format is {fmt}",
            hint=f"name it {target.with_suffix('.' + fmt).name}, or pass --format {named}",
        )
    return target, fmt or named or "csv", False


@app.command()
def translate(
    description: Annotated[str, typer.Argument(help="The dataset, in plain words.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Config file to write.")],
    rows: Annotated[int, typer.Option(min=1, help="Rows the config asks for.")] = 1000,
    base_url: Annotated[
        str | None, typer.Option(help="Endpoint (default $OPENAI_BASE_URL).")
    ] = None,
    model: Annotated[str, typer.Option(help="Model name.")] = "gpt-4o-mini",
    api_key_env: Annotated[str, typer.Option(help="Variable holding the key.")] = "OPENAI_API_KEY",
    timeout: Annotated[
        float,
        typer.Option(
            help="Seconds to wait for an answer (a request is tried up to 8 times, for at most "
            "8 x this)."
        ),
    ] = 120,
    force: ForceOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Ask the LLM for a dataset config matching a description, and write it as YAML."""
    _refuse_existing(output, force, debug)
    from synthaix.llm.translate import to_yaml
    from synthaix.llm.translate import translate as run

    try:
        provider = _translate_provider(base_url, model, api_key_env, timeout)
        config, notes = run(description, provider, rows=rows, name=_name_from(output))
        write_text_atomic(output, to_yaml(config, notes))
    except Exception as exc:
        if isinstance(exc, SynthaixError) and exc.hint:  # the client's words for a config
            exc.hint = exc.hint.replace("provider.timeout", "--timeout")
        _fail(exc, debug)
    if _is_tables(config):
        columns = sum(len(t.columns) for t in config.tables)
        out.print(f"[green]wrote[/] {output}: {len(config.tables)} tables, {columns} columns")
    else:
        out.print(f"[green]wrote[/] {output}: {len(config.columns)} columns")
    for note in notes:
        out.print(f"  repaired: {note}")
    out.print(f"next: synthaix validate {output} && synthaix build {output}")


def _translate_provider(base_url: str | None, model: str, key_env: str, timeout: float) -> Any:
    """The options as a ProviderConfig; one it refuses names the option (a credential in
    --base-url raised pydantic's ValidationError, exit 1)."""
    from pydantic import ValidationError

    from synthaix.llm.provider import ProviderConfig

    try:
        return ProviderConfig(base_url=base_url, model=model, api_key_env=key_env, timeout=timeout)
    except ValidationError as exc:
        problem = exc.errors()[0]
        option = "--" + str(problem["loc"][0]).replace("_", "-") if problem["loc"] else "options"
        raise ConfigError(f"{option}: {problem['msg'].removeprefix('Value error, ')}") from None


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
    tpm: Annotated[
        int | None,
        typer.Option(help="Tokens per minute before 429s (prompt + max_tokens at admission)."),
    ] = None,
    burst_seconds: Annotated[
        float,
        typer.Option(
            help="Bucket capacity in seconds of the limit: 60 holds a minute's worth (hosted "
            "APIs), 2 at 1,200 RPM holds 40 requests; refill is limit/60 per second."
        ),
    ] = 60.0,
    window_seconds: Annotated[
        float | None,
        typer.Option(
            help="Azure-style: count the limits over consecutive fixed windows of this many "
            "seconds (limit*window/60 each) instead of a continuously refilled bucket."
        ),
    ] = None,
    no_ratelimit_headers: Annotated[
        bool,
        typer.Option(
            "--no-ratelimit-headers", help="Leave out the x-ratelimit-* headers of answers."
        ),
    ] = False,
    faults: Annotated[
        str, typer.Option(help="Fault rates, e.g. malformed=0.3,rate_limit=0.1,server_error=0.05")
    ] = "",
    seed: Annotated[int, typer.Option(help="Seed of the simulator's choices.")] = 0,
    record: Annotated[
        bool, typer.Option("--record", help="Keep every request: GET /sim/requests lists them.")
    ] = False,
) -> None:
    """Run the OpenAI-compatible simulator: try the LLM path with no key."""
    from synthaix.sim.faults import FaultRates
    from synthaix.sim.server import SimConfig, SimServer

    try:
        rates = FaultRates.parse(faults)
    except ValueError as exc:
        _fail(SynthaixError(f"--faults: {exc}"), False)
    config = SimConfig(
        latency,
        latency_per_token,
        rpm,
        tpm,
        rates,
        seed=seed,
        record=record,
        burst_seconds=burst_seconds,
        window_seconds=window_seconds,
        headers=not no_ratelimit_headers,
    )
    try:
        server = SimServer(config, host, port)
    except ValueError as exc:  # limits out of range
        _fail(SynthaixError(f"sim: {exc}"), False)
    except OSError as exc:  # the port is taken (another simulator?), or the host not ours
        hint = "pick another --port (--port 0: a free one), or a --host of this machine"
        _fail(
            SynthaixError(f"sim: cannot listen on {host}:{port}: {exc.strerror}", hint=hint), False
        )
    out.print(f"simulator on {server.url} (models: {', '.join(config.models)}); Ctrl-C stops it")
    out.print(f"  use it with: provider: {{base_url: {server.url}, model: sim-small}}")
    if rpm or tpm:
        shape = f"windows of {window_seconds:g}s" if window_seconds else f"burst {burst_seconds:g}s"
        base = server.url.removesuffix("/v1")
        out.print(f"  limits: rpm={rpm} tpm={tpm}, {shape}; change them: POST {base}/sim/limits")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        server.server_close()
