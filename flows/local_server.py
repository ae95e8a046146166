"""The temporary Prefect server a build starts when no PREFECT_API_URL is set."""

from __future__ import annotations


def stop_temporary_servers() -> None:
    """Stop Prefect's temporary server(s) now, e.g. before a hard exit on Ctrl-C, so no orphan
    server process outlives the build. Prefect keeps them in a private registry; no public API
    stops them outside its own shutdown path."""
    from prefect.server.api.server import SubprocessASGIServer

    for server in list(SubprocessASGIServer._instances.values()):
        server.stop()
