"""What SynthAIx may touch in an output folder, decided before the first write.

A folder is ours when it holds the marker file a build wrote when it first used the folder
(`.synthaix-output`), or when it is empty or absent. A non-empty folder without the marker is
refused: it may hold anything of the user's. Deleting is by name pattern only: a file is removed
when it has the shape of a file we write (a part, a temporary link) in a place we write it, and
folders only through `rmdir`, which fails on anything a user left inside.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

from synthaix import progress
from synthaix.errors import OutputError

MARKER = ".synthaix-output"
BUILD_ID = r"\d{8}T\d{6}-[0-9a-f]{6}"
PART = re.compile(rf"part-\d{{6}}-{BUILD_ID}\.parquet")
TEMP_LINK = re.compile(r"\.(data|current)\.[0-9a-f]{8}")
_BUILD_FILE = re.compile(rf"{PART.pattern}|dataset\.json|context-[0-9A-Za-z_]+\.(npy|parquet)")
_TABLE_DIR = r"[A-Za-z_][A-Za-z0-9_]*"
# Everything a build may leave at the top of its folder (a 0.1 build left no marker).
_OURS = {"data", ".current", ".versions", ".staging", ".lock", "manifest.json", "report.html"}
_OURS |= {".dedupe", ".ledger", MARKER}


def not_root_or_home(folder: Path | None, example: str) -> Path | None:
    """Each dataset gets a folder of its own (its output, its dedupe database); the root and
    home folders are never one."""
    resolved = folder.expanduser().resolve() if folder is not None else None
    if resolved is not None and resolved in (Path(resolved.anchor), Path.home().resolve()):
        where = "the root folder" if resolved == Path(resolved.anchor) else "the home folder"
        raise ValueError(f"{folder} is {where}; set a folder of its own, e.g. {example}")
    return folder


def check_output_dir(root: Path, dataset: str) -> bool:
    """Refuse a folder SynthAIx may not write into; True when a marker must be written.
    (The root and home folders never get here: the config refuses them.)"""
    if not root.exists():
        if root.is_symlink():
            raise OutputError(f"output.dir {root} is a broken symbolic link; fix or remove it")
        check_creatable(root)
        return True
    if not root.is_dir():
        raise OutputError(
            f"output.dir {root} exists and is a file, not a folder",
            hint="set output.dir (or --out) to a new or empty folder",
        )
    marker = root / MARKER
    if marker.is_file():
        owner = _marker_dataset(marker)
        if owner != dataset and _abandoned(root):  # a first build killed before it published
            return True
        if owner != dataset:
            raise OutputError(
                f"output.dir {root} holds the SynthAIx dataset '{owner}', not '{dataset}'",
                hint="give each dataset its own output.dir",
            )
        _check_layout(root)
        check_writable(root)
        for name in (".versions", ".staging", ".ledger", ".dedupe"):  # found after generating
            if (root / name).is_dir():
                check_writable(root / name)
        return False
    entries = sorted(p.name for p in root.iterdir())
    if not entries:
        check_writable(root)
        return True
    if _is_legacy_output(root, entries):
        _check_layout(root)
        check_writable(root)
        return True
    entries.sort(key=lambda name: name in _OURS)  # what is not ours is what the user must see
    shown = ", ".join(entries[:5]) + (f" and {len(entries) - 5} more" if len(entries) > 5 else "")
    raise OutputError(
        f"output.dir {root} is not empty and was not created by SynthAIx (it holds {shown}); "
        "nothing was written",
        hint="choose a new or empty folder for output.dir (or --out); SynthAIx never writes "
        "into a folder it did not create",
    )


def output_builds(root: Path) -> set[str]:
    """The builds whose versions the output folder holds (the published one among them)."""
    versions = root / ".versions"
    if not versions.is_dir():
        return set()
    return {entry.name for entry in versions.iterdir() if re.fullmatch(BUILD_ID, entry.name)}


def check_database_path(root: Path, database: Path) -> None:
    """output.duckdb must not be a name the output folder keeps for SynthAIx's own files:
    the database replaced the manifest, or took `data` (the Parquet link) and failed after
    its commit."""
    try:
        inside = database.resolve().relative_to(root.resolve()).parts
    except ValueError:
        return  # outside the output folder
    if inside and inside[0] in _OURS:  # data/x.duckdb went with the version it was put in
        raise OutputError(
            f"output.duckdb {database} is (or is inside) {inside[0]}, which SynthAIx keeps in "
            "its output folder; nothing was written",
            hint=f"name the database otherwise, e.g. {root / 'dataset.duckdb'}",
        )


def claim(root: Path, dataset: str) -> None:
    """Mark a folder as this dataset's output (after `check_output_dir` allowed it)."""
    root.mkdir(parents=True, exist_ok=True)
    text = json.dumps({"owner": "synthaix", "dataset": dataset}) + "\n"
    temporary = root / f".{MARKER}.tmp"
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, root / MARKER)


def _abandoned(root: Path) -> bool:
    """Whether the folder holds only what a first build leaves when killed before anything
    was published (its marker, lock and empty working folders): no data, nothing to resume.
    (A build holding the lock was refused before: `sink.not_locked`.)"""
    with contextlib.suppress(OSError):
        for entry in root.iterdir():
            if entry.name in (MARKER, ".lock"):
                continue
            working = entry.name in (".staging", ".versions") and not entry.is_symlink()
            if not (working and entry.is_dir() and not any(entry.iterdir())):
                return False
        return True
    return False


def unclaim(root: Path, made: bool) -> None:
    """After a first build that published nothing and left nothing to resume: its marker,
    lock and empty folders go, and the output folder too if the build `made` it (a failed
    first build left a folder holding only those). Call holding the lock."""
    ours = {MARKER, ".lock", ".staging", ".versions"}
    with contextlib.suppress(OSError):
        if {p.name for p in root.iterdir()} - ours:
            return  # data, a ledger to resume, dedupe files, or the user's
        for name in (".staging", ".versions"):
            if (root / name).is_dir() and not (root / name).is_symlink():
                (root / name).rmdir()  # only when empty
        (root / MARKER).unlink(missing_ok=True)
        (root / ".lock").unlink(missing_ok=True)
        if made:
            root.rmdir()


def remove_our_files(folder: Path, pattern: re.Pattern[str]) -> None:
    """Delete the files of `folder` whose names match `pattern`, then the folder if empty."""
    if not folder.is_dir() or folder.is_symlink():
        return
    for entry in folder.iterdir():
        if pattern.fullmatch(entry.name) and (entry.is_file() or entry.is_symlink()):
            entry.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        folder.rmdir()  # fails, as it should, when anything else is inside


def remove_stale_builds(folder: Path, keep: str | None = None) -> list[tuple[str, int]]:
    """Remove build folders (`.staging/<build>`, `.versions/<build>`) but the build `keep`;
    returns each one removed (`.staging/<build>`) with the bytes its files held."""
    if not folder.is_dir() or folder.is_symlink():
        return []
    removed = []
    for entry in folder.iterdir():
        if entry.name != keep and re.fullmatch(BUILD_ID, entry.name):
            # Freed bytes: an append's version shares its parts with the next (hard links).
            files = [f.stat() for f in entry.rglob("*") if f.is_file() and not f.is_symlink()]
            size = sum(st.st_size for st in files if st.st_nlink == 1)
            remove_build_folder(entry)
            removed.append((f"{folder.name}/{entry.name}", size))
    return removed


def say_removed(removed: list[tuple[str, int]]) -> None:
    """A note of what interrupted or superseded builds left and a build removed (it was
    silent: 258 MB went after a kill -9 without a word)."""
    if removed:
        size = sum(b for _, b in removed) / 2**20
        names = ", ".join(name for name, _ in removed)
        progress.note(f"removed what earlier builds left ({size:,.0f} MiB freed): {names}")


def remove_build_folder(folder: Path) -> None:
    """A build folder: its parts, and a multi-table build's table folders and context files."""
    if not folder.is_dir() or folder.is_symlink():
        return
    for entry in folder.iterdir():
        if entry.is_dir() and not entry.is_symlink() and re.fullmatch(_TABLE_DIR, entry.name):
            remove_our_files(entry, _BUILD_FILE)
    remove_our_files(folder, _BUILD_FILE)


@contextlib.contextmanager
def os_errors(action: str) -> Iterator[None]:
    """Turn a file-system failure into an OutputError that names the path and what to do."""
    try:
        yield
    except OutputError:
        raise
    except OSError as exc:
        raise output_error(exc, action) from exc


def output_error(exc: OSError, action: str) -> OutputError:
    path = exc.filename or "the output"
    hints = {
        errno.EACCES: "fix the permissions of that folder, or choose another output.dir",
        errno.EPERM: "fix the permissions of that folder, or choose another output.dir",
        errno.EROFS: "that file system is read-only: choose another output.dir",
        errno.ENOSPC: "the disk is full: free space or choose another output.dir",
    }
    return OutputError(
        f"cannot {action} {path}: {exc.strerror or exc}",
        hint=hints.get(exc.errno or 0, "check the path, or choose another output.dir"),
    )


def _marker_dataset(marker: Path) -> str:
    try:
        data = json.loads(marker.read_text(encoding="utf-8"))
        return str(data["dataset"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise OutputError(
            f"{marker} is damaged: {exc}",
            hint="if the folder is this dataset's output, write the marker again: "
            '{"owner": "synthaix", "dataset": "<name>"} (its data, ledger and files stay)',
        ) from exc


def _is_legacy_output(root: Path, entries: list[str]) -> bool:
    """A 0.1 build's folder: only our names, and `.current` naming the manifest's build."""
    others = [e for e in entries if e not in _OURS and not e.endswith(".duckdb")]
    current = root / ".current"
    if others or not current.is_symlink():
        return False
    try:
        build = json.loads((root / "manifest.json").read_text(encoding="utf-8"))["build_id"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return os.readlink(current) == str(Path(".versions") / str(build))


def _check_layout(root: Path) -> None:
    for name, target in (("data", ".current"), (".current", None)):
        path = root / name
        made_by_us = path.is_symlink() and (target is None or os.readlink(path) == target)
        if (path.exists() or path.is_symlink()) and not made_by_us:
            raise OutputError(
                f"{path} exists and is not the link SynthAIx makes; nothing was written",
                hint=f"move {path} out of the output folder, or choose another output.dir",
            )
    for name in ("manifest.json", "report.html"):
        path = root / name
        if (path.exists() or path.is_symlink()) and (path.is_symlink() or not path.is_file()):
            raise OutputError(
                f"{path} is not the file SynthAIx writes; nothing was written",
                hint=f"move {path} out of the output folder, or choose another output.dir",
            )
    for name in (".versions", ".staging", ".ledger"):
        path = root / name
        if path.exists() and (path.is_symlink() or not path.is_dir()):
            raise OutputError(
                f"{path} is not a folder; nothing was written",
                hint=f"move {path} out of the output folder, or choose another output.dir",
            )


def check_creatable(path: Path) -> None:
    """The nearest existing parent of `path` is a folder we may write into."""
    parent = path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise OutputError(f"cannot create {path}: {parent} is a file, not a folder")
    check_writable(parent)


def check_writable(folder: Path) -> None:
    if _read_only(folder):
        raise OutputError(
            f"cannot write to {folder}: read-only file system",
            hint="choose an output.dir on a writable file system",
        )
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(
            f"cannot write to {folder}: permission denied",
            hint="fix the permissions of that folder, or choose another output.dir",
        )


def _read_only(folder: Path) -> bool:
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except OSError:
        return False
