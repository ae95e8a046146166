"""Which LanceDB tables a build writes at a `dedupe.uri` given in its config, and the check
that refuses one SynthAIx did not make. Apart from `synthaix.dedupe.index` so that output
checks (`validate`, the CLI before Prefect starts) import neither LanceDB nor the build path."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from synthaix.config import DatasetConfig
from synthaix.dedupe.keys import key_columns, text_columns
from synthaix.errors import OutputError
from synthaix.fence import dedupe_path

if TYPE_CHECKING:
    from synthaix.relational.config import RelationalConfig

_OUR_FIELDS = {"row_id", "build", "key_hash", "vector"}
# Schema metadata of a dedupe table: the output folder of the dataset it belongs to. Builds of
# two datasets of one name sharing a `dedupe.uri` would each restore the table to their own
# last tag, undoing the other's rows (and an overwrite would replace it).
OWNER = b"synthaix.output"


def owner_metadata(output_dir: Path) -> dict[bytes, bytes]:
    return {OWNER: str(output_dir.resolve()).encode()}


def lance_tables(config: DatasetConfig | RelationalConfig) -> list[tuple[str, str]]:
    """(table name, dedupe.uri) of each LanceDB table a build of `config` writes at a
    `dedupe.uri` given in the config: the dataset's, or each table's of a multi-table one."""
    if isinstance(config, DatasetConfig):
        configs = [config]
    else:
        configs = [config.plan(table).config for table in config.order]
    return [
        (c.name, c.dedupe.uri)
        for c in configs
        if c.dedupe.uri and (key_columns(c) or text_columns(c))
    ]


def check_dedupe_target(config: DatasetConfig | RelationalConfig) -> None:
    """Refuse, before anything is written, a table at a `dedupe.uri` named as one the build
    writes that SynthAIx did not make: an overwrite build would replace it."""
    for name, uri in lance_tables(config):
        output = config.output_dir.resolve()
        local = dedupe_path(uri)
        if isinstance(local, Path) and not os.path.exists(local):  # False on any OSError
            continue  # no table there; lancedb.connect would make the folder, for a check
        import lancedb

        try:
            db = lancedb.connect(uri)
            if name not in set(db.table_names(limit=1_000_000)):
                continue
            schema = db.open_table(name).schema
            fields = set(schema.names)
        except Exception:  # an unusable uri: `open` reports it with its own message
            continue
        if not {"row_id", "build", "key_hash"} <= fields or not fields <= _OUR_FIELDS:
            raise OutputError(
                f"the LanceDB table '{name}' at dedupe.uri {uri} was not made by SynthAIx "
                f"(columns: {', '.join(sorted(fields))}); nothing was written",
                hint="point dedupe.uri at another database, or rename the dataset (in a "
                "multi-table dataset, the table)",
            )
        owner = Path((schema.metadata or {}).get(OWNER, b"").decode() or output)
        if owner != output and (owner / "manifest.json").exists():  # another, live dataset's
            raise OutputError(
                f"the dedupe table '{name}' at dedupe.uri {uri} belongs to the dataset built in "
                f"{owner}: builds of two datasets would undo each other's rows there; nothing "
                "was written",
                hint="give this dataset another name (in a multi-table dataset, the table), or "
                "another dedupe.uri",
            )
