"""The LLM path's parts: parsing broken answers, prompts, batch sizes, format fallback."""

from __future__ import annotations

import json
from typing import Any

import pytest
from llm_helpers import simulator

from conftest import make_config
from synthaix.columns.llm import LlmColumn
from synthaix.errors import ConfigError
from synthaix.llm.client import LlmClient
from synthaix.llm.fill import rows_per_request
from synthaix.llm.parse import extract_payload, parse_answer, row_model
from synthaix.llm.prompts import render, rows_schema
from synthaix.llm.provider import ProviderConfig
from synthaix.llm.stats import StatsRecorder

REVIEW = LlmColumn(name="review", prompt="A review by a {{ age }}-year-old", max_length=40)
STARS = LlmColumn(name="stars", schema={"type": "integer", "minimum": 1, "maximum": 5})


@pytest.mark.parametrize(
    "text",
    [
        '{"rows": [{"id": 1, "review": "ok"}]}',
        'Sure! Here you go:\n```json\n{"rows": [{"id": 1, "review": "ok"}]}\n```\nAnything else?',
        '{"rows": [{"id": 1, "review": "ok"}, {"id": 2, "rev',
        "{'rows': [{'id': 1, 'review': 'ok'},]}",
    ],
)
def test_answers_are_found_and_repaired(text: str) -> None:
    payload, _ = extract_payload(text)
    assert payload["rows"][0] == {"id": 1, "review": "ok"}


def test_each_row_is_validated_on_its_own() -> None:
    model = row_model([REVIEW, STARS], with_id=True)
    rows = [
        {"id": 0, "review": "great", "stars": 5},
        {"id": 1, "review": 12345, "stars": 4},  # wrong type
        {"id": 2, "stars": 3},  # missing field
        {"id": 3, "review": "x" * 41, "stars": 2},  # too long
        {"id": 4, "review": "fine", "stars": 9},  # out of range
        {"id": 0, "review": "again", "stars": 1},  # id answered twice
        {"id": 77, "review": "who?", "stars": 1},  # id never asked
    ]
    answer = parse_answer(json.dumps({"rows": rows}), model, expected_ids={0, 1, 2, 3, 4})
    assert [r["id"] for r in answer.rows] == [0]
    assert answer.rejected == {
        "wrong_type": 1,
        "missing_field": 1,
        "outside_schema": 2,
        "duplicate_id": 1,
        "unknown_id": 1,
    }
    assert any("id 3" in f and "review" in f for f in answer.feedback)


def test_a_schemas_min_length_is_enforced() -> None:
    """Only maxLength was: a `minLength: 20` column kept answers of one word."""
    column = LlmColumn(name="bio", schema={"type": "string", "minLength": 20})
    model = row_model([column], with_id=True)
    rows = [{"id": 0, "bio": "short"}, {"id": 1, "bio": "long enough to be kept here"}]
    answer = parse_answer(json.dumps({"rows": rows}), model, expected_ids={0, 1})
    assert [r["id"] for r in answer.rows] == [1] and answer.rejected == {"outside_schema": 1}


def test_hopeless_answer_is_malformed() -> None:
    answer = parse_answer("I cannot help with that.", row_model([REVIEW], True), {0})
    assert answer.rejected == {"malformed_json": 1} and not answer.rows


def test_prompt_carries_inputs_once_and_schema_when_asked() -> None:
    inputs = [{"id": i, "review": REVIEW.instruction({"age": 20 + i})} for i in range(3)]
    messages = render("Shop reviews", [REVIEW, STARS], inputs, 3, schema_in_prompt=True)
    user = messages[1]["content"]
    assert "A review by a 22-year-old" in user and "Shop reviews" in messages[0]["content"]
    assert json.dumps(rows_schema([REVIEW, STARS], 3, with_ids=True)) in user
    plain = render(None, [STARS], None, 7, schema_in_prompt=False)[1]["content"]
    assert "exactly 7 new rows" in plain and "schema" not in plain


def test_rows_per_request_follows_the_output_budget() -> None:
    short = rows_per_request(ProviderConfig(max_tokens=4096), [STARS])
    long = rows_per_request(ProviderConfig(max_tokens=4096), [LlmColumn(name="t", max_length=2000)])
    assert short == 50 and 1 <= long < 10
    assert rows_per_request(ProviderConfig(rows_per_request=7), [STARS]) == 7


def test_auto_structured_output_falls_back_when_unsupported() -> None:
    with simulator(formats=("json_object",)) as sim:
        client = LlmClient(ProviderConfig(base_url=sim.url, model="sim-small"))
        schema = rows_schema([STARS], 2, with_ids=False)
        messages = render(None, [STARS], None, 2, schema_in_prompt=True)
        answer = client.complete(messages, schema, 512, StatsRecorder())
    assert client.mode == "json_object"
    assert len(json.loads(answer.text)["rows"]) == 2


def test_llm_config_errors() -> None:
    with pytest.raises(ConfigError, match="max_length, enum and pattern apply to text"):
        make_config([{"name": "n", "type": "llm", "schema": {"type": "integer"}, "max_length": 3}])
    with pytest.raises(ConfigError, match="references 'missing'"):
        make_config([{"name": "r", "type": "llm", "prompt": "about {{ missing }}"}])
    code = {"name": "code", "type": "llm", "pattern": r"^SKU-\d{6}-[A-Z]{2}$"}
    with pytest.raises(ConfigError, match="shortest match has 13 characters"):
        make_config([{**code, "max_length": 12}])
    make_config([{**code, "max_length": 13}])
    # Bounds no answer meets: the build paid for its rounds, then failed naming no column.
    for schema, extra, message in [
        ({"type": "integer", "minimum": 5, "maximum": 1}, {}, "minimum 5 is above schema max"),
        ({"type": "string", "minLength": 50}, {"max_length": 10}, "minLength 50 is above max_len"),
        ({"type": "string", "minLength": 9, "maxLength": 3}, {}, "minLength 9 is above schema ma"),
    ]:
        with pytest.raises(ConfigError, match=rf"columns\[0\] \(s\): schema {message}"):
            make_config([{"name": "s", "type": "llm", "schema": schema, **extra}])
    with pytest.raises(ConfigError, match="does not belong in a config file"):
        make_config([{"name": "r", "type": "llm"}], provider={"api_key": "sk-123"})


def test_truncated_answers_keep_what_parsed_and_shrink_batches() -> None:
    import numpy as np
    import pyarrow as pa

    from synthaix.llm.fill import StageFiller

    column = LlmColumn(name="story", prompt="A story about {{ n }}", max_length=200)
    with simulator() as sim:
        config = ProviderConfig(
            base_url=sim.url, model="sim-small", max_tokens=300, rows_per_request=20
        )
        recorder = StatsRecorder()
        filler = StageFiller(LlmClient(config), None, [column], recorder)
        arrays, mask = filler.fill({"n": pa.array(np.arange(40))}, 40)
    assert filler.size < 20  # halved: the model's own max_tokens cannot hold 20 rows
    stories = arrays["story"].to_pylist()
    assert mask.all() and all(stories)
    # The rows never written: not returned (they were counted as malformed JSON, which the
    # cut answer was not: it repaired, and its rows before the cut were kept).
    assert recorder.stats.rejected_rows["not_returned"] > 0
    assert recorder.stats.rejected_rows["malformed_json"] == 0
    # The row being written when the answer was cut is dropped, not delivered cut mid-word
    # (the repaired JSON closes its string, and a shorter text still validates). The
    # simulator's texts end with a full stop.
    assert recorder.stats.rejected_rows["cut_off"] > 0
    assert all(story.endswith(".") for story in stories)


def test_the_row_an_answer_was_cut_in_is_dropped() -> None:
    model = row_model([LlmColumn(name="story", prompt="A story", max_length=200)], with_id=True)
    text = '{"rows": [{"id": 0, "story": "A whole story."}, {"id": 1, "story": "Cut mid-wo'
    whole = parse_answer(text, model, {0, 1}, truncated=True)
    assert [row["id"] for row in whole.rows] == [0] and whole.rejected["cut_off"] == 1
    # Without `finish_reason: length` a repaired answer keeps every row that validates.
    assert len(parse_answer(text, model, {0, 1}).rows) == 2
    complete = '{"rows": [{"id": 0, "story": "A whole story."}]}'  # cut after the last brace
    assert len(parse_answer(complete, model, {0}, truncated=True).rows) == 1


def test_translate_turns_flat_answers_into_coherent_columns_and_drops_bad_constraints() -> None:
    from synthaix.llm.translate import _repair, to_yaml

    answer = {
        "name": "orders",
        "columns": [
            {"name": "category", "type": "category", "values": ["books", "toys"]},
            {
                "name": "unit_price",
                "type": "float",
                "by": "category",
                "min": 1,
                "max": 100,
                "params": [{"value": "books", "min": 5, "max": 30, "values": None, "p": None}],
            },
            {"name": "quantity", "type": "integer", "min": 1, "max": 5},
            {"name": "total", "type": "sql", "expr": "quantity * unit_price", "as": None},
            {"name": "ordered_at", "type": "datetime", "start": "2024-01-01", "end": "2024-12-31"},
            {
                "name": "shipped_at",
                "type": "datetime",
                "after": "ordered_at",
                "offset_min": "1h",
                "offset_max": "5d",
            },
        ],
        "constraints": ["total >= quantity", "(select 1) = 1", "nope > 1"],
    }
    config, notes = _repair(answer, "orders", ProviderConfig(), 100, None)
    price, shipped = config.columns[1], config.columns[5]
    assert price.by == "category" and "books" in price.params  # type: ignore[union-attr]
    assert shipped.after == "ordered_at"  # type: ignore[union-attr]
    assert [c.check for c in config.constraints] == ["total >= quantity"]
    assert sum("constraint" in note for note in notes) == 2
    text = to_yaml(config, notes)
    assert "constraints:\n- total >= quantity" in text
    assert load_config_text(text).constraints == config.constraints


def test_translate_repairs_narrow_designs_it_cannot_make_rows_of() -> None:
    """A rating and an age make 365 distinct rows, and an id of 1..500 is no key for 1,000:
    translate failed with the validate error, no file written."""
    from synthaix.llm.translate import _repair

    def repaired(key: dict[str, Any]) -> tuple[Any, list[str]]:
        other = {"name": "note", "type": "category", "values": ["x", "y"]}
        config, notes = _repair({"columns": [key, other]}, "survey", ProviderConfig(), 1000, None)
        return config.columns[0], notes

    narrow_id = {"name": "id", "type": "integer", "min": 1, "max": 500, "primary_key": True}
    column, notes = repaired(narrow_id)
    assert notes == ["id: range widened to 1..10000"]
    assert column.max == 10_000 and column.primary_key  # type: ignore[attr-defined]
    code = {"name": "code", "type": "category", "values": ["a", "b"], "primary_key": True}
    column, notes = repaired(code)
    assert sorted(notes) == [
        "code: dropped primary_key (too few distinct values)",
        "dedupe: exact off (the columns cannot make that many distinct rows)",
    ]
    assert not column.primary_key
    narrow = {
        "columns": [
            {"name": "rating", "type": "integer", "min": 1, "max": 5},
            {"name": "age", "type": "integer", "min": 18, "max": 90},
        ]
    }
    config, notes = _repair(narrow, "survey", ProviderConfig(), 1000, None)
    assert notes == ["dedupe: exact off (the columns cannot make that many distinct rows)"]
    assert config.dedupe.exact is False


def load_config_text(text: str):
    import yaml

    from synthaix.config import parse_config

    return parse_config(yaml.safe_load(text))


def test_a_prompt_that_fails_on_the_data_names_its_column() -> None:
    """A Jinja2 error while rendering a prompt (here a division by zero; before validate
    checked sibling fields, a misspelt one) stopped the build as a bare `UndefinedError`."""
    column = LlmColumn(name="note", type="llm", prompt="{{ 10 / (age - age) }}")
    with pytest.raises(ConfigError) as caught:
        column.instruction({"age": 3})
    assert str(caught.value).startswith(
        "column 'note': prompt failed on the data: ZeroDivisionError"
    )


def test_a_cost_with_no_prices_set_is_not_shown_as_free() -> None:
    from synthaix.llm.provider import ProviderConfig
    from synthaix.llm.stats import LlmStats, StatsRecorder, spend

    def spent(**prices: float) -> LlmStats:
        recorder = StatsRecorder()
        recorder.request(900, 100, ProviderConfig(**prices).cost(900, 100))
        return recorder.stats

    unpriced = spent()
    assert spend(unpriced) == (
        "1 request, 1,000 tokens, cost not priced (set provider.price_input_per_million and "
        "..._output_...)"
    )
    from synthaix.llm.stats import EMBEDDING_PRICE

    assert spend(unpriced, EMBEDDING_PRICE).endswith("(set dedupe.price_per_million)")
    prices = {"price_input_per_million": 10.0, "price_output_per_million": 33.0}
    assert spend(spent(**prices)).endswith(", $0.0123")
    free = {"price_input_per_million": 0.0, "price_output_per_million": 0.0}
    assert spend(spent(**free)).endswith(", $0.0000")  # a local model, priced as free
    assert spend(spent(**prices) + unpriced).endswith(", $0.0123 + 1,000 tokens not priced")
    # Figures written before unpriced tokens were counted read a cost of 0 as not priced.
    legacy = {"requests": 1, "prompt_tokens": 900, "completion_tokens": 100, "cost_usd": 0.0}
    assert LlmStats.model_validate(legacy).unpriced_tokens == 1000
    assert LlmStats.model_validate({**legacy, "cost_usd": 0.5}).unpriced_tokens == 0
    # Tables and report cards say it short, and never $0.0000 for tokens spent.
    from types import SimpleNamespace

    from synthaix.llm.stats import usd
    from synthaix.report.html import cost_kpis

    assert usd(unpriced, hint=False) == "not priced" and usd(LlmStats()) == "$0.0000"
    run = SimpleNamespace(
        earlier_attempts=1, llm=unpriced, llm_total=unpriced, embeddings=unpriced, resumed_chunks=0
    )
    assert {value for _, value in cost_kpis(run)} == {"not priced"}
    sampler_only = SimpleNamespace(
        earlier_attempts=0,
        llm=LlmStats(),
        llm_total=LlmStats(),
        embeddings=LlmStats(),
        resumed_chunks=0,
    )
    assert cost_kpis(sampler_only) == []  # no "LLM cost $0.0000" card without an llm request
