"""Bad config input is cheap and clear: alias bombs, huge files and runaway templates fail fast
with a one-line message instead of hanging or eating memory."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from conftest import generate_all, make_config
from synthaix.columns.expression import ExpressionColumn
from synthaix.columns.llm import LlmColumn
from synthaix.columns.sandbox import MAX_RENDERED_CHARS
from synthaix.config import load_config
from synthaix.errors import ConfigError
from synthaix.yaml_source import MAX_CONFIG_BYTES

REPO = Path(__file__).parents[1]
HEAD = "name: t\nrows: 5\nseed: 1\n"
# A constant template holds one distinct row: without exact dedupe, rows of it are valid.
NO_KEY = {"exact": False}


# The child's own peak: VmHWM belongs to its address space, which exec replaces. Its rusage
# also counts the address space before exec: a vfork'd child inherits the test process's
# peak (539 MB after a few builds in the same pytest run, failing a bound of 500).
_PEAK = (
    "import atexit, sys\n"
    "def peak():\n"
    "    with open('/proc/self/status') as status:\n"
    "        kb = status.read().split('VmHWM:')[1].split()[0]\n"
    "    print(f'\\nPEAK_KB {kb}', file=sys.stderr)\n"
    "atexit.register(peak)\n"
    "from synthaix.cli import app\n"
    "sys.argv = ['synthaix', *sys.argv[1:]]\n"
    "app()\n"
)


def _validate(path: Path) -> tuple[int, str, float, int]:
    """Run `synthaix validate path` in a child process: exit code, output, seconds, and the
    child's peak resident memory in MB."""
    if not Path("/proc/self/status").exists():
        pytest.skip("the child's peak is read from /proc")
    out = path.with_suffix(".out")
    started = time.perf_counter()
    with out.open("w") as sink:
        child = subprocess.Popen(
            [sys.executable, "-c", _PEAK, "validate", str(path)],
            cwd=REPO,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
        deadline = threading.Timer(60, child.kill)  # a regression fails instead of hanging
        deadline.start()
        try:
            child.wait()
        finally:
            deadline.cancel()
    seconds = time.perf_counter() - started
    output, marked, peak = out.read_text().rpartition("\nPEAK_KB ")
    assert marked, f"validate did not exit normally ({child.returncode}): {peak[-2000:]}"
    return child.returncode, output, seconds, int(peak) // 1024


def _alias_bomb() -> str:
    """Ten nested anchors of nine aliases each: 9**9 values from ten lines."""
    lines = ['a0: &a0 ["lol"]']
    for level in range(1, 10):
        lines.append(f"a{level}: &a{level} [" + ", ".join([f"*a{level - 1}"] * 9) + "]")
    return HEAD + "\n".join(lines) + "\ncolumns: [{name: id, type: uuid}]\n"


# -- YAML ----------------------------------------------------------------------------------


def test_alias_bomb_fails_validate_fast_with_one_line(tmp_path: Path) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(_alias_bomb(), encoding="utf-8")
    code, output, seconds, _ = _validate(path)
    assert code == 2, output
    assert seconds < 5, f"validate took {seconds:.1f} s"
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, output
    assert str(path) in errors[0] and "YAML aliases expand to more than 100,000 values" in errors[0]
    assert "Traceback" not in output


def test_anchors_aliases_and_merge_keys_still_work(tmp_path: Path) -> None:
    path = tmp_path / "ok.yaml"
    path.write_text(
        HEAD + "columns:\n"
        "  - &age {name: age, type: integer, min: 18, max: 90}\n"
        "  - <<: *age\n"
        "    name: age2\n"
        "    max: 30\n"
        "  - {name: tags, type: category, values: &tags [a, b, c]}\n"
        "  - {name: more, type: category, values: *tags}\n",
        encoding="utf-8",
    )
    config = load_config(path)
    age2 = config.columns[1]
    assert (age2.name, age2.min, age2.max) == ("age2", 18, 30)  # type: ignore[attr-defined]
    assert config.columns[3].values == ["a", "b", "c"]  # type: ignore[attr-defined]
    code, output, _, _ = _validate(path)
    assert code == 0 and "is valid" in output, output


def test_errors_in_a_merged_mapping_name_the_line_that_set_the_value(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        HEAD + "columns:\n"
        "  - &age {name: age, type: integer, min: 18, max: 90}\n"
        "  - <<: *age\n"
        "    name: young\n"
        "    max: ten\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "bad.yaml:8: columns[1] (young).max: " in str(info.value)  # not line 4's `max: 90`


def test_an_alias_inside_its_own_anchor_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "loop.yaml"
    path.write_text(HEAD + "x: &x [1, *x]\ncolumns: [{name: id, type: uuid}]\n", "utf-8")
    with pytest.raises(ConfigError, match=r"loop.yaml:4: the value anchored here contains"):
        load_config(path)


def test_oversize_config_is_refused_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    with path.open("w", encoding="utf-8") as f:
        f.write(HEAD + "columns: [{name: id, type: uuid}]\n")
        f.write("#" * MAX_CONFIG_BYTES + "\n")
    started = time.perf_counter()
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert time.perf_counter() - started < 1
    assert f"{path}: config file is 8.0 MiB or more; a config may be at most 8 MiB" in str(
        info.value
    )


# -- templates at validate time ------------------------------------------------------------


@pytest.mark.parametrize(
    "template", ["{{ 'x' * 1000000000 }}", "{{ 'x'|center(1000000000) }}", "{{ 10 ** 10**9 }}"]
)
def test_validate_never_evaluates_a_template(tmp_path: Path, template: str) -> None:
    path = tmp_path / "expensive.yaml"
    path.write_text(
        HEAD
        + "dedupe: {exact: false}\n"
        + f'columns:\n  - {{name: x, type: expression, template: "{template}"}}\n',
        "utf-8",
    )
    code, output, seconds, peak_mb = _validate(path)
    assert code == 0, output  # the template is valid; only rendering it is refused
    assert seconds < 5, f"validate took {seconds:.1f} s"
    assert peak_mb < 500, f"validate peaked at {peak_mb} MB"


# -- templates at build time ---------------------------------------------------------------

RUNAWAY = {
    "repeat": "{{ 'x' * 1000000000 }}",
    "center": "{{ 'x'|center(1000000000) }}",
    "nested_loops": (
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
    ),
    "doubling_concat": (
        "{% set ns = namespace(s='x') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}"
        "{% endfor %}{{ ns.s }}"
    ),
    "percent_width": "{{ '%0999999999d' % 1 }}",
    "format_width": "{{ '{:>{w}}'.format(1, w=999999999) }}",
    "power": "{{ 7 ** 1000000000 }}",
    "replace_chain": "{{ 'x'" + "|replace('x', 'xx')" * 40 + " }}",
    "join_width": "{{ range(100000)|join('x' * 100000) }}",
    "macro_recursion": (
        "{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(40) }}"
    ),
    "list_printed": (
        "{% set a = ['xxxxxxxxxx'] * 10 %}{% set b = [a, a, a, a, a, a, a, a, a, a] %}"
        "{% set c = [b, b, b, b, b, b, b, b, b, b] %}{% set d = [c, c, c, c, c, c, c, c, c, c] %}"
        "{{ [d, d, d, d, d, d, d, d, d, d] }}"
    ),
    "output_loop": "{% for i in range(100000) %}{{ 'x' * 1000 }}{% endfor %}",
    "nested_literals": (
        "{% set ns = namespace(x=[1]) %}{% for i in range(40) %}{% set ns.x = [ns.x, ns.x] %}"
        "{% endfor %}{{ ns.x == ns.x }}"
    ),
    "comparing_in_loops": (
        "{% set a = 'x' * 100000 %}{% set b = 'x' * 99999 ~ 'x' %}{% for i in range(100000) %}"
        "{% for j in range(100) %}{{ a == b }}{% endfor %}{% endfor %}"
    ),
}


@pytest.mark.parametrize("template", RUNAWAY.values(), ids=RUNAWAY.keys())
def test_runaway_template_fails_fast_at_build_naming_the_column(template: str) -> None:
    column = {"name": "x", "type": "expression", "template": template}
    config = make_config([column], rows=5, chunk_size=5, dedupe=NO_KEY)
    started = time.perf_counter()
    with pytest.raises(ConfigError) as info:
        generate_all(config)
    seconds = time.perf_counter() - started
    assert seconds < 5, f"took {seconds:.1f} s"
    message = str(info.value)
    assert message.startswith("column 'x': ")
    assert "100,000" in message or "1,000,000 steps" in message, message
    assert info.value.hint and "at most" in info.value.hint


def test_a_template_just_under_the_bound_renders_and_one_over_fails() -> None:
    ok = make_config(
        [
            {"name": "n", "type": "sequence"},
            {"name": "x", "type": "expression", "template": "{{ 'x' * (100001 - n) }}"},
        ],
        rows=3,
        chunk_size=3,
    )
    assert [len(v) for v in generate_all(ok)["x"].to_pylist()] == [100_000, 99_999, 99_998]
    over = make_config(
        [{"name": "x", "type": "expression", "template": "{{ 'x' * 50001 ~ 'x' * 50000 }}"}],
        rows=3,
        chunk_size=3,
        dedupe=NO_KEY,
    )
    with pytest.raises(ConfigError, match=r"column 'x': .*100,001 characters"):
        generate_all(over)


def test_everyday_templates_render_as_before() -> None:
    config = make_config(
        [
            {"name": "first", "type": "category", "values": ["Ann", "Bob"]},
            {"name": "n", "type": "sequence"},
            {
                "name": "x",
                "type": "expression",
                "template": (
                    "{% if n is even %}{{ first|upper }}{% else %}{{ first|lower }}{% endif %}"
                    "{% for t in ['a', 'b'] %}-{{ t }}{{ loop.index }}{% endfor %} "
                    "{{ '%03d' % n }} {{ '{:>4}'.format(first) }} {{ first|center(7)|trim }} "
                    "{{ [first, n]|join('/') }} {{ (first ~ '!') * 2 }} {{ none }}|"
                ),
            },
        ],
        rows=2,
        chunk_size=2,
    )
    table = generate_all(config)
    for first, n, x in zip(*(table[c].to_pylist() for c in ("first", "n", "x")), strict=True):
        name = first.upper() if n % 2 == 0 else first.lower()
        assert x == f"{name}-a1-b2 {n:03d} {first:>4} {first} {first}/{n} {first}!{first}! |"


def test_fast_path_refuses_what_the_row_path_refuses() -> None:
    long_text = "ab" * (MAX_RENDERED_CHARS // 4 + 1)  # two of them pass the bound
    values = {"a": pa.array([long_text, "ab"])}
    doubled = ExpressionColumn(name="x", template="{{ a }}{{ a }}")
    assert doubled.vectorised(values, 2) is None
    with pytest.raises(ConfigError, match=r"column 'x': template output exceeds 100,000"):
        doubled.render_rows(values, 2)
    grows = ExpressionColumn(name="y", template="{{ a" + "|replace('a', 'aaaa')" * 12 + " }}")
    assert grows.vectorised({"a": pa.array(["ab", "ba"])}, 2) is None
    with pytest.raises(ConfigError, match=r"column 'y': replace would make a value of"):
        grows.render_rows({"a": pa.array(["ab", "ba"])}, 2)
    small = ExpressionColumn(name="z", template="{{ a|replace('a', 'AA')|upper }}")
    fast = small.vectorised(values, 2)
    assert fast is not None
    assert fast.to_pylist() == small.render_rows(values, 2).to_pylist()


def test_llm_prompts_are_bounded_too() -> None:
    column = LlmColumn(name="review", prompt="Write about {{ topic }}{{ 'x' * 1000000000 }}")
    started = time.perf_counter()
    with pytest.raises(ConfigError, match=r"column 'review': prompt repeating with \*"):
        column.instruction({"topic": "tea"})
    assert time.perf_counter() - started < 1
    assert LlmColumn(name="r", prompt="About {{ topic|upper }}").instruction({"topic": "tea"}) == (
        "About TEA"
    )


def test_an_empty_replace_pattern_never_reaches_pyarrow(monkeypatch: pytest.MonkeyPatch) -> None:
    # pyarrow's replace_substring with an empty pattern allocates until the process is killed.
    from synthaix.columns import expression

    def replace(array: pa.Array, old: str, new: str) -> pa.Array:
        assert old, "an empty pattern must take the row-by-row path"
        return pc.replace_substring(array, old, new)

    monkeypatch.setitem(expression._FILTERS, "replace", replace)
    column = ExpressionColumn(name="x", template="{{ a|replace('', '-') }}")
    values = {"a": pa.array(["ab", None])}
    assert column.vectorised(values, 2) is None
    assert column.render_rows(values, 2).to_pylist() == ["-a-b-", "-"]
