"""The output fence: every path a build would write stays under the worker's output root,
after symlinks and `..`; nothing is created by the check."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from conftest import make_config
from synthaix.config import parse_any_config
from synthaix.errors import ConfigError, SynthaixError
from synthaix.fence import confine, output_root

COLUMNS = [
    {"name": "id", "type": "sequence"},
    {"name": "code", "type": "integer", "min": 0, "max": 9},
]


@pytest.fixture
def area(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """(root, outside), side by side in tmp_path; the current folder is the root."""
    root = tmp_path / "root"
    outside = tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    monkeypatch.chdir(root)
    return root, outside


@contextmanager
def unchanged(root: Path) -> Iterator[None]:
    """Nothing is created (or removed) beside or under the root by what runs inside."""
    top = root.resolve().parent  # tmp_path: the root, the outside folder, links
    before = {(str(p), p.is_symlink()) for p in top.rglob("*")}
    yield
    assert {(str(p), p.is_symlink()) for p in top.rglob("*")} == before


def ok(cfg: Any, root: Path, report: Path | None = None) -> None:
    with unchanged(root):
        confine(cfg, root, report)


def config(**output: Any):
    dedupe = output.pop("dedupe", None)
    extra = {"dedupe": {"uri": dedupe, "exact": False}} if dedupe is not None else {}
    return make_config(COLUMNS, output={k: str(v) for k, v in output.items()}, **extra)


def refused(cfg: Any, root: Path, *words: str, report: Path | None = None) -> ConfigError:
    with unchanged(root), pytest.raises(ConfigError) as caught:
        confine(cfg, root, report)
    message = str(caught.value)
    assert "\n" not in message
    assert str(root.resolve()) in message
    for word in words:
        assert word in message, message
    assert caught.value.hint and str(root.resolve()) in caught.value.hint
    assert isinstance(caught.value, SynthaixError)
    return caught.value


def shop(**output: Any) -> Any:
    orders_dedupe = output.pop("orders_dedupe", None)
    orders: dict[str, Any] = {
        "name": "orders",
        "parent": "customers",
        "count": {"distribution": "poisson", "mean": 2},
        "columns": [
            {"name": "order_id", "type": "sequence", "primary_key": True},
            {"name": "customer_id", "type": "reference", "to": "customers.customer_id"},
        ],
    }
    if orders_dedupe is not None:
        orders["dedupe"] = {"uri": orders_dedupe}
    data = {
        "name": "shop",
        "tables": [
            {
                "name": "customers",
                "rows": 10,
                "columns": [{"name": "customer_id", "type": "sequence", "primary_key": True}],
            },
            orders,
        ],
        "output": {k: str(v) for k, v in output.items()},
    }
    return parse_any_config(data)


# -- the setting -----------------------------------------------------------------------------
def test_output_root_reads_the_environment() -> None:
    assert output_root({}) is None
    assert output_root({"SYNTHAIX_OUTPUT_ROOT": ""}) is None
    assert output_root({"SYNTHAIX_OUTPUT_ROOT": "  "}) is None
    assert output_root({"SYNTHAIX_OUTPUT_ROOT": "/data/x"}) == Path("/data/x")


# -- inside ----------------------------------------------------------------------------------
def test_paths_inside_the_root_pass(area: tuple[Path, Path]) -> None:
    root, _ = area
    (root / "existing").mkdir()
    ok(config(), root)  # default out/t, from the current folder
    ok(config(dir="out/t"), root)
    ok(config(dir=root / "existing" / "t"), root)
    ok(config(dir="a/../b/t", duckdb="db/t.duckdb", dedupe="dedupe/t"), root)
    ok(config(dir="t", dedupe=f"file://{root / 'lance'}"), root, report=root / "r.html")
    ok(shop(dir="shop", orders_dedupe="lance"), root)


def test_a_symlink_inside_the_root_pointing_inside_passes(area: tuple[Path, Path]) -> None:
    root, _ = area
    (root / "real").mkdir()
    (root / "link").symlink_to(root / "real")
    ok(config(dir=root / "link" / "t"), root)


def test_the_root_as_a_symlink(area: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    root, outside = area
    alias = root.parent / "alias"
    alias.symlink_to(root, target_is_directory=True)
    try:
        ok(config(dir=root / "t"), alias)  # the path by its real name
        ok(config(dir=alias / "t"), alias)  # and through the link
        ok(config(dir=alias / "t"), root)
        monkeypatch.chdir(root.parent)
        ok(config(dir="root/t"), alias)
        refused(config(dir=outside / "t"), alias, "output.dir", str(outside / "t"))
    finally:
        alias.unlink()


def test_a_relative_root_is_refused(area: tuple[Path, Path]) -> None:
    """A worker's runs start in a fresh clone, deleted after the run: a relative root put the
    data in it, and the run completed with nothing kept."""
    root, _ = area
    for relative in (Path("."), Path("../root"), Path("configs")):
        with unchanged(root), pytest.raises(ConfigError) as caught:
            confine(config(dir=root / "t"), relative)
        assert f"the output root {relative} is not an absolute path" in str(caught.value)
        assert "an absolute folder, e.g. /srv/synthaix" in (caught.value.hint or "")


# -- outside ---------------------------------------------------------------------------------
def test_dot_dot_out_of_the_root_is_refused(area: tuple[Path, Path]) -> None:
    root, _ = area
    error = refused(config(dir="../../etc/x"), root, "output.dir", "../../etc/x")
    assert str(root.parent.parent / "etc" / "x") in str(error)  # the resolved path
    assert "set output.dir under" in (error.hint or "")
    refused(config(dir="inner/../../outside/t"), root, str(root.parent / "outside" / "t"))
    assert not (root.parent.parent / "etc" / "x").exists()


def test_an_absolute_path_outside_is_refused(area: tuple[Path, Path]) -> None:
    root, outside = area
    refused(config(dir=outside / "t"), root, "output.dir", str(outside / "t"))
    refused(config(dir="/etc/synthaix-test"), root, "/etc/synthaix-test")


def test_the_default_output_dir_from_a_folder_outside_is_refused(
    area: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    root, outside = area
    monkeypatch.chdir(outside)
    refused(config(), root, "output.dir", str(outside / "out" / "t"))


def test_a_symlink_to_outside_as_the_output_dir_is_refused(area: tuple[Path, Path]) -> None:
    root, outside = area
    (root / "link").symlink_to(outside, target_is_directory=True)
    try:
        refused(config(dir=root / "link"), root, "output.dir", f"resolves to {outside}")
        refused(config(dir="link"), root, str(outside))
    finally:
        (root / "link").unlink()


def test_a_symlink_to_outside_as_a_parent_is_refused(area: tuple[Path, Path]) -> None:
    root, outside = area
    (root / "link").symlink_to(outside, target_is_directory=True)
    try:
        refused(config(dir=root / "link" / "new" / "t"), root, str(outside / "new" / "t"))
        refused(config(dir="sub/../link/t"), root, str(outside / "t"))
        refused(config(dir="link/x/../../t"), root, str(outside.parent / "t"))
    finally:
        (root / "link").unlink()


def test_a_dangling_symlink_to_outside_is_refused(area: tuple[Path, Path]) -> None:
    root, outside = area
    (root / "dangling").symlink_to(outside / "not-yet")
    try:
        refused(config(dir=root / "dangling"), root, str(outside / "not-yet"))
        refused(config(dir="t", duckdb="dangling"), root, "output.duckdb")
    finally:
        (root / "dangling").unlink()


def test_a_symlink_loop_is_refused(area: tuple[Path, Path]) -> None:
    root, _ = area
    (root / "loop").symlink_to(root / "loop")
    try:
        refused(config(dir="t", duckdb="loop/t.duckdb"), root, "output.duckdb", "loop")
    finally:
        (root / "loop").unlink()


def test_a_symlink_inside_the_output_dir_to_outside_is_refused(area: tuple[Path, Path]) -> None:
    root, outside = area
    (root / "t").mkdir()
    (root / "t" / ".versions").symlink_to(outside, target_is_directory=True)
    try:
        refused(config(dir="t"), root, "output.dir", str(outside))
    finally:
        (root / "t" / ".versions").unlink()
        (root / "t").rmdir()


def test_a_duckdb_path_outside_is_refused_with_the_dir_inside(area: tuple[Path, Path]) -> None:
    root, outside = area
    refused(config(dir="t", duckdb=outside / "t.duckdb"), root, "output.duckdb")
    refused(config(dir="t", duckdb="../t.duckdb"), root, str(root.parent / "t.duckdb"))


def test_a_dedupe_uri_outside_is_refused(area: tuple[Path, Path]) -> None:
    root, outside = area
    refused(config(dir="t", dedupe=str(outside / "lance")), root, "dedupe.uri")
    refused(config(dir="t", dedupe="../lance"), root, "dedupe.uri", str(root.parent / "lance"))
    refused(config(dir="t", dedupe=f"file://{outside}/lance"), root, str(outside / "lance"))


@pytest.mark.parametrize(
    "uri", ["s3://bucket/dedupe", "gs://bucket/dedupe", "az://box/dedupe", "memory://"]
)
def test_a_remote_dedupe_uri_is_refused(area: tuple[Path, Path], uri: str) -> None:
    root, _ = area
    error = refused(config(dir="t", dedupe=uri), root, "dedupe.uri", uri, "not a local path")
    assert "remove dedupe.uri" in (error.hint or "")


def test_a_report_path_outside_is_refused(area: tuple[Path, Path]) -> None:
    root, outside = area
    refused(config(dir="t"), root, "report", report=outside / "report.html")


def test_a_multi_table_dataset_outside_is_refused(area: tuple[Path, Path]) -> None:
    root, outside = area
    refused(shop(dir=outside / "shop"), root, "output.dir", str(outside / "shop"))
    refused(shop(dir="shop", duckdb=outside / "shop.duckdb"), root, "output.duckdb")
    error = refused(shop(dir="shop", orders_dedupe=str(outside)), root, str(outside))
    assert "tables[1] (orders).dedupe.uri" in str(error)
    refused(shop(dir="shop", orders_dedupe="s3://bucket/x"), root, "(orders).dedupe.uri")


# -- the root itself -------------------------------------------------------------------------
def test_a_missing_root_or_a_file_as_root_is_refused(area: tuple[Path, Path]) -> None:
    root, _ = area
    with unchanged(root), pytest.raises(ConfigError, match="not an existing folder"):
        confine(config(dir="t"), root / "missing")
    assert not (root / "missing").exists()
    (root / "file").write_text("x")
    try:
        with unchanged(root), pytest.raises(ConfigError, match="not an existing folder"):
            confine(config(dir="t"), root / "file")
    finally:
        os.remove(root / "file")


@pytest.mark.parametrize("form", ["plain", "relative", "file://", "file:/", "file:relative"])
def test_dedupe_path_is_the_folder_lancedb_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, form: str
) -> None:
    """The fence and the checks look where LanceDB itself writes, `file:` forms included."""
    import lancedb

    from synthaix.fence import dedupe_path

    monkeypatch.chdir(tmp_path)
    absolute = tmp_path / "db"
    uri = {
        "plain": str(absolute),
        "relative": "db",
        "file://": f"file://{absolute}",
        "file:/": f"file:{absolute}",
        "file:relative": "file:db",
    }[form]
    lancedb.connect(uri).create_table("t", data=[{"x": 1}])
    folder = dedupe_path(uri)
    assert isinstance(folder, Path) and (tmp_path / folder / "t.lance").is_dir(), sorted(
        str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*.lance")
    )
