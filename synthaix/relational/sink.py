"""Outputs of a multi-table dataset, published all together or not at all.

    out/shop/
      .synthaix-output, .lock, manifest.json, shop.duckdb
      data -> .current                     data/customers/part-*.parquet, data/orders/...
      .current -> .versions/<build>        one folder per table, and the dataset manifest
      .staging/<build>/<table>/            this build's parts until the publish

Each table is staged by a TableWriter (the single-table writer, pointed at its folder, whose
commit only stages). The publish: the parts move into a new version folder, every table is
replaced in the DuckDB database in one transaction (the commit point; PRIMARY KEY and FOREIGN
KEY declared), then the `.current` link swaps and manifest.json follows. A table of the
database that SynthAIx did not make for this dataset is never touched.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import pyarrow as pa

from synthaix import duckdb_sink, progress
from synthaix.build.manifest import Manifest
from synthaix.config import DatasetConfig
from synthaix.dedupe.target import check_dedupe_target
from synthaix.errors import ConfigError, OutputError
from synthaix.files import write_text_atomic
from synthaix.ownership import (
    check_database_path,
    check_output_dir,
    os_errors,
    output_builds,
    remove_stale_builds,
    say_removed,
)
from synthaix.relational.config import RelationalConfig, kept_key_problems
from synthaix.relational.manifest import DatasetManifest
from synthaix.sink import (
    DatasetWriter,
    Existing,
    _active_staging,
    _discard,
    _fsync,
    _replace_symlink,
    drop_stale_report,
    drop_unpublished,
    not_locked,
)

DATASET_MANIFEST = "dataset.json"


class TableWriter(DatasetWriter):
    """One table's parts, staged in the dataset's build folder; commit stages, not publishes."""

    def __init__(self, owner: RelationalWriter, config: DatasetConfig, schema: pa.Schema) -> None:
        super().__init__(config, schema)
        self.owner = owner
        self.build_id = owner.build_id
        self.root = owner.root
        self.staging = owner.staging / config.name
        self.current_link = owner.current_link
        self.data_link = owner.data_link
        self.manifest: Manifest | None = None

    def __enter__(self) -> TableWriter:
        with os_errors("write to"):
            self.staging.mkdir(parents=True, exist_ok=True)
        if self.config.mode == "append":
            self.existing = self._read_existing()
        return self

    def __exit__(self, *exc: object) -> None:
        return None  # the dataset's writer owns the folder, the lock and the clean-up

    def current_parts(self) -> list[Path]:
        folder = self.current_link / self.config.name
        return sorted(folder.resolve().glob("part-*.parquet")) if folder.is_dir() else []

    def output_paths(self) -> dict[str, Path]:
        return self.owner.output_paths(self.config.name)

    def commit(self, manifest: Manifest | None = None) -> dict[str, Path]:
        if self._held is None and not self.parts:
            self._held = self.schema.empty_table()  # a table with no rows still has its part
        with os_errors("write to"):
            super()._commit_parts(manifest)
        self.manifest = manifest
        return self.output_paths()

    @property
    def all_parts(self) -> list[Path]:
        """Older builds' parts (append), then this build's, in order."""
        return [*self.existing.parts, *self.parts]


@dataclass
class TableOutput:
    name: str
    parts: list[Path]
    primary_key: list[str]
    foreign_keys: list[tuple[str, str, str]]  # (column, table, key)
    unique: list[str] = field(default_factory=list)  # referenced keys besides the primary key
    loaded: list[Path] = field(default_factory=list)  # what the table holds now (an append's)


class RelationalWriter:
    # The folder's lock and `.current` link are the single-table writer's, used alike.
    _lock = DatasetWriter._lock
    _unlock = DatasetWriter._unlock
    _claim_and_lock = DatasetWriter._claim_and_lock
    _release = DatasetWriter._release
    _current_build = DatasetWriter._current_build

    def __init__(self, config: RelationalConfig) -> None:
        self.config = config
        self.root = config.output_dir
        self.build_id = time.strftime("%Y%m%dT%H%M%S") + "-" + secrets.token_hex(3)
        self.staging = self.root / ".staging" / self.build_id
        self.data_link = self.root / "data"
        self.current_link = self.root / ".current"
        self.tables: dict[str, TableWriter] = {}
        self._lock_file: int | None = None
        self._made = (False, False)  # (made the folder, claimed it): see __exit__

    def __enter__(self) -> RelationalWriter:
        self.check()
        with os_errors("write to"):
            needs_marker = check_output_dir(self.root, self.config.name)
        self._claim_and_lock(needs_marker)
        try:
            with os_errors("write to"):
                self._tidy()
                self.staging.mkdir(parents=True)
            _active_staging.add(self.staging)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        _discard(self.staging)  # with the tables' folders in it
        self._release()

    def check(self) -> None:
        """Refuse, writing nothing, outputs SynthAIx may not write (see sink.check_output)."""
        not_locked(self.root)
        with os_errors("check"):
            check_output_dir(self.root, self.config.name)
            if "duckdb" in self.config.output.formats:
                check_database_path(self.root, self.config.duckdb_path)
                for table in self.config.order:
                    duckdb_sink.check_target(
                        self.config.duckdb_path,
                        table,
                        self.config.name,
                        False,
                        in_tables=True,
                        builds=output_builds(self.root),
                    )
            check_dedupe_target(self.config)

    def _tidy(self) -> None:
        self._roll_forward()
        removed = remove_stale_builds(self.root / ".staging")
        say_removed(removed + remove_stale_builds(self.root / ".versions", self._current_build()))

    def _roll_forward(self) -> None:
        """A build killed between the DuckDB commit and the link swap: finish the swap."""
        if "duckdb" not in self.config.output.formats:
            return
        config = self.config
        built = duckdb_sink.published_build(config.duckdb_path, config.order[0], config.name)
        if built is None or built == self._current_build():
            return
        version = self.root / ".versions" / built
        if version.is_dir():
            _replace_symlink(self.current_link, Path(".versions") / built)
            if (version / DATASET_MANIFEST).is_file():
                text = (version / DATASET_MANIFEST).read_text(encoding="utf-8")
                write_text_atomic(self.root / "manifest.json", text)
            drop_stale_report(self.root)
            progress.note(
                f"completed the publish of build {built}, interrupted: the output shows it"
            )

    # -- the tables ---------------------------------------------------------------------------
    def sink(self, config: DatasetConfig, schema: pa.Schema) -> TableWriter:
        writer = TableWriter(self, config, schema)
        self.tables[config.name] = writer
        return writer

    def previous_manifest(self) -> DatasetManifest | None:
        """The published dataset's manifest (an append carries its slots on), or None."""
        path = self.current_link / DATASET_MANIFEST
        if not path.is_file():
            return None
        return DatasetManifest.parse(path.read_text(encoding="utf-8"), str(path))

    def output_paths(self, table: str | None = None) -> dict[str, Path]:
        formats = self.config.output.formats
        data = self.data_link if table is None else self.data_link / table
        paths = {"duckdb": self.config.duckdb_path, "parquet": data}
        return {kind: path for kind, path in paths.items() if kind in formats}

    # -- publishing --------------------------------------------------------------------------
    def commit(self, manifest_json: str, outputs: list[TableOutput]) -> dict[str, Path]:
        with os_errors("publish to"):
            return self._commit(manifest_json, outputs)

    def _commit(self, manifest_json: str, outputs: list[TableOutput]) -> dict[str, Path]:
        version = self.root / ".versions" / self.build_id
        published: list[TableOutput] = []
        for output in outputs:
            folder = version / output.name
            folder.mkdir(parents=True)
            writer = self.tables[output.name]
            for part in writer.existing.parts:  # appended builds share the old parts
                os.link(part, folder / part.name)
            for part in writer.parts:
                _fsync(part)
                os.replace(part, folder / part.name)
            parts = sorted(folder.glob("part-*.parquet"))
            loaded = [folder / part.name for part in writer.existing.parts]
            published.append(dataclasses.replace(output, parts=parts, loaded=loaded))
        write_text_atomic(version / DATASET_MANIFEST, manifest_json + "\n")
        formats = self.config.output.formats
        if "duckdb" in formats:
            from synthaix.relational.database import publish_tables

            config = self.config
            try:
                publish_tables(
                    config.duckdb_path,
                    config.name,
                    self.build_id,
                    published,
                    foreign_keys=config.output.foreign_keys,
                )
            except BaseException:  # rolled back (a cancelled run interrupts the load)
                drop_unpublished(version, config.duckdb_path, config.order[0], config.name)
                raise
        else:
            progress.publishing()
        try:
            _replace_symlink(self.current_link, Path(".versions") / self.build_id)
            if "parquet" in formats:
                if not self.data_link.is_symlink():
                    _replace_symlink(self.data_link, Path(".current"))
            elif self.data_link.is_symlink():
                self.data_link.unlink()
            write_text_atomic(self.root / "manifest.json", manifest_json + "\n")
        except OSError as exc:  # as for one table: committed in DuckDB, or not at all
            current = self.current_link
            linked = current.is_symlink() and Path(os.readlink(current)).name == self.build_id
            if "duckdb" not in formats and not linked:
                progress.not_published()
                raise
            progress.published()
            raise OutputError(
                f"build {self.build_id} is published, but updating "
                f"{exc.filename2 or exc.filename} failed: {exc.strerror}",
                hint="fix that path; the next build completes the Parquet link and manifest",
            ) from exc
        drop_stale_report(self.root)
        progress.published()
        remove_stale_builds(self.root / ".versions", keep=self.build_id)
        return self.output_paths()


def check_same_tables(
    config: RelationalConfig, previous: DatasetManifest | None, where: Path
) -> None:
    """An append adds rows to the tables the dataset has. A new table would hold children of
    the new parents only (its report failed); a table left out would be dropped. A table
    kept on the append (`rows: 0`) needs rows stored."""
    kept = [t.name for t in config.tables if t.rows == 0]
    if previous is None and kept:
        raise OutputError(
            f"cannot keep the rows of {', '.join(kept)} (rows: 0): {where} holds no build of "
            f"{config.name} yet, so there are none to keep",
            hint="build the dataset first with rows of at least 1 in every table without a "
            "parent, then append",
        )
    if previous is None:
        return
    new = [t for t in config.order if t not in previous.tables]
    gone = [t for t in previous.order if t not in config.order]
    if new or gone:
        said = [f"{', '.join(new)} not in it yet"] if new else []
        said += [f"{', '.join(gone)} not in the config"] if gone else []
        raise OutputError(
            f"cannot append to {where}: the config's tables differ from the dataset's "
            f"({'; '.join(said)}); an append adds rows to the tables it has",
            hint="use mode: overwrite (or --mode overwrite) to rebuild the dataset with them",
        )
    problems = kept_key_problems(config, previous.rows)
    if problems:
        raise ConfigError(f"cannot append to {where}: {'; '.join(problems)}")


__all__ = ["Existing", "RelationalWriter", "TableOutput", "TableWriter", "check_same_tables"]
