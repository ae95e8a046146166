"""The output fence: a worker-side setting that keeps every path a build writes under one
data root, whatever the config (an inline config from the Prefect UI included) asks for.

    SYNTHAIX_OUTPUT_ROOT=/data/synthaix   (or the Prefect Variable synthaix_output_root,
                                           read by the flow layer and passed in)

`confine(config, root)` checks, before anything is written, the output folder, the DuckDB
file, every dedupe database (each table's, in a multi-table dataset), the folders a build
writes inside its output folder (.staging, .versions, .ledger, .dedupe, .lock) and the report
file. Each is resolved as the build would open it: relative to the current folder, `~`
expanded, symlinks followed (a dangling one too: opening it creates its target) and `..`
applied after them; a part that does not exist yet is taken as written. A path that resolves
outside the root is refused with a ConfigError. A dedupe.uri that is not a local path
(s3://, gs://, az://, db://, memory://, ...) is refused too: the root bounds the worker's
disk, and an object store is reached with whatever credentials the worker holds, so a
config could write to any bucket they reach; no build needs one (the default dedupe
database is <output dir>/.dedupe).

Nothing here creates or writes anything. A symlink made after the check is not seen: the
fence guards against configs, not against users who can already change the worker's disk.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from synthaix.errors import ConfigError

if TYPE_CHECKING:
    from synthaix.config import DatasetConfig
    from synthaix.relational.config import RelationalConfig

#: The environment variable naming the worker's output root (empty: no fence).
ENV_VAR = "SYNTHAIX_OUTPUT_ROOT"
#: The Prefect Variable the flow layer reads for the same setting.
PREFECT_VARIABLE = "synthaix_output_root"

# What a build writes inside its output folder by these names (sink.py, ledger.py, dedupe):
# a symlink there would carry the writes elsewhere. (`data` and `.current` are links the
# build itself replaces by renaming, never written through.)
_INNER = (".staging", ".versions", ".ledger", ".dedupe", ".lock")


def output_root(environ: Mapping[str, str] = os.environ) -> Path | None:
    """The output root SYNTHAIX_OUTPUT_ROOT names, or None when it is unset or empty."""
    value = environ.get(ENV_VAR, "").strip()
    return Path(value) if value else None


def confine(
    config: DatasetConfig | RelationalConfig, root: Path, report: Path | None = None
) -> None:
    """Refuse (ConfigError) a config that would write anywhere outside `root`, or a `root`
    that is not an existing folder. `report`: the HTML report's path, when one is written
    elsewhere than its default (<output dir>/report.html, checked with the output folder)."""
    base = _root(root)
    for field, path in _targets(config, report):
        if isinstance(path, str):  # a dedupe uri that is not a local path
            raise ConfigError(
                f"{field} {path} is not a local path; this worker keeps every output under {base}",
                hint=f"remove {field} (default: <output dir>/.dedupe) or set it to a folder "
                f"under {base}, or ask the worker's admin",
            )
        resolved = _resolve(path, field, base)
        if not resolved.is_relative_to(base):
            shown = str(path) if path == resolved else f"{path} resolves to {resolved}, which"
            raise ConfigError(
                f"{field} {shown} is outside the output root {base}",
                hint=f"set {field} under {base}, or ask the worker's admin",
            )


def _root(root: Path) -> Path:
    given = Path(root).expanduser()
    if not given.is_absolute():  # it would follow each run's working folder: a deleted clone
        raise ConfigError(
            f"the output root {given} is not an absolute path: a worker's runs start in a "
            "fresh clone, deleted after the run, and the data would go with it",
            hint=f"set {ENV_VAR} (or the Prefect Variable {PREFECT_VARIABLE}) to an absolute "
            "folder, e.g. /srv/synthaix",
        )
    try:
        resolved = given.resolve(strict=True)
    except (OSError, RuntimeError):
        resolved = None
    if resolved is None or not resolved.is_dir():
        raise ConfigError(
            f"the output root {given} is not an existing folder",
            hint=f"create it, or fix {ENV_VAR} (or the Prefect Variable {PREFECT_VARIABLE})",
        )
    return resolved


def _targets(
    config: DatasetConfig | RelationalConfig, report: Path | None
) -> Iterator[tuple[str, Path | str]]:
    """(field, path) for every place the build writes; a str is a non-local dedupe uri."""
    folder = config.output_dir  # default: out/<name>, in the current folder
    yield "output.dir", folder
    for name in _INNER:
        yield "output.dir", folder / name
    yield "output.duckdb", config.duckdb_path  # default: <output dir>/<name>.duckdb
    from synthaix.relational.config import RelationalConfig

    if isinstance(config, RelationalConfig):
        for index, table in enumerate(config.tables):
            uri = config.plan(table.name).config.dedupe.uri
            if uri:
                yield f"tables[{index}] ({table.name}).dedupe.uri", dedupe_path(uri)
    elif config.dedupe.uri:
        yield "dedupe.uri", dedupe_path(config.dedupe.uri)
    if report is not None:
        yield "report", Path(report).expanduser()


def dedupe_path(uri: str) -> Path | str:
    """The folder LanceDB opens for `uri` (as lancedb.connect reads it), or `uri` itself when
    it is not a local path. No scheme, `file:` and a Windows drive letter are local; LanceDB
    strips `file://` and the `file:` of `file:/...`, and opens `file:x` as a relative path."""
    scheme = urlparse(uri).scheme
    if scheme and scheme != "file" and len(scheme) > 1:
        return uri
    if uri.startswith("file://"):
        uri = uri[len("file://") :]
    elif uri.startswith("file:/"):
        uri = uri[len("file:") :]
    return Path(uri).expanduser()


def _resolve(path: Path, field: str, base: Path) -> Path:
    """`path` as the OS would reach it: absolute from the current folder, every existing
    symlink followed (a dangling one too) and `..` applied after them; the parts that do not
    exist yet are appended as written."""
    absolute = path if path.is_absolute() else Path.cwd() / path
    resolved = Path(os.path.realpath(absolute))
    # realpath leaves a symlink loop unresolved (no error): the build could not open it
    # either, but what it points at is unknown, so it is refused.
    if any(part.is_symlink() for part in (resolved, *resolved.parents)):
        raise ConfigError(
            f"{field} {path} cannot be resolved (a symbolic link loop) to check it is under "
            f"the output root {base}",
            hint=f"set {field} under {base} without the loop, or ask the worker's admin",
        )
    return resolved


def rebase(config: Any, root: Path) -> Any:
    """The config with its relative output paths (output.dir, the default out/<name>
    included, output.duckdb, local dedupe URIs) anchored at `root` instead of the current
    folder. A worker runs each flow run in a fresh temporary checkout, deleted after the run:
    outputs relative to it would be lost, and an append would find nothing to append to."""
    from synthaix.overrides import apply_overrides
    from synthaix.relational.config import RelationalConfig

    base = _root(root)  # resolved: a relative root would be anchored again at each call
    changes: dict[str, Any] = {}
    if not config.output_dir.is_absolute():
        changes["output.dir"] = base / config.output_dir
    duckdb = config.output.duckdb.expanduser() if config.output.duckdb is not None else None
    # A relative database inside the output folder moves with it (apply_overrides).
    if (
        duckdb is not None
        and not duckdb.is_absolute()
        and not duckdb.is_relative_to(config.output_dir)
    ):
        changes["output.duckdb"] = base / duckdb
    uris = (
        [(f"tables.{t.name}.dedupe.uri", t.dedupe.uri) for t in config.tables]
        if isinstance(config, RelationalConfig)
        else [("dedupe.uri", config.dedupe.uri)]
    )
    for where, uri in uris:
        local = dedupe_path(uri) if uri else None
        if isinstance(local, Path) and not local.is_absolute():
            changes[where] = str(base / local)
    return apply_overrides(config, changes, origin="output root") if changes else config
