"""Config errors name the file, the line, the column and the field, and how to fix them."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import make_config
from synthaix.config import load_config
from synthaix.errors import ConfigError


def _error(tmp_path: Path, text: str) -> str:
    path = tmp_path / "bad.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return str(info.value)


def test_invalid_yaml_names_file_and_line(tmp_path: Path) -> None:
    message = _error(tmp_path, "name: x\nrows: 10\ncolumns:\n  - {name: a, type: uuid\n")
    assert f"{tmp_path / 'bad.yaml'}:5" in message
    assert "invalid YAML" in message


def test_a_date_not_in_the_calendar_names_file_and_line(tmp_path: Path) -> None:
    """YAML reads 2024-02-30 as a date and then cannot make it: a located error, not a
    traceback (in the file, and in a --set value)."""
    from synthaix.overrides import parse_assignment

    text = "name: x\nrows: 10\ncolumns:\n  - name: d\n    type: date\n"
    message = _error(tmp_path, text + "    start: 2024-01-01\n    end: 2024-02-30\n")
    assert f"{tmp_path / 'bad.yaml'}:7: invalid value: day is out of range" in message
    assert "bad.yaml:6:" in _error(tmp_path, text + "    start: 2024-13-01\n    end: 2025-01-01\n")
    number = _error(tmp_path, "name: x\nrows: 10\ncolumns:\n  - {name: n, type: float, max: 0x_}\n")
    assert "bad.yaml:4: invalid value" in number and "calendar" not in number
    with pytest.raises(ConfigError, match=r"--set columns\.d\.end: cannot read the value"):
        parse_assignment("columns.d.end=2024-02-30")


def test_unknown_type_lists_valid_ones_and_suggests(tmp_path: Path) -> None:
    message = _error(
        tmp_path,
        "name: x\nrows: 10\ncolumns:\n  - {name: a, type: uuid}\n  - {name: b, type: integr}\n",
    )
    assert "bad.yaml:5: columns[1] (b)" in message
    assert "unknown column type 'integr'" in message
    assert "did you mean 'integer'" in message
    for valid in ("uuid", "category", "person.first_name", "expression", "datetime"):
        assert valid in message


def test_bad_range_names_column_and_field(tmp_path: Path) -> None:
    text = (
        "name: x\nrows: 10\ncolumns:\n  - name: age\n    type: integer\n    min: 90\n    max: 18\n"
    )
    message = _error(tmp_path, text)
    assert "bad.yaml:4: columns[0] (age)" in message
    assert "min (90) is greater than max (18)" in message


@pytest.mark.parametrize(
    ("provider", "expected"),
    [
        # Else the unset side read as 0 and the cost was under-reported without a word.
        (
            "  model: m\n  price_input_per_million: 0.15\n",
            "bad.yaml:7: provider.price_input_per_million: price_input_per_million is set but "
            "price_output_per_million is not: set both (0 for a side that is free)",
        ),
        # `htp://` passed validate; the build said "cannot reach ... is the server running?".
        (
            "  base_url: htp://127.0.0.1:8089/v1\n",
            "bad.yaml:6: provider.base_url: 'htp://127.0.0.1:8089/v1' is no http:// or https://",
        ),
    ],
)
def test_provider_settings_are_checked_at_their_line(
    tmp_path: Path, provider: str, expected: str
) -> None:
    text = "name: x\nrows: 10\ncolumns:\n  - {name: note, type: llm}\nprovider:\n" + provider
    assert expected in _error(tmp_path, text)


def test_non_positive_weights_and_unknown_locale(tmp_path: Path) -> None:
    text = (
        "name: x\nrows: 10\ncolumns:\n"
        "  - {name: city, type: category, values: {Berlin: 0.5, Paris: 0}}\n"
        "  - {name: first, type: person.first_name, locale: xx_YY}\n"
    )
    message = _error(tmp_path, text)
    assert "bad.yaml:4: columns[0] (city): weights must be positive" in message
    assert "bad.yaml:5: columns[1] (first): unknown locale 'xx_YY'" in message
    assert "2 problems" in message


def test_yaml_booleans_among_category_values_are_named(tmp_path: Path) -> None:
    """YAML reads unquoted yes/no/on/off (NO, a country code, too) as booleans: they were
    stored as 1 and 0, or reported as numbers mixed with text."""
    text = (
        "name: x\nrows: 10\ncolumns:\n"
        "  - {name: answer, type: category, values: {yes: 0.5, no: 0.5}}\n"
        "  - {name: country, type: category, values: [NO, SE, DK]}\n"
        "  - {name: quoted, type: category, values: ['no', 'SE']}\n"
    )
    message = _error(tmp_path, text)
    assert (
        "bad.yaml:4: columns[0] (answer).values: YAML read values as booleans (true, false)"
        in message
    )
    assert (
        "bad.yaml:5: columns[1] (country).values: YAML read values as booleans (false)" in message
    )
    assert "quote them, e.g. 'no'" in message and "2 problems" in message
    text = (
        "name: x\nrows: 10\ncolumns:\n"
        "  - {name: a, type: category, values: [null, a]}\n"
        "  - {name: b, type: category, values: [2024-01-01, b]}\n"
    )
    message = _error(tmp_path, text)  # pydantic's union text, before
    assert "bad.yaml:4: columns[0] (a).values: values hold a null" in message
    assert (
        "bad.yaml:5: columns[1] (b).values: values hold 2024-01-01, which YAML reads as a date"
        in message
    )


def test_unknown_keys_are_errors_with_suggestion(tmp_path: Path) -> None:
    text = (
        "name: x\nrows: 10\nchunk_sise: 5\ncolumns:\n  - {name: a, type: integer, mn: 1, max: 3}\n"
    )
    message = _error(tmp_path, text)
    assert "bad.yaml:3: chunk_sise: unknown key 'chunk_sise'; did you mean 'chunk_size'?" in message
    assert "bad.yaml:5: columns[0] (a).mn: unknown key 'mn'; did you mean 'min'?" in message


def test_by_on_a_column_without_params_names_the_types_that_have_them(tmp_path: Path) -> None:
    """It said "'by' does not belong here" at `columns[1] (code).pattern.by`: the location
    took the union tag `pattern` for the column's field of that name."""
    text = (
        "name: x\nrows: 10\ncolumns:\n  - {name: c, type: category, values: [a, b]}\n"
        '  - {name: code, type: pattern, pattern: "X[0-9]{3}", by: c}\n'
        '  - {name: p, type: pattern, pattern: "[a-"}\n'
    )
    message = _error(tmp_path, text)
    assert (
        "bad.yaml:5: columns[1] (code).by: 'by' works on integer, float, category, boolean, "
        "date, datetime columns only" in message
    )
    assert "bad.yaml:6: columns[2] (p).pattern: '[' at position 1" in message
    offset = "  - {name: d, type: date, after: c, offset: {max: 5d, by: c}}\n"
    message = _error(tmp_path, text.replace(text.splitlines()[-1] + "\n", offset))
    assert "columns[2] (d).offset.by: 'by' does not belong here" in message


def test_references_must_be_earlier_columns(tmp_path: Path) -> None:
    text = (
        "name: x\nrows: 10\ncolumns:\n"
        '  - {name: email, type: expression, template: "{{ first }}.{{ lastt }}"}\n'
        "  - {name: first, type: person.first_name}\n"
    )
    message = _error(tmp_path, text)
    assert "references 'first', which comes later; move it above" in message
    assert "references 'lastt', which is not a column" in message
    own = '  - {name: note, type: llm, prompt: "About {{ note }}"}\n'
    message = _error(tmp_path, "name: x\nrows: 10\ncolumns:\n" + own)
    assert (
        "(note): reads 'note', its own value: a column can read only the columns above" in message
    )


def test_unique_beyond_capacity_fails_before_generating(tmp_path: Path) -> None:
    text = (
        "name: x\nrows: 100\ncolumns:\n"
        "  - {name: size, type: category, values: [S, M, L]}\n"
        "  - {name: flag, type: boolean}\n"
        '  - {name: combo, type: expression, template: "{{ size }}-{{ flag }}", unique: true}\n'
        "  - {name: n, type: integer, min: 1, max: 50, unique: true}\n"
    )
    message = _error(tmp_path, text)
    assert (
        "columns[2] (combo).unique: unique column can take only 6 distinct values but 100"
        in message
    )
    assert "columns[3] (n).unique: unique column can take only 50 distinct values" in message
    assert not (tmp_path / "out").exists()


def test_an_exact_dedupe_key_too_small_for_the_rows_fails_before_generating(
    tmp_path: Path,
) -> None:
    """The default key (every column but uuid and sequence) of 2 x 8 x 100 values caps the
    rows at 1,600: found by validate, not after the build's rounds stall. A nullable column
    adds its null; a key with an unbounded column, or the check off, is not bounded."""
    columns = (
        "columns:\n  - {name: id, type: uuid}\n"
        "  - {name: sex, type: category, values: [F, M]}\n"
        "  - {name: blood, type: category, values: [A+, A-, B+, B-, AB+, AB-, O+, O-]}\n"
        "  - {name: age, type: integer, min: 0, max: 99}\n"
    )
    message = _error(tmp_path, "name: x\nrows: 5000\n" + columns)
    assert (
        "dedupe: the exact-dedupe key (sex, blood, age) can take only 1,600 distinct rows but "
        "5,000 are asked for" in message
    )
    assert "dedupe: {exact: false}" in message
    nullable = columns.replace("max: 99}", "max: 99, nullable: 0.1}")
    assert "only 1,616 distinct rows" in _error(tmp_path, "name: x\nrows: 5000\n" + nullable)
    floats = (  # 10 x 3 values (0.1, 0.2, 0.3): (0.3 - 0.1) * 10 counted 2 in floats
        "columns:\n  - {name: c, type: category, values: [a, b, c, d, e, f, g, h, i, j]}\n"
        "  - {name: f, type: float, min: 0.1, max: 0.3, decimals: 1}\n"
    )
    for fine in (
        "name: x\nrows: 30\n" + floats,
        "name: x\nrows: 1600\n" + columns,
        "name: x\nrows: 5000\ndedupe: {exact: false}\n" + columns,
        "name: x\nrows: 5000\n" + columns + "  - {name: note, type: text.lorem}\n",
    ):
        path = tmp_path / "fine.yaml"
        path.write_text(fine)
        load_config(path)
    # The key ignores case and outer spaces: Foo, "foo " and FOO are one key value (validate
    # let 120 rows through, and the build failed after 7 rounds at 100).
    folded = (
        "dedupe: {key: [cat, n]}\ncolumns:\n"
        "  - {name: cat, type: category, values: [Foo, 'foo ', FOO, bar]}\n"
        "  - {name: n, type: integer, min: 1, max: 50}\n"
    )
    message = _error(tmp_path, "name: x\nrows: 120\n" + folded)
    assert "can take only 100 distinct rows (cat: values differing in case or outer" in message
    assert "set dedupe.key" not in message  # it is set


def test_problems_of_every_kind_are_said_in_one_pass(tmp_path: Path) -> None:
    """A misspelt column gets a guess, in a column, a constraint or the dedupe key, and a
    constraint's unknown names are said with the columns' problems (they came only after
    those were fixed); a nullable of 5 reads as the share it should be."""
    text = (
        "name: x\nrows: 10\ncolumns:\n"
        "  - {name: age, type: integer, min: 1, max: 5}\n"
        '  - {name: b, type: sql, expr: "agee * 2"}\n'
        'constraints: ["agee > 1"]\n'
        "dedupe: {key: [agge]}\n"
    )
    message = _error(tmp_path, text)
    assert "(b): references 'agee', which is not a column; did you mean 'age'?" in message
    assert "constraints[0]: 'agee' is not a column; did you mean 'age'? (columns: age, b)" in (
        message
    )
    assert "dedupe.key[0]: 'agge' is not a column; did you mean 'age'?" in message
    share = _error(tmp_path, text.replace("max: 5}", "max: 5, nullable: 5}"))
    assert "nullable: nullable is the share of rows left null, from 0 to 1; for 5 % write 0.05" in (
        share
    )


def test_field_errors_do_not_hide_the_unknown_names(tmp_path: Path) -> None:
    """Pydantic stops before the cross-column checks: a misspelt type or a nullable of 5 hid
    every misspelt reference until it was fixed. Both are said in one pass, each on its line;
    a broken column's name stays known (no false 'not a column' for what reads it)."""
    text = (
        "name: x\nrows: 10\ncolumns:\n"
        "  - {name: age, type: integr, min: 1, max: 5}\n"
        "  - {name: score, type: float, min: 0, max: 1, nullable: 5}\n"
        '  - {name: b, type: sql, expr: "agee * 2 + age + score"}\n'
        'constraints: ["scor > 0", "age > 1", 7]\n'
        "dedupe: {key: [agge]}\n"
    )
    message = _error(tmp_path, text)
    assert "(6 problems)" in message
    for said in (
        "bad.yaml:4: columns[0] (age): unknown column type 'integr'",
        "bad.yaml:5: columns[1] (score).nullable: nullable is the share",
        "bad.yaml:6: columns[2] (b): references 'agee', which is not a column; did you mean 'age'?",
        "bad.yaml:7: constraints[0]: 'scor' is not a column; did you mean 'score'?",
        'bad.yaml:7: constraints[2]: a constraint is a DuckDB boolean expression ("qty > 0") or',
        "bad.yaml:8: dedupe.key[0]: 'agge' is not a column; did you mean 'age'?",
    ):
        assert said in message
    assert "'age' is not a column" not in message and "references 'age'," not in message
    lines = [line.split(": ")[0] for line in message.splitlines()[1:]]
    assert lines == sorted(lines)  # in the file's order


def test_field_errors_do_not_hide_repeated_names_or_capacity(tmp_path: Path) -> None:
    """A misspelt type hid a repeated column name and a unique column of 3 values: each took
    another run of validate to find."""
    text = (
        "name: x\nrows: 10\ncolumns:\n"
        "  - {name: h, type: intger}\n"
        "  - {name: a, type: integer, min: 1, max: 3}\n"
        "  - {name: a, type: integer, min: 1, max: 3}\n"
        "  - {name: q, type: integer, min: 1, max: 3, unique: true}\n"
        "  - {name: t, type: expression, template: '{{ h }}', unique: true}\n"
    )
    message = _error(tmp_path, text)
    assert "bad.yaml:4: columns[0] (h): unknown column type 'intger'" in message
    assert "bad.yaml:6: columns[2] (a).name: duplicate column name 'a'" in message
    assert "bad.yaml:7: columns[3] (q).unique: unique column can take only 3 distinct" in message
    assert "3 problems" in message  # t reads the broken h: its capacity is unknown, not 1


def test_field_errors_do_not_hide_the_unknown_names_across_tables(tmp_path: Path) -> None:
    """The same in a multi-table config: a misspelt type in one table and a bad max in
    another no longer hide a misspelt related column. What reads a broken column (a related
    column, an aggregate of a child's) is not blamed for it."""
    text = (
        "name: shop\ntables:\n"
        "  - name: customers\n    rows: 10\n    columns:\n"
        "      - {name: customer_id, type: sequence, primary_key: true}\n"
        "      - {name: name, type: person.full_nam}\n"
        "      - {name: since, type: date, start: 2022-01-01, end: 2024-12-31}\n"
        "  - name: orders\n    parent: customers\n    count: 2\n    columns:\n"
        "      - {name: order_id, type: sequence, primary_key: true}\n"
        "      - {name: customer_id, type: reference, to: customers.customer_id}\n"
        "      - {name: at, type: datetime, after: customers.sinc, offset: {max: 30d}}\n"
        "      - {name: who, type: sql, expr: customers.name}\n"
        "      - {name: lines, type: aggregate, of: items, expr: sum(qty * 2)}\n"
        "  - name: items\n    parent: orders\n    count: 2\n    columns:\n"
        "      - {name: order_id, type: reference, to: orders.order_id}\n"
        "      - {name: qty, type: integer, min: 1, max: five}\n"
    )
    message = _error(tmp_path, text)
    said = [line for line in message.splitlines() if line.startswith("  ")]
    assert len(said) == 3, message
    for part in (
        "bad.yaml:7: tables[0] (customers).columns[1] (name): unknown column type 'person.full_n",
        "bad.yaml:15: tables[1] (orders).columns[2] (at): references 'customers.sinc', which is",
        "bad.yaml:23: tables[2] (items).columns[1] (qty).max: Input should be a valid integer",
    ):
        assert part in message, message
    assert "(who)" not in message and "(lines)" not in message


def test_a_reference_without_a_column_hides_no_other_problem(tmp_path: Path) -> None:
    """`to: customers` was pydantic's pattern message alone, and hid two unknown names."""
    text = (
        "name: u\ntables:\n"
        "  - name: customers\n    rows: 10\n    columns:\n"
        "      - {name: customer_id, type: sequence, primary_key: true}\n"
        "  - name: orders\n    rows: 20\n    columns:\n"
        "      - {name: a, type: reference, to: customers}\n"
        "      - {name: b, type: reference, to: customers.customer_idd}\n"
        "      - {name: c, type: reference, to: prodcts.product_id}\n"
        "      - {name: d, type: sql, expr: a.customer_id}\n"
        "      - {name: e, type: reference, to: customers, alias: buyer}\n"
        "      - {name: f, type: sql, expr: buyer.customer_id}\n"
    )
    message = _error(tmp_path, text)
    for part in (
        "bad.yaml:10: tables[1] (orders).columns[0] (a).to: must be table.column, the referenced",
        "bad.yaml:11: tables[1] (orders).columns[1] (b).to: 'customer_idd' is not a column",
        "bad.yaml:12: tables[1] (orders).columns[2] (c).to: 'prodcts' is not a table",
    ):
        assert part in message, message
    assert "(d)" not in message and "(f)" not in message  # read through a broken reference


def test_a_broken_count_hides_no_misspelt_parent(tmp_path: Path) -> None:
    """`count` on a root table and a negative mean hid the misspelt parent beside them."""
    text = (
        "name: m\ntables:\n"
        "  - name: customers\n    rows: 10\n    count: 3\n    columns:\n"
        "      - {name: customer_id, type: sequence, primary_key: true}\n"
        "  - name: orders\n    parent: customer\n    count: {mean: -2}\n    columns:\n"
        "      - {name: customer_id, type: reference, to: customers.customer_id}\n"
    )
    message = _error(tmp_path, text)
    for part in (
        "bad.yaml:5: tables[0] (customers).count: count is children per parent row: set parent",
        "bad.yaml:9: tables[1] (orders).parent: 'customer' is not a table; did you mean 'custom",
        "bad.yaml:10: tables[1] (orders).count.mean: Input should be greater than or equal to 0",
    ):
        assert part in message, message


def test_a_broken_reference_still_links_its_table_in_the_stand_in(tmp_path: Path) -> None:
    """A reference with a misspelt option stands in as a plain reference: its table is still
    a child of its parent, and what reads through it is not blamed."""
    text = (
        "name: shop\ntables:\n"
        "  - name: customers\n    rows: 10\n    columns:\n"
        "      - {name: customer_id, type: sequence, primary_key: true}\n"
        "  - name: products\n    rows: 10\n    columns:\n"
        "      - {name: product_id, type: sequence, primary_key: true}\n"
        "      - {name: label, type: text.lorem}\n"
        "  - name: orders\n    parent: customers\n    count: 2\n    columns:\n"
        "      - {name: customer_id, type: reference, to: customers.customer_id, on_del: x}\n"
        "      - {name: product_id, type: reference, to: products.product_id, weight: 2}\n"
        "      - {name: what, type: sql, expr: products.label}\n"
        "      - {name: who, type: sql, expr: customers.customer_idd}\n"
    )
    message = _error(tmp_path, text)
    assert "(3 problems)" in message, message
    assert "needs a reference column" not in message and "(what)" not in message
    assert "references 'customers.customer_idd'" in message


def test_a_table_with_problems_does_not_hide_those_of_tables_it_does_not_feed(
    tmp_path: Path,
) -> None:
    """Tables are checked in build order; one with a problem stopped the check, so a typo in
    products hid one in customers. Now only the tables reading it wait for its fix."""
    text = (
        "name: shop\ntables:\n"
        "  - name: products\n    rows: 5\n    columns:\n"
        "      - {name: product_id, type: sequence, primary_key: true}\n"
        "      - {name: label, type: sql, expr: \"'P' || product_idd\"}\n"
        "  - name: customers\n    rows: 10\n    columns:\n"
        "      - {name: customer_id, type: sequence, primary_key: true}\n"
        "      - {name: tag, type: sql, expr: customer_idd}\n"
        "  - name: orders\n    parent: customers\n    count: 2\n    columns:\n"
        "      - {name: customer_id, type: reference, to: customers.customer_id}\n"
        "      - {name: note, type: sql, expr: customers.tagg}\n"
    )
    message = _error(tmp_path, text)
    assert "(2 problems)" in message, message
    assert "bad.yaml:7: tables[0] (products).columns[1] (label): references 'product_idd'" in (
        message
    )
    assert "bad.yaml:12: tables[1] (customers).columns[1] (tag): references 'customer_idd'" in (
        message
    )


def test_unseeded_template_randomness_is_refused(tmp_path: Path) -> None:
    """Jinja2's random filter and lipsum() draw from Python's unseeded random: a build with
    them could not be made again from its config and seed."""
    for template in (
        "{{ ['a', 'b']|random }}",
        "{{ lipsum(1) }}",
        "{{ [[1]]|map('random')|first }}",
    ):
        column = f'{{name: t, type: expression, template: "{template}"}}'
        text = f"name: x\nrows: 10\ncolumns:\n  - {column}\n"
        assert "draws values no seed repeats" in _error(tmp_path, text)


def test_a_template_reading_pythons_internals_is_refused_when_validated(tmp_path: Path) -> None:
    """The sandbox refused `{{ a.__class__ }}` on every row of the build, with a hint about
    nulls; validate passed it."""
    text = (
        "name: x\nrows: 10\ncolumns:\n  - {name: n, type: integer, min: 1, max: 3}\n"
        "  - {name: t, type: expression, template: '{{ n.__class__ }}'}\n"
    )
    assert "bad.yaml:5: columns[1] (t): template: '__class__' is not readable" in _error(
        tmp_path, text
    )


def test_duplicate_names_and_missing_required_fields(tmp_path: Path) -> None:
    text = (
        "name: x\ncolumns:\n  - {name: a, type: uuid}\n"
        "  - {name: a, type: date, start: 2020-01-01}\n"
    )
    message = _error(tmp_path, text)
    assert "rows: Field required" in message
    assert "columns[1] (a).end: Field required" in message


def test_missing_file_and_non_mapping(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "shop.yaml").write_text("name: x\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="no such config file") as info:
        load_config(tmp_path / "nope.yaml")
    assert (
        info.value.hint
        == f"looked for {tmp_path / 'nope.yaml'}; YAML files in {tmp_path}: shop.yaml"
    )
    # Outside the working folder (a worker's clone), a folder is not listed: a deployment's
    # config_path parameter listed the worker's /etc.
    (tmp_path / "inside").mkdir()
    monkeypatch.chdir(tmp_path / "inside")
    with pytest.raises(ConfigError) as outside:
        load_config(tmp_path / "nope.yaml")
    assert outside.value.hint == f"looked for {tmp_path / 'nope.yaml'}"
    assert "must be a YAML mapping" in _error(tmp_path, "- just\n- a list\n")


def test_overrides_are_validated() -> None:
    config = make_config(
        [{"name": "a", "type": "integer", "min": 1, "max": 5, "unique": True}], rows=5
    )
    assert config.with_overrides(rows=4, seed=9).seed == 9
    with pytest.raises(ConfigError, match="can take only 5 distinct values but 6"):
        config.with_overrides(rows=6)
    with pytest.raises(ConfigError, match="rows"):
        config.with_overrides(rows=0)


def test_example_configs_are_valid() -> None:
    configs = sorted(Path(__file__).parents[1].joinpath("configs").glob("*.yaml"))
    assert len(configs) >= 4
    for path in configs:
        load_config(path)


def test_committed_json_schema_is_current() -> None:
    import json

    from synthaix.config import config_json_schema

    committed = Path(__file__).parents[1] / "configs" / "synthaix.schema.json"
    assert json.loads(committed.read_text()) == config_json_schema(), (
        "regenerate with: synthaix schema -o configs/synthaix.schema.json"
    )


def test_overrides_work_on_configs_built_in_code() -> None:
    from synthaix.columns.identity import UuidColumn
    from synthaix.config import DatasetConfig

    config = DatasetConfig(name="x", rows=5, columns=[UuidColumn(name="a")])
    assert config.with_overrides(rows=7, out=Path("elsewhere")).output_dir == Path("elsewhere")


def test_unknown_jinja_filter_is_a_config_error(tmp_path: Path) -> None:
    text = (
        "name: x\nrows: 10\ncolumns:\n  - {name: a, type: uuid}\n"
        '  - {name: b, type: expression, template: "{{ a | nosuchfilter }}"}\n'
    )
    message = _error(tmp_path, text)
    assert "bad.yaml:5: columns[1] (b): template is not valid Jinja2: No filter named" in message


def test_duplicate_keys_and_top_level_locale_are_located(tmp_path: Path) -> None:
    message = _error(tmp_path, "name: x\nrows: 10\nrows: 20\ncolumns: [{name: a, type: uuid}]\n")
    assert "bad.yaml:3: key 'rows' appears twice (first on line 2)" in message
    message = _error(
        tmp_path, "name: x\nrows: 10\nlocale: xx_YY\ncolumns: [{name: a, type: uuid}]\n"
    )
    assert "bad.yaml:3: locale: unknown locale 'xx_YY'" in message


def test_a_misspelt_required_key_is_one_problem(tmp_path: Path) -> None:
    text = "name: x\nrows: 10\ncolumns:\n  - {name: c, type: category, valuse: [a, b]}\n"
    message = _error(tmp_path, text)
    assert "1 problem" in message and "unknown key 'valuse'; did you mean 'values'?" in message


def test_near_dedupe_reads_a_sql_column_of_text(tmp_path: Path) -> None:
    """A sql column's type is the one DuckDB binds: `as: text` (or a string expression) is
    text; the dedupe check ran before the binding and called it no text column."""
    head = "name: s\nrows: 10\ncolumns:\n  - {name: k, type: integer, min: 1, max: 9}\n"
    near = "dedupe: {text: [note], near: true}\n"
    text = head + "  - {name: note, type: sql, expr: \"'k ' || k\", as: text}\n" + near
    path = tmp_path / "ok.yaml"
    path.write_text(text, encoding="utf-8")
    assert load_config(path).dedupe.text == ["note"]
    number = head + '  - {name: note, type: sql, expr: "k * 2"}\n' + near
    assert "'note' is not a text column" in _error(tmp_path, number)
