"""`synthaix serve`: the deployments of prefect.yaml, served by this process."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from synthaix.cli.app import DebugOpt, _fail, app


@app.command()
def serve(
    spec: Annotated[
        Path, typer.Option("--file", help="The prefect.yaml whose deployments to serve.")
    ] = Path("prefect.yaml"),
    only: Annotated[
        list[str] | None,
        typer.Option(
            "--only", help="Serve only this deployment (repeatable, or names with commas)."
        ),
    ] = None,
    suffix: Annotated[
        str,
        typer.Option(
            "--suffix",
            help="Serve each deployment as <name><suffix> (e.g. -local: customers-nightly-local),"
            " beside those `prefect deploy` made for a work pool, which serve never takes over.",
        ),
    ] = "",
    debug: DebugOpt = False,
) -> None:
    """Run the scheduled deployments of prefect.yaml on this machine until Ctrl-C."""
    try:
        from flows.serve import serve_deployments

        serve_deployments(spec, only, suffix)
    except Exception as exc:
        _fail(exc, debug)
