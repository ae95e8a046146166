"""as_of, relative times and seed: as_of, and overrides by config path (no Prefect)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from conftest import generate_all, make_config, write_config
from synthaix.asof import derived_seed
from synthaix.config import load_config, parse_config
from synthaix.errors import ConfigError
from synthaix.fence import rebase
from synthaix.overrides import apply_overrides, parse_assignment

AS_OF = dt.datetime(2025, 3, 1, 10)


def test_relative_windows_stand_at_as_of_and_exclude_their_end() -> None:
    config = make_config(
        [
            {"name": "at", "type": "datetime", "start": "-1h", "end": "now"},
            {"name": "day", "type": "date", "start": "today-7d", "end": "TODAY"},
            {"name": "month", "type": "date", "start": "-1mo", "end": "today+1d"},
        ],
        as_of="2025-03-01T11:00:00+01:00",  # an offset: as_of is UTC
        rows=5000,
    )
    assert config.as_of == AS_OF
    table = generate_all(config)
    at, day = table["at"].to_pylist(), table["day"].to_pylist()
    assert min(at) >= dt.datetime(2025, 3, 1, 9) and max(at) < AS_OF
    assert min(day) == dt.date(2025, 2, 22) and max(day) == dt.date(2025, 2, 28)
    assert config.columns[2].bounds() == (dt.date(2025, 2, 1), dt.date(2025, 3, 1))


def test_segments_of_a_by_column_stand_at_as_of_too() -> None:
    config = make_config(
        [
            {"name": "kind", "type": "category", "values": ["a", "b"]},
            {
                "name": "at",
                "type": "datetime",
                "start": "-1h",
                "end": "now",
                "by": "kind",
                "params": {"a": {"start": "-2h"}},
            },
        ],
        as_of=AS_OF.isoformat(),
        rows=2000,
    )
    table = generate_all(config).to_pylist()
    a = [r["at"] for r in table if r["kind"] == "a"]
    b = [r["at"] for r in table if r["kind"] == "b"]
    assert min(a) >= AS_OF - dt.timedelta(hours=2) and max(a) < AS_OF
    assert min(a) < AS_OF - dt.timedelta(hours=1) <= min(b) and max(b) < AS_OF


def test_ranges_are_checked_at_the_as_of_they_stand_at(tmp_path: Path) -> None:
    data = {
        "name": "t",
        "rows": 10,
        "columns": [{"name": "at", "type": "datetime", "start": "2026-12-01", "end": "now"}],
    }
    path = write_config(tmp_path / "t.yaml", data | {"as_of": "2027-01-01T00:00:00"})
    assert load_config(path).as_of == dt.datetime(2027, 1, 1)
    with pytest.raises(ConfigError, match=r"t.yaml:\d+: columns\[0\] \(at\).end: at as_of 2025"):
        load_config(path, as_of=dt.datetime(2025, 1, 1))
    empty = [{"name": "d", "type": "date", "start": "today", "end": "today"}]
    with pytest.raises(ConfigError, match=r"excludes its own instant.*write today\+1d"):
        make_config(empty)
    far = [{"name": "d", "type": "datetime", "start": "-3000y", "end": "now"}]
    with pytest.raises(ConfigError, match="outside the years 0001 to 9999"):
        make_config(far)
    with pytest.raises(ConfigError, match=r"neither a date .* nor a time relative to as_of"):
        make_config([{"name": "d", "type": "date", "start": "yesterday", "end": "today"}])


def test_seed_as_of_is_derived_kept_as_written_and_reproducible() -> None:
    columns = [{"name": "n", "type": "integer", "min": 0, "max": 10**9}]
    night = make_config(columns, seed="as_of", as_of=AS_OF.isoformat())
    assert night.seed == derived_seed(AS_OF) and night.model_dump()["seed"] == "as_of"
    again = apply_overrides(night, {"rows": 20})
    assert again.seed == night.seed and again.as_of == AS_OF
    later = apply_overrides(night, {"as_of": AS_OF + dt.timedelta(days=1)})
    assert later.seed != night.seed
    assert generate_all(night).equals(generate_all(make_config(columns, seed=night.seed)))
    # A config that uses no as_of records none: reruns keep resuming their ledger.
    assert make_config(columns, as_of=AS_OF.isoformat()).as_of is None


def test_overrides_address_nested_values_and_say_what_is_wrong() -> None:
    config = make_config([{"name": "n", "type": "integer", "min": 0, "max": 9}], rows=4)
    path, value = parse_assignment("columns.n.max=3")
    assert apply_overrides(config, {path: value}).columns[0].max == 3
    assert parse_assignment("output.formats=[parquet]") == ("output.formats", ["parquet"])
    with pytest.raises(ConfigError, match="no item named 'm'"):
        apply_overrides(config, {"columns.m.max": 3})
    with pytest.raises(ConfigError, match=r"columns\.n\.max is a value"):
        apply_overrides(config, {"columns.n.max.x": 3})
    with pytest.raises(ConfigError, match=r"invalid config with the options runner.workers"):
        apply_overrides(config, {"runner.workers": 0})
    with pytest.raises(ConfigError, match=r"is not key\.path=value"):
        parse_assignment("rows")
    # A template as the README writes it: YAML reads {{ }} as a mapping key, and failed.
    template = "{{ prefect.variables.llm_model }}"
    assert parse_assignment(f"provider.model={template}") == ("provider.model", template)
    with pytest.raises(ConfigError, match=r"as YAML \(while parsing a flow sequence") as bad:
        parse_assignment("columns.a.values=[a, b")
    assert bad.value.hint == "quote a text value: --set 'columns.a.values=\"...\"'"
    # A relative time's bad unit: the whole value said, and every unit.
    column = {"name": "m", "type": "datetime", "start": "-1mon", "end": "now"}
    with pytest.raises(ConfigError) as bad:
        make_config([column])
    assert (
        "'-1mon' is not a relative time: '1mon' is not a duration; write e.g. 30s, 15min, 1h, "
        "5d, 2w, 3mo or 1y" in str(bad.value)
    )
    # One message for a path of the other kind of config (it listed 5 validation errors).
    with pytest.raises(ConfigError, match=r"tables\.t\.rows: t has no tables:") as caught:
        apply_overrides(config, {"tables.t.rows": 3})
    assert "\n" not in str(caught.value).split("hint")[0].strip()
    shop = load_config(Path(__file__).parents[1] / "configs" / "shop.yaml")
    with pytest.raises(ConfigError, match="a multi-table config sets columns per table"):
        apply_overrides(shop, {"columns.x.max": 3})


def test_an_output_root_anchors_once(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "root").mkdir()
    (tmp_path / "alias").symlink_to(tmp_path / "root")
    monkeypatch.chdir(tmp_path)
    config = parse_config(
        {"name": "t", "rows": 1, "columns": [{"name": "n", "type": "integer", "min": 0, "max": 1}]}
    )
    once = rebase(config, tmp_path / "alias")
    assert once.output_dir == tmp_path / "root" / "out" / "t"
    assert rebase(once, tmp_path / "alias").output_dir == once.output_dir


def test_a_runs_as_of_is_not_named_as_a_parameter_the_user_set(tmp_path: Path) -> None:
    """A scheduled run's as_of is the flow's, not the user's: an error in the parameters the
    user set named it beside them."""
    from tasks.plan import plan_build

    columns = [{"name": "at", "type": "date", "start": "-7d", "end": "today"}]
    path = write_config(tmp_path / "c.yaml", {"name": "c", "rows": 5, "columns": columns})
    with pytest.raises(ConfigError) as caught:
        plan_build.fn(str(path), None, {"as_of": AS_OF, "runner.workers": 0}, preflight=False)
    assert "invalid config with the parameters runner.workers (1 problem)" in str(caught.value)
    config = plan_build.fn(str(path), None, {"as_of": AS_OF, "rows": 7}, preflight=False)
    assert config.as_of == AS_OF and config.rows == 7
    # An as_of in `overrides` that is no time: said of the parameter (it blamed c.yaml's line 3).
    with pytest.raises(ConfigError, match=r"parameter as_of: 'yesterday' is not a time"):
        plan_build.fn(str(path), None, {"as_of": "yesterday"}, preflight=False)
    # An inline config beside a deployment's preset config_path: how to clear it.
    with pytest.raises(ConfigError, match="config_path is set too") as both:
        plan_build.fn(str(path), {"name": "x"}, {}, preflight=False)
    assert '"config_path": null' in (both.value.hint or "")


def test_a_deployment_runs_config_is_marked_as_a_slot(tmp_path: Path, monkeypatch) -> None:
    """An append of a deployment run's slot that published is not appended again; only a
    deployment run's config is marked so (a CLI build appends what it is asked to)."""
    from types import SimpleNamespace

    import tasks.plan
    from tasks.plan import plan_build

    columns = [{"name": "at", "type": "date", "start": "-7d", "end": "today"}]
    path = write_config(tmp_path / "c.yaml", {"name": "c", "rows": 5, "columns": columns})
    overrides = {"as_of": AS_OF, "mode": "append"}
    assert not plan_build.fn(str(path), None, dict(overrides), preflight=False)._slot
    run = SimpleNamespace(deployment_id="d", expected_start_time=AS_OF)
    monkeypatch.setattr(tasks.plan, "_deployment_run", lambda: run)
    monkeypatch.setattr(tasks.plan, "_variable", lambda name: None)  # no output root
    assert plan_build.fn(str(path), None, dict(overrides), preflight=False)._slot == AS_OF.replace(
        tzinfo=dt.UTC
    )
    # The free-form overrides parameter carries it as text (JSON from the UI or the API).
    as_text = {"as_of": "2026-03-01T10:00:00.250Z", "mode": "append"}
    slot = plan_build.fn(str(path), None, as_text, preflight=False)._slot
    assert slot == dt.datetime(2026, 3, 1, 10, 0, 0, 250000, tzinfo=dt.UTC)


def test_daily_appends_pass_their_range_checks_at_each_builds_as_of(tmp_path: Path) -> None:
    """The report checked every stored row against the last build's window: a daily append
    failed `event_day range` every day after the first, though each day's rows were right."""
    from synthaix.build.engine import Build
    from synthaix.build.executor import ThreadExecutor
    from synthaix.build.manifest import read_manifest
    from synthaix.report.html import check_dataset

    data = {
        "name": "ev",
        "rows": 300,
        "mode": "append",
        "seed": "as_of",
        "columns": [
            {"name": "day", "type": "date", "start": "today-1d", "end": "today"},
            {"name": "at", "type": "datetime", "start": "-1d", "end": "now"},
            {"name": "tier", "type": "category", "values": ["a", "b"]},
            {
                "name": "seen",
                "type": "datetime",
                "start": "-1d",
                "end": "now",
                "by": "tier",
                "params": {"b": {"start": "-2d"}},
            },
        ],
        "output": {"dir": str(tmp_path / "out")},
    }
    path = write_config(tmp_path / "ev.yaml", data)
    days = [dt.datetime(2025, 3, d) for d in (2, 3, 1)]  # the last one a backfill
    for as_of in days:
        config = load_config(path, as_of=as_of)
        Build(config, ThreadExecutor(config)).run()
    manifest = read_manifest(tmp_path / "out")
    assert manifest.as_of_span == (days[2], days[1])
    checks = check_dataset(tmp_path / "out")
    assert all(c.passed for c in checks), [c for c in checks if not c.passed]
    ranges = {c.column: c for c in checks if c.name == "range"}
    assert ranges["day"].passed and ranges["at"].passed, ranges
    # A `by` column's segments over every build: b's start at the first as_of, the end at
    # the last (its per-segment windows, declared at one as_of, are left out).
    assert ranges["seen"].expected == "[2025-02-27 00:00:00, 2025-03-02 23:59:59]"
    assert not [c for c in checks if c.column == "seen" and c.name == "relation"]
    assert ranges["day"].expected == "[2025-02-28, 2025-03-02]"  # 1 March's to 3 March's


def test_the_span_of_an_output_appended_before_it_was_kept_reads_its_slots() -> None:
    """A manifest written before `as_of_span` has its deployment slots' as_of (review)."""
    from types import SimpleNamespace

    from synthaix.build.manifest import appended_span

    day = dt.datetime(2025, 3, 1)
    old = SimpleNamespace(
        as_of_span=None,
        # Keys as slot_of makes them: the slot's time with its offset.
        slots={
            "sha256:ab@2025-03-01T00:00:00+00:00": "b1",
            "sha256:ab@2025-03-02T01:00:00+01:00": "b2",
        },
        config={"as_of": "2025-03-02T00:00:00"},
    )
    assert appended_span(day.replace(day=3), old, "append") == (day, day.replace(day=3))  # type: ignore[arg-type]
    assert appended_span(day.replace(day=3), old, "overwrite") is None  # type: ignore[arg-type]


def test_preview_takes_as_of_as_build_does(tmp_path: Path) -> None:
    """`preview --as-of` shows the rows `build --as-of` makes (it resolved against now)."""
    from typer.testing import CliRunner

    from synthaix.cli import app

    column = {"name": "day", "type": "date", "start": "-30d", "end": "today"}
    config = write_config(tmp_path / "r.yaml", {"name": "r", "rows": 20, "columns": [column]})
    command = ["preview", str(config), "--rows", "20", "--format", "csv"]
    shown = CliRunner().invoke(app, [*command, "--as-of", "2025-01-01T00:00"])
    assert shown.exit_code == 0, shown.output
    days = {dt.date.fromisoformat(line) for line in shown.output.split()[1:]}
    assert len(days) > 5 and min(days) >= dt.date(2024, 12, 2) and max(days) <= dt.date(2025, 1, 1)
    # A config that uses as_of only through --set (seed: as_of) gets the seed build would:
    # loaded without a use for it, the --as-of was dropped, and each run drew another seed.
    from synthaix.asof import derived_seed

    column = {"name": "n", "type": "integer", "min": 0, "max": 999}
    plain = {"name": "p", "rows": 20, "columns": [column]}
    config = write_config(tmp_path / "p.yaml", plain)
    command = ["preview", str(config), "--rows", "3", "--set", "seed=as_of"]
    seed = derived_seed(dt.datetime(2025, 1, 1, tzinfo=dt.UTC))
    for _ in range(2):
        shown = CliRunner().invoke(app, [*command, "--as-of", "2025-01-01T00:00"])
        assert shown.exit_code == 0, shown.output
        assert f"p: first 3 rows (seed {seed})" in shown.output
