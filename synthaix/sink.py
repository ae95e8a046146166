"""Parquet + DuckDB outputs that change atomically, in folders SynthAIx owns.

Layout of an output directory:

    out/customers/
      .synthaix-output              marker: this folder is a SynthAIx output (of this dataset)
      data -> .current              the Parquet dataset (only when 'parquet' is in formats)
      customers.duckdb              the default database; any database may be named instead
      .current -> .versions/<build> the current build's parts, swapped atomically at commit
      .versions/<build>/part-*.parquet
      .staging/<build>/             this build's parts until commit; removed on failure
      .lock                         one build at a time per output directory

Every precondition is checked before the first write (`check_output`). Publishing: the parts
move into a new version folder (invisible until linked), the DuckDB table is swapped in one
transaction (the commit point), then the `.current` link and manifest.json follow. A build
killed between the DuckDB commit and the link swap is rolled forward by the next build, so
readers see the old dataset or the new one, never a mix.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import pyarrow as pa
import pyarrow.parquet as pq

from synthaix import duckdb_sink, progress
from synthaix.build.manifest import Manifest
from synthaix.config import DatasetConfig
from synthaix.dedupe.target import check_dedupe_target
from synthaix.errors import OutputBusy, OutputError
from synthaix.files import is_own_report, write_text_atomic
from synthaix.ownership import (
    MARKER,
    TEMP_LINK,
    check_database_path,
    check_output_dir,
    claim,
    os_errors,
    output_builds,
    remove_build_folder,
    remove_stale_builds,
    say_removed,
    unclaim,
)

LOCK_TRIES = 10  # 0.5 s
MANIFEST_KEY = b"synthaix.manifest"
BUILD_KEY = b"synthaix.build"
_active_staging: set[Path] = set()  # this process's staging folders, for a hard exit


def check_output(config: DatasetConfig) -> tuple[bool, bool]:
    """Refuse an output SynthAIx may not write, writing nothing. Returns (folder needs its
    marker, folder is a 0.1 build's output)."""
    root = config.output_dir
    not_locked(root)
    with os_errors("check"):
        needs_marker = check_output_dir(root, config.name)
        # A 0.1 build made its default database whole, so its table there carries no comment.
        legacy = (
            needs_marker
            and root.is_dir()
            and any(root.iterdir())
            and config.duckdb_path == root / f"{config.name}.duckdb"
        )
        if "duckdb" in config.output.formats:
            check_database_path(root, config.duckdb_path)
            duckdb_sink.check_target(
                config.duckdb_path,
                config.table,
                config.name,
                legacy,
                builds=None if legacy else output_builds(root),
            )
    check_dedupe_target(config)  # a `dedupe.uri` is outside the output: it may hold the user's
    return needs_marker, legacy


def not_locked(root: Path) -> None:
    """Refuse an output another build writes: checked first, as its publish also holds the
    database, which the checks would call open in another program. A shared lock tells, and
    is held for an instant (a build taking the lock then retries; see `_lock`)."""
    lock = root / ".lock"
    if not (lock.is_file() and (root / MARKER).is_file()):
        return
    try:
        fd = os.open(lock, os.O_RDWR)  # NFS locks need it open for writing
    except OSError:
        return  # unreadable: the checks that follow say why
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        raise OutputBusy(
            f"{root} is being written by another build", hint="wait for it to finish"
        ) from None
    except OSError:
        return  # a file system without flock: the build's own lock decides
    finally:
        os.close(fd)  # closing releases a lock taken


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.fstat(fd).st_ino == os.stat(path).st_ino
    except FileNotFoundError:
        return False


def discard_staged_parts() -> None:
    """Remove the parts staged by builds of this process (before a hard exit on a signal)."""
    for staging in list(_active_staging):
        _discard(staging)


def _discard(staging: Path) -> None:
    _active_staging.discard(staging)
    with contextlib.suppress(OSError):
        remove_build_folder(staging)
        staging.parent.rmdir()  # only succeeds when empty


@dataclass
class Existing:
    """What the previous build left, as seen by an `append` build."""

    rows: int = 0
    parts: list[Path] = field(default_factory=list)
    schema: pa.Schema | None = None


class DatasetWriter:
    def __init__(self, config: DatasetConfig, schema: pa.Schema) -> None:
        self.config = config
        self.schema = schema
        self.root = config.output_dir
        self.build_id = time.strftime("%Y%m%dT%H%M%S") + "-" + secrets.token_hex(3)
        self.staging = self.root / ".staging" / self.build_id
        self.data_link = self.root / "data"
        self.current_link = self.root / ".current"
        self.parts: list[Path] = []
        self.existing = Existing()
        self.part_metadata: dict[bytes, bytes] = {}
        self._held: pa.Table | None = None  # the last part, written at commit with the manifest
        self._lock_file: int | None = None
        self._made = (False, False)  # (made the folder, claimed it): see __exit__
        self.legacy = False

    # -- lifecycle ---------------------------------------------------------------------------
    def __enter__(self) -> DatasetWriter:
        needs_marker, self.legacy = check_output(self.config)
        self._claim_and_lock(needs_marker)
        try:
            with os_errors("write to"):
                self._tidy()
                self.staging.mkdir(parents=True)
            _active_staging.add(self.staging)
            if self.config.mode == "append":
                self.existing = self._read_existing()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        _discard(self.staging)
        self._release()

    def _claim_and_lock(self, needs_marker: bool) -> None:
        """Mark the folder ours when it `needs_marker`, and take its lock (marked again if a
        failed first build unclaimed it meanwhile)."""
        self._made = (not self.root.exists(), needs_marker)  # unclaimed if nothing published
        with os_errors("write to"):
            if needs_marker:
                claim(self.root, self.config.name)
            self._lock()
            if needs_marker and not (self.root / MARKER).is_file():
                claim(self.root, self.config.name)

    def _release(self) -> None:
        """Unlock; a first build that published nothing first takes back its marking."""
        made, claimed = self._made
        if claimed and not self.current_link.is_symlink():
            unclaim(self.root, made)
        self._unlock()

    def _unlock(self) -> None:
        if self._lock_file is not None:
            os.close(self._lock_file)  # closing releases the flock
            self._lock_file = None

    def _tidy(self) -> None:
        """Finish what a killed build left: roll an interrupted publish forward, then remove
        its staged parts, superseded versions and temporary links (only files of ours)."""
        self._roll_forward()
        removed = remove_stale_builds(self.root / ".staging")
        say_removed(removed + remove_stale_builds(self.root / ".versions", self._current_build()))
        for entry in self.root.iterdir():
            if TEMP_LINK.fullmatch(entry.name) and entry.is_symlink():
                entry.unlink()

    def _roll_forward(self) -> None:
        if "duckdb" not in self.config.output.formats:
            return
        config = self.config
        built = duckdb_sink.published_build(config.duckdb_path, config.table, config.name)
        if built is None or built == self._current_build():
            return
        if not (self.root / ".versions" / built).is_dir():
            return
        _replace_symlink(self.current_link, Path(".versions") / built)
        manifest = self.previous_manifest()
        if manifest is not None:
            write_text_atomic(self.root / "manifest.json", manifest.to_json() + "\n")
        drop_stale_report(self.root)
        progress.note(f"completed the publish of build {built}, interrupted: the output shows it")

    def _lock(self) -> None:
        path = self.root / ".lock"
        for _ in range(LOCK_TRIES):  # another process's check holds it for an instant
            fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                time.sleep(0.05)
                continue
            if _same_file(fd, path):
                self._lock_file = fd
                return
            os.close(fd)  # a failed first build removed the file it held: lock the new one
        raise OutputBusy(
            f"{self.root} is being written by another build", hint="wait for it to finish"
        )

    # -- reading what is there ---------------------------------------------------------------
    def current_parts(self) -> list[Path]:
        if not self.current_link.exists():
            return []
        return sorted(self.current_link.resolve().glob("part-*.parquet"))

    def _read_existing(self) -> Existing:
        parts = self.current_parts()
        if not parts:
            return Existing()
        schema = pq.read_schema(parts[0])
        if _shape(schema) != _shape(self.schema):  # descriptions may change; names and types not
            raise OutputError(
                f"cannot append to {self.data_link}: its columns differ from the config's "
                f"(existing: {_describe(schema)}; config: {_describe(self.schema)})",
                hint="use mode: overwrite (or --mode overwrite) to replace it",
            )
        rows = sum(pq.ParquetFile(p).metadata.num_rows for p in parts)
        return Existing(rows=rows, parts=parts, schema=schema)

    def previous_manifest(self) -> Manifest | None:
        """The manifest of the build now published, read from its Parquet part, which the
        symlink swap publishes atomically (manifest.json is written just after it)."""
        for part in reversed(self.current_parts()):
            metadata = pq.read_schema(part).metadata or {}
            if MANIFEST_KEY in metadata:
                return Manifest.parse(metadata[MANIFEST_KEY], str(part))
        return None

    def existing_values(self, columns: list[str]) -> dict[str, set]:
        """Values already stored in the given columns (for uniqueness across appends)."""
        if not columns or not self.existing.parts:
            return {}
        table = pq.read_table(self.existing.parts, columns=columns)
        found: dict[str, set] = {name: set() for name in columns}
        for name in columns:  # chunk by chunk: no list of every value beside the set
            for chunk in table[name].chunks:
                found[name].update(chunk.drop_null().to_pylist())
        return found

    # -- writing ----------------------------------------------------------------------------
    def write(self, table: pa.Table) -> None:
        """Stage a part. The newest one is held back, to carry the manifest in its metadata."""
        if self._held is not None:
            with os_errors("write to"):
                self._write_part(self._held, self.part_metadata)
        self._held = table

    def _write_part(self, table: pa.Table, metadata: dict[bytes, bytes]) -> None:
        number = len(self.existing.parts) + len(self.parts)
        path = self.staging / f"part-{number:06d}-{self.build_id}.parquet"
        merged = {**(table.schema.metadata or {}), **metadata}
        pq.write_table(table.replace_schema_metadata(merged), path, compression="zstd")
        self.parts.append(path)

    def output_paths(self) -> dict[str, Path]:
        formats = self.config.output.formats
        paths = {"duckdb": self.config.duckdb_path, "parquet": self.data_link}
        return {kind: path for kind, path in paths.items() if kind in formats}

    def commit(self, manifest: Manifest | None = None) -> dict[str, Path]:
        """Publish this build: the DuckDB table (the commit point), the Parquet link, then
        manifest.json. A failure before the DuckDB commit leaves the previous output as it was."""
        with os_errors("publish to"):
            return self._commit(manifest)

    def _commit_parts(self, manifest: Manifest | None) -> str | None:
        """Write the held part, carrying the manifest; returns the manifest's text."""
        text = manifest.to_json() if manifest is not None else None
        if self._held is not None:
            extra = {MANIFEST_KEY: text.encode()} if text else {}
            self._write_part(self._held, {**self.part_metadata, **extra})
            self._held = None
        return text

    def _commit(self, manifest: Manifest | None) -> dict[str, Path]:
        text = self._commit_parts(manifest)
        formats = self.config.output.formats
        version = self.root / ".versions" / self.build_id
        version.mkdir(parents=True)
        for part in self.existing.parts:  # appended builds share the old parts, without copies
            os.link(part, version / part.name)
        for part in self.parts:
            _fsync(part)
            os.replace(part, version / part.name)
        all_parts = sorted(version.glob("part-*.parquet"))
        outputs: dict[str, Path] = {}
        if "duckdb" in formats:
            config = self.config
            try:
                duckdb_sink.publish(
                    config.duckdb_path,
                    config.table,
                    config.name,
                    self.build_id,
                    all_parts,
                    self.legacy,
                    loaded=[version / part.name for part in self.existing.parts],
                )
            except BaseException:  # rolled back (a cancelled run interrupts the load)
                drop_unpublished(version, config.duckdb_path, config.table, config.name)
                raise
            outputs["duckdb"] = config.duckdb_path
        else:
            progress.publishing()  # the `.current` swap is the commit point
        try:
            self._link(text, outputs)
        except OSError as exc:
            if "duckdb" not in formats and self._current_build() != self.build_id:
                progress.not_published()
                raise
            progress.published()
            raise OutputError(
                f"build {self.build_id} is published, but updating "
                f"{exc.filename2 or exc.filename} failed: "
                f"{exc.strerror}",
                hint="fix that path; the next build completes the Parquet link and manifest",
            ) from exc
        progress.published()
        remove_stale_builds(self.root / ".versions", keep=self.build_id)
        return outputs

    def _current_build(self) -> str | None:
        """The build `.current` links to (None: no link yet)."""
        link = self.current_link
        return Path(os.readlink(link)).name if link.is_symlink() else None

    def _link(self, text: str | None, outputs: dict[str, Path]) -> None:
        """The Parquet side of a publish: `.current`, `data`, then manifest.json."""
        formats = self.config.output.formats
        # The parts are kept even for DuckDB-only outputs: they are what `append` builds on.
        _replace_symlink(self.current_link, Path(".versions") / self.build_id)
        if "parquet" in formats:
            if not self.data_link.is_symlink():
                _replace_symlink(self.data_link, Path(".current"))
            outputs["parquet"] = self.data_link
        elif self.data_link.is_symlink():
            self.data_link.unlink()
        if text is not None:
            write_text_atomic(self.root / "manifest.json", text + "\n")
        drop_stale_report(self.root)


def drop_stale_report(root: Path) -> None:
    """Remove the output folder's report.html once a build has published: it describes an
    earlier build's data (`--report` then writes this build's). Only a report SynthAIx wrote:
    a file of the user's of that name stays."""
    report = root / "report.html"
    if is_own_report(report):
        with contextlib.suppress(OSError):
            report.unlink()


def _replace_symlink(link: Path, target: Path) -> None:
    if link.exists() and not link.is_symlink():
        raise OutputError(f"{link} exists and is not a symlink made by SynthAIx; move it away")
    temporary = link.with_name(f".{link.name}.{secrets.token_hex(4)}")
    temporary.symlink_to(target)
    os.replace(temporary, link)  # atomic: readers see the old target or the new one


def drop_unpublished(version: Path, database: Path, table: str, dataset: str) -> None:
    """A build's version folder (`.versions/<build>`), after its DuckDB load failed: a full
    copy of parts that nothing points to (33 MB were left until the next build). Kept when
    the table is that build's after all (the failure came after the commit: the next build
    rolls the Parquet side forward to it), and when the database cannot be read to tell."""
    with contextlib.suppress(Exception):
        if duckdb_sink.published_build(database, table, dataset, strict=True) != version.name:
            remove_build_folder(version)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _shape(schema: pa.Schema) -> list[tuple[str, pa.DataType]]:
    return [(f.name, f.type) for f in schema]


def _describe(schema: pa.Schema) -> str:
    return ", ".join(f"{f.name}:{f.type}" for f in schema)
