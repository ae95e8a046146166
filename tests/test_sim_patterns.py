"""The simulator honours string `pattern`s over real HTTP, with the real openai client: its
answers pass the client's own validation, in every structured-output mode; faults still spoil
them; a pattern it cannot write is refused with a 400; and a build of an llm column with a
pattern delivers every row at the first request, no row rejected."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import openai
import pyarrow.parquet as pq
import pytest
from llm_helpers import provider, simulator

from conftest import make_config
from synthaix.build.engine import Build
from synthaix.build.executor import ThreadExecutor
from synthaix.columns.llm import LlmColumn
from synthaix.llm.parse import parse_answer, row_model
from synthaix.llm.prompts import render, rows_schema
from synthaix.sim.faults import FaultRates

ROWS = 12
COLUMNS = [
    LlmColumn(name="icd", prompt="An ICD-10 code", pattern="[A-Z][0-9]{2}"),
    LlmColumn(name="order_no", pattern=r"^ORD-\d{5}$"),  # anchors, as JSON Schema users write
    LlmColumn(name="tag", pattern="[a-z]{2,12}", max_length=4),  # maxLength cuts its lengths
    LlmColumn(name="ref", pattern=r"\w{3}\.[A-F0-9]{1,2}-?\$"),  # an escaped $ is no anchor
    LlmColumn.model_validate(
        {
            "name": "codes",
            "type": "llm",
            "schema": {"type": "array", "items": {"pattern": "\\d{3}"}},
        }
    ),
]
WHOLE = {  # what each value must match whole (the anchors dropped)
    "icd": "[A-Z][0-9]{2}",
    "order_no": r"ORD-\d{5}",
    "tag": "[a-z]{2,4}",
    "ref": r"\w{3}\.[A-F0-9]{1,2}-?\$",
}


def _ask(url: str, mode: str, columns: list[LlmColumn] = COLUMNS) -> str:
    """One request for ROWS rows as the client sends it in `mode`; the answer's JSON text."""
    client = openai.OpenAI(base_url=url, api_key="sim", max_retries=0)
    messages = render(None, columns, None, ROWS, schema_in_prompt=mode == "json_object")
    schema = rows_schema(columns, ROWS, with_ids=False)
    if mode == "json_schema":
        spec = {"name": "rows", "schema": schema, "strict": True}
        options: dict[str, Any] = {"response_format": {"type": "json_schema", "json_schema": spec}}
    elif mode == "tools":
        tool = {"type": "function", "function": {"name": "emit_rows", "parameters": schema}}
        options = {
            "tools": [tool],
            "tool_choice": {"type": "function", "function": {"name": "emit_rows"}},
        }
    else:
        options = {"response_format": {"type": "json_object"}}
    answer = client.chat.completions.create(model="sim-small", messages=messages, **options)
    message = answer.choices[0].message
    return message.tool_calls[0].function.arguments if message.tool_calls else message.content


@pytest.mark.parametrize("mode", ["json_schema", "tools", "json_object"])
def test_answers_match_the_patterns_of_the_schema(mode: str) -> None:
    with simulator(seed=11) as sim:
        text = _ask(sim.url, mode)

    parsed = parse_answer(text, row_model(COLUMNS, with_id=False), None)
    assert not parsed.rejected and len(parsed.rows) == ROWS
    for row in parsed.rows:
        for name, whole in WHOLE.items():
            assert re.fullmatch(whole, row[name]), (name, row[name])
        assert row["codes"] and all(re.fullmatch(r"\d{3}", code) for code in row["codes"])
    assert len({row["icd"] for row in parsed.rows}) > 1  # drawn, not one fixed value


def test_same_seed_same_answer_and_faults_still_spoil_patterned_rows() -> None:
    answers = []
    for _ in range(2):
        with simulator(seed=5) as sim:
            answers.append(_ask(sim.url, "json_schema", COLUMNS[:1]))
    assert answers[0] == answers[1]

    with simulator(FaultRates(wrong_types=1.0), seed=5) as sim:
        rows = json.loads(_ask(sim.url, "json_schema", COLUMNS[:1]))["rows"]
    spoiled = [row for row in rows if not isinstance(row["icd"], str)]
    assert len(spoiled) == 1  # the fault's one wrong type; every other value still matches
    assert all(re.fullmatch("[A-Z][0-9]{2}", row["icd"]) for row in rows if row not in spoiled)


@pytest.mark.parametrize(
    ("pattern", "max_length", "why"),
    [
        (r"^\d+$", None, "unbounded repeats"),
        ("(A|B)[0-9]", None, "groups and alternation"),
        ("^$", None, ""),
        ("[A-Z]{5}", 4, "(5 to 5 characters) in 1 to 4 characters"),
    ],
)
def test_a_pattern_the_simulator_cannot_write_is_refused_at_once(
    pattern: str, max_length: int | None, why: str
) -> None:
    # Built unchecked: a config refuses a pattern longer than max_length itself; the
    # simulator must too, for any client's schema.
    column = LlmColumn.model_construct(name="code", pattern=pattern, max_length=max_length)
    with simulator(seed=1) as sim:
        with pytest.raises(openai.BadRequestError) as refused:
            _ask(sim.url, "json_schema", [column])
        counts = sim.state.stats()["counts"]
    message = refused.value.body["message"]  # type: ignore[index]
    assert f"cannot write text matching '{pattern}'" in message and why in message
    assert counts == {"requests": 1, "400": 1}


@pytest.mark.parametrize(
    ("schema", "why"),
    [
        ({"type": "integer", "minimum": 5, "maximum": 1}, "minimum 5 and maximum 1"),
        ({"type": "string", "minLength": 9, "maxLength": 3}, "minLength 9 and maxLength 3"),
    ],
)
def test_bounds_no_value_meets_are_refused_not_a_dropped_connection(
    schema: dict[str, Any], why: str
) -> None:
    """The simulator crashed on them (empty range for randrange) and dropped the connection."""
    column = LlmColumn.model_construct(name="n", value_schema=schema)  # a config refuses them
    with simulator(seed=1) as sim, pytest.raises(openai.BadRequestError) as refused:
        _ask(sim.url, "json_schema", [column])
    assert f"no value meets {why}" in refused.value.body["message"]  # type: ignore[index]


def test_a_refused_schema_is_not_called_a_long_context() -> None:
    """The client's hint for a 400 said to shorten the context whatever the refusal was."""
    from synthaix.errors import ProviderError
    from synthaix.llm.client import LlmClient
    from synthaix.llm.provider import ProviderConfig
    from synthaix.llm.stats import StatsRecorder

    column = LlmColumn(name="code", pattern=r"^\d+$")
    messages = render(None, [column], None, 1, schema_in_prompt=False)
    with simulator(seed=1) as sim:
        client = LlmClient(ProviderConfig(base_url=sim.url, model="sim-small"))
        with pytest.raises(ProviderError, match="HTTP 400") as refused:
            client.complete(
                messages, rows_schema([column], 1, with_ids=False), 200, StatsRecorder()
            )
    assert refused.value.hint is not None
    assert "schema" in refused.value.hint and "rows_per_request" not in refused.value.hint


def test_build_of_a_patterned_llm_column_delivers_every_row_unrejected(tmp_path: Path) -> None:
    icd = r"[A-Z][0-9]{2}\.[0-9]{1,2}"
    columns = [
        {"name": "id", "type": "sequence"},
        {"name": "icd", "type": "llm", "prompt": "An ICD-10 code", "pattern": icd},
        {"name": "ward", "type": "llm", "prompt": "A ward", "pattern": "^W[0-9]{2}$"},
    ]
    with simulator(seed=2) as sim:
        config = make_config(
            columns,
            rows=40,
            chunk_size=20,
            provider=provider(sim.url, rows_per_request=20),
            output={"dir": str(tmp_path / "out")},
            # Codes repeat by design (a ward is one of 100): no dedupe to drop rows for them.
            dedupe={"exact": False, "near": False},
        )
        manifest = Build(config, ThreadExecutor(config)).run()
        answered = sim.state.stats()["counts"]["200"]

    assert manifest.rows.delivered == 40 and manifest.dropped.total == 0
    assert not +manifest.llm.rejected_rows and not +manifest.llm.retries
    assert manifest.llm.requests == answered == 2  # one request per chunk, none re-asked
    data = pq.read_table(tmp_path / "out" / "data").to_pylist()
    assert len(data) == 40
    assert all(re.fullmatch(icd, row["icd"]) for row in data)
    assert all(re.fullmatch("W[0-9]{2}", row["ward"]) for row in data)
