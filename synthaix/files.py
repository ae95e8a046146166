"""Small file helpers shared by the writers, and how SynthAIx knows a file is its own."""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import secrets
import time
from pathlib import Path

REPORT_MARK = "<meta name=generator content=SynthAIx>"  # in the <head> of every report
_OLD_REPORT_MARK = " - SynthAIx report</title>"  # reports of 0.1, before the mark
_EXPORTS = ".exports.json"  # an output folder's exports, as `export` left them


def write_text_atomic(path: Path, text: str) -> Path:
    """Write `text` to `path` so readers see the old file or the new one, never half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")  # fixed: one a crash left is reused
    try:
        temporary.write_text(text, encoding="utf-8")
        temporary.replace(path)
    finally:
        temporary.unlink(missing_ok=True)
    return path


def hidden_temporary(path: Path) -> Path:
    """A name beside `path` for writing it first, in a folder of the user's: no file of
    theirs already (SynthAIx's own folders use fixed names, which its cleanup knows). The
    temporaries of `path` a killed writer left, untouched for an hour, go first (a killed
    export left 6 MB beside its target for good); one written to lately is another writer's."""
    stale = re.compile(rf"\.{re.escape(path.name)}\.[0-9a-f]{{8}}\.tmp")
    with contextlib.suppress(OSError):
        for entry in path.parent.iterdir():
            ours = stale.fullmatch(entry.name) and entry.is_file() and not entry.is_symlink()
            if ours and time.time() - entry.stat().st_mtime > STALE_TEMPORARY:
                entry.unlink(missing_ok=True)
    return path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")


STALE_TEMPORARY = 3600.0  # seconds since a temporary was last written to


def is_own_report(path: Path) -> bool:
    """Whether `path` is an HTML report SynthAIx wrote (its head says so)."""
    try:
        with path.open("r", encoding="utf-8", errors="replace") as file:
            head = file.read(4096)
    except OSError:
        return False
    return REPORT_MARK in head or _OLD_REPORT_MARK in head


def recorded_export(path: Path) -> bool | None:
    """Whether `path` is still the file an export recorded writing there (the same size, first
    and last 64 KiB: a copy of the folder is, an edit is not); None when none was recorded."""
    recorded = _exports(path.parent).get(path.name)
    if recorded is None:
        return None
    try:
        return recorded == _fingerprint(path)
    except OSError:
        return False


def remember_export(path: Path) -> None:
    exports = _exports(path.parent)
    exports[path.name] = _fingerprint(path)
    write_text_atomic(path.parent / _EXPORTS, json.dumps(exports, indent=1, sort_keys=True))


def _fingerprint(path: Path) -> str:
    size = path.stat().st_size
    digest = hashlib.sha256()
    with path.open("rb") as file:
        digest.update(file.read(65_536))
        file.seek(max(0, size - 65_536))
        digest.update(file.read(65_536))
    return f"{size}:{digest.hexdigest()}"


def _exports(folder: Path) -> dict[str, str]:
    try:
        found = json.loads((folder / _EXPORTS).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}
