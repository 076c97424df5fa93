"""Function calling with the real ``openai`` SDK on the fake engine: a call in the model's
text becomes ``tool_calls`` (whole and streamed), ``tool_choice`` none/required/named, and
bad tool requests are a 400."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import openai
import pytest

from tests.conftest import LiveServer

CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "北京"}}\n</tool_call>'
TWO = (
    'Checking.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n'
    '</tool_call>\n<tool_call>\n{"name": "get_time", "arguments": {}}\n</tool_call>'
)
CONFIG = f"""
[models.caller]
engine = "fake"
script = [{json.dumps(CALL)}]

[models.parallel]
engine = "fake"
script = [{json.dumps(TWO)}]

[models.plain]
engine = "fake"
script = ["晴天，25 度。"]
"""

TOOLS: list[Any] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather in a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    },
    {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}},
]
ASK: list[Any] = [{"role": "user", "content": "北京天气？"}]


@pytest.fixture
def client(server_factory: Callable[..., LiveServer]) -> openai.OpenAI:
    live = server_factory(CONFIG, served=["caller", "parallel", "plain"])
    return openai.OpenAI(base_url=live.base_url, api_key="none", max_retries=0)


def test_a_call_in_the_text_becomes_tool_calls(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(model="caller", messages=ASK, tools=TOOLS)
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    (call,) = choice.message.tool_calls or []
    assert call.type == "function" and call.id.startswith("call_")
    assert call.function.name == "get_weather"  # type: ignore[union-attr]
    assert json.loads(call.function.arguments) == {"city": "北京"}  # type: ignore[union-attr]
    # The answer goes back with the result, and the model's next reply is plain content.
    follow = [
        *ASK,
        choice.message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "晴 25°C"},
    ]
    again = client.chat.completions.create(model="plain", messages=follow, tools=TOOLS)
    assert again.choices[0].finish_reason == "stop"
    assert again.choices[0].message.content == "晴天，25 度。"


def test_parallel_calls_whole_and_streamed(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(model="parallel", messages=ASK, tools=TOOLS)
    message = r.choices[0].message
    assert message.content == "Checking."
    names = [c.function.name for c in message.tool_calls or []]  # type: ignore[union-attr]
    assert names == ["get_weather", "get_time"]
    single = client.chat.completions.create(
        model="parallel", messages=ASK, tools=TOOLS, parallel_tool_calls=False
    )
    assert len(single.choices[0].message.tool_calls or []) == 1

    content, calls, finish = "", {}, None
    pieces: dict[int, int] = {}
    for chunk in client.chat.completions.create(
        model="parallel", messages=ASK, tools=TOOLS, stream=True
    ):
        if not chunk.choices:
            continue
        delta = chunk.choices[0].delta
        content += delta.content or ""
        for d in delta.tool_calls or []:
            entry = calls.setdefault(d.index, {"id": d.id, "name": "", "arguments": ""})
            assert d.id is None or entry["id"] == d.id
            entry["name"] += (d.function.name or "") if d.function else ""
            entry["arguments"] += (d.function.arguments or "") if d.function else ""
            pieces[d.index] = pieces.get(d.index, 0) + 1
        finish = chunk.choices[0].finish_reason or finish
    assert finish == "tool_calls"
    assert content.strip() == "Checking." and "tool_call" not in content
    assert [c["name"] for _, c in sorted(calls.items())] == ["get_weather", "get_time"]
    assert json.loads(calls[0]["arguments"]) == {"city": "Paris"}
    assert json.loads(calls[1]["arguments"]) == {}
    assert all(c["id"] and c["id"].startswith("call_") for c in calls.values())
    assert pieces[0] > 2  # name first, then the arguments in pieces


def test_tool_choice_none_required_and_named(client: openai.OpenAI) -> None:
    none = client.chat.completions.create(
        model="caller", messages=ASK, tools=TOOLS, tool_choice="none"
    )
    assert none.choices[0].message.tool_calls is None
    assert "get_weather" in (none.choices[0].message.content or "")
    plain = client.chat.completions.create(model="plain", messages=ASK, tools=TOOLS)
    assert plain.choices[0].message.tool_calls is None
    required = client.chat.completions.create(
        model="plain", messages=ASK, tools=TOOLS, tool_choice="required"
    )
    assert required.choices[0].finish_reason == "tool_calls"
    named = client.chat.completions.create(
        model="plain",
        messages=ASK,
        tools=TOOLS,
        tool_choice={"type": "function", "function": {"name": "get_time"}},
    )
    (call,) = named.choices[0].message.tool_calls or []
    assert call.function.name == "get_time"  # type: ignore[union-attr]
    assert call.function.arguments == "{}"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "extra",
    [
        {"tools": [TOOLS[0], TOOLS[0]]},
        {"tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "nope"}}},
        {"tool_choice": "required"},
        {"tools": [{"type": "function", "function": {"name": "bad name!"}}]},
        {"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": 3}}}]},
        {"tools": [{"type": "retrieval"}]},
    ],
)
def test_bad_tool_requests_are_a_400(client: openai.OpenAI, extra: dict[str, Any]) -> None:
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="caller", messages=ASK, **extra)
