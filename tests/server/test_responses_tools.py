"""Function tools on /v1/responses with the real ``openai`` SDK (fake engine): calls come
back as function_call items (whole and streamed), their outputs go back as input, and
tool_choice and bad tools behave as on chat completions."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import LiveServer
from tests.server.test_tools import CONFIG

TOOLS: list[Any] = [
    {
        "type": "function",
        "name": "get_weather",
        "description": "Weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
    {"type": "function", "name": "get_time", "parameters": {"type": "object", "properties": {}}},
]


@pytest.fixture
def live(server_factory: Callable[..., LiveServer]) -> LiveServer:
    return server_factory(CONFIG, served=["caller", "parallel", "plain"])


@pytest.fixture
def client(live: LiveServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=live.base_url, api_key="none", max_retries=0)


def test_call_output_and_answer(client: openai.OpenAI) -> None:
    r = client.responses.create(model="caller", input="北京天气？", tools=TOOLS)
    assert r.status == "completed"
    (call,) = [o for o in r.output if o.type == "function_call"]
    assert call.name == "get_weather" and json.loads(call.arguments) == {"city": "北京"}
    assert call.call_id.startswith("call_") and call.id.startswith("fc_")
    assert not [o for o in r.output if o.type == "message"]
    assert [t.name for t in r.tools] == ["get_weather", "get_time"]  # type: ignore[union-attr]
    # The call and its output go back as input; the next answer is a message.
    again = client.responses.create(
        model="plain",
        input=[
            {"role": "user", "content": "北京天气？"},
            call.model_dump(exclude_none=True),
            {"type": "function_call_output", "call_id": call.call_id, "output": "晴 25°C"},
        ],
        tools=TOOLS,
    )
    assert again.output_text == "晴天，25 度。"


def test_parallel_calls_stream_as_items(client: openai.OpenAI) -> None:
    events = list(client.responses.create(model="parallel", input="hi", tools=TOOLS, stream=True))
    types = [e.type for e in events]
    assert types[0] == "response.created" and types[-1] == "response.completed"
    added = [e.item for e in events if e.type == "response.output_item.added"]  # type: ignore[union-attr]
    assert [a.type for a in added] == ["message", "function_call", "function_call"]
    args: dict[int, str] = {}
    for e in events:
        if e.type == "response.function_call_arguments.delta":
            args[e.output_index] = args.get(e.output_index, "") + e.delta
    assert json.loads(args[1]) == {"city": "Paris"} and json.loads(args[2] or "{}") == {}
    done = {
        e.output_index: e.arguments
        for e in events
        if e.type == "response.function_call_arguments.done"
    }
    assert json.loads(done[1]) == {"city": "Paris"} and json.loads(done[2]) == {}
    final = events[-1].response  # type: ignore[union-attr]
    assert [o.type for o in final.output] == ["message", "function_call", "function_call"]
    assert "tool_call" not in final.output_text and "Checking" in final.output_text
    texts = "".join(e.delta for e in events if e.type == "response.output_text.delta")  # type: ignore[union-attr]
    assert "get_weather" not in texts


def test_tool_choice_named_required_and_none(client: openai.OpenAI) -> None:
    r = client.responses.create(
        model="plain", input="hi", tools=TOOLS, tool_choice={"type": "function", "name": "get_time"}
    )
    (call,) = r.output
    assert call.type == "function_call" and call.name == "get_time" and call.arguments == "{}"
    assert r.tool_choice.name == "get_time"  # type: ignore[union-attr]
    r = client.responses.create(model="caller", input="hi", tools=TOOLS, tool_choice="none")
    assert [o.type for o in r.output] == ["message"]
    r = client.responses.create(
        model="parallel", input="hi", tools=TOOLS, parallel_tool_calls=False
    )
    assert [o.name for o in r.output if o.type == "function_call"] == ["get_weather"]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"tools": [{"type": "function", "name": "bad name"}]}, "tools.0.name"),
        ({"tools": [{"type": "function", "name": "f", "parameters": {"type": 5}}]}, None),
        ({"tool_choice": "required"}, None),
        ({"tools": TOOLS, "tool_choice": {"type": "function", "name": "nope"}}, None),
        (
            {
                "input": [
                    {"role": "user", "content": "hi"},
                    {"type": "function_call_output", "call_id": "c9", "output": "x"},
                ]
            },
            "input.1.role",
        ),
        (
            {
                "input": [
                    {"role": "user", "content": "hi"},
                    {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "[1]"},
                ]
            },
            None,
        ),
        (
            {
                "previous_response_id": "resp_x",
                "input": [
                    {"role": "user", "content": "hi"},
                    {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
                    {"type": "function_call_output", "call_id": "c1", "output": "x"},
                ],
            },
            "input",
        ),
    ],
)
def test_bad_tool_requests_are_400(live: LiveServer, body: dict[str, Any], param: str) -> None:
    resp = httpx.post(live.base_url + "/responses", json={"model": "caller", "input": "hi", **body})
    assert resp.status_code == 400, resp.text
    err = resp.json()["error"]
    assert err["message"]
    if param:
        assert err["param"] == param
