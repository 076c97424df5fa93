"""Function calling through a remote model: tools, tool_choice and tool history pass to
the upstream (another hearth, fake engine, over real HTTP) and its ``tool_calls`` come back
whole and streamed."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import openai
import pytest

from hearth.engines.openai_chunks import deltas, tool_call_deltas
from tests.conftest import LiveServer
from tests.server.test_tools import ASK, CONFIG, TOOLS


@pytest.fixture
def client(server_factory: Callable[..., LiveServer]) -> openai.OpenAI:
    upstream = server_factory(CONFIG, served=["caller", "parallel", "plain"])
    config = "".join(
        f'\n[models.far-{name}]\nengine = "remote"\nurl = "{upstream.base_url}"\n'
        f'upstream_model = "{name}"\n'
        for name in ("caller", "parallel", "plain")
    )
    live = server_factory(config, served=["far-caller", "far-parallel", "far-plain"])
    return openai.OpenAI(base_url=live.base_url, api_key="none", max_retries=0)


def test_upstream_tool_calls_come_back_whole(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(model="far-caller", messages=ASK, tools=TOOLS)
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls or []
    assert call.function.name == "get_weather"  # type: ignore[union-attr]
    assert json.loads(call.function.arguments) == {"city": "北京"}  # type: ignore[union-attr]
    # The result goes back through the remote model: history with tool messages passes.
    follow = [
        *ASK,
        choice.message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "晴 25°C"},
    ]
    again = client.chat.completions.create(model="far-plain", messages=follow, tools=TOOLS)
    assert again.choices[0].message.content == "晴天，25 度。"
    assert again.choices[0].finish_reason == "stop"


def test_upstream_parallel_calls_stream_in_pieces(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="far-parallel", messages=ASK, tools=TOOLS, stream=True
    )
    calls: dict[int, dict[str, Any]] = {}
    content, finish = "", None
    for chunk in stream:
        if not chunk.choices:
            continue
        c = chunk.choices[0]
        content += c.delta.content or ""
        finish = c.finish_reason or finish
        for piece in c.delta.tool_calls or []:
            entry = calls.setdefault(piece.index, {"id": None, "name": None, "args": ""})
            entry["id"] = piece.id or entry["id"]
            assert piece.function is not None
            entry["name"] = piece.function.name or entry["name"]
            entry["args"] += piece.function.arguments or ""
    assert finish == "tool_calls"
    assert "tool_call" not in content
    assert [calls[i]["name"] for i in sorted(calls)] == ["get_weather", "get_time"]
    assert json.loads(calls[0]["args"]) == {"city": "Paris"}
    assert json.loads(calls[1]["args"]) == {}
    assert len({c["id"] for c in calls.values()}) == 2


def test_tool_choice_reaches_the_upstream(client: openai.OpenAI) -> None:
    # The plain upstream has no call in its text: a named choice makes it call anyway.
    r = client.chat.completions.create(
        model="far-plain",
        messages=ASK,
        tools=TOOLS,
        tool_choice={"type": "function", "function": {"name": "get_time"}},
    )
    (call,) = r.choices[0].message.tool_calls or []
    assert call.function.name == "get_time"  # type: ignore[union-attr]
    assert call.function.arguments == "{}"  # type: ignore[union-attr]
    # "none": the upstream does not parse, so the call text stays content.
    r = client.chat.completions.create(
        model="far-caller", messages=ASK, tools=TOOLS, tool_choice="none"
    )
    assert r.choices[0].message.tool_calls is None
    assert "get_weather" in (r.choices[0].message.content or "")
    # parallel_tool_calls=false: the upstream keeps the first call only.
    r = client.chat.completions.create(
        model="far-parallel", messages=ASK, tools=TOOLS, parallel_tool_calls=False
    )
    assert [c.function.name for c in r.choices[0].message.tool_calls or []] == [  # type: ignore[union-attr]
        "get_weather"
    ]


def test_models_say_how_they_call_tools(client: openai.OpenAI) -> None:
    models = httpx.get(str(client.base_url) + "models").json()["data"]
    tools = {m["id"]: m.get("tools") for m in models}
    assert tools["far-caller"] == "upstream"


def test_chunk_pieces_and_object_arguments() -> None:
    # Some servers send arguments as an object; it becomes JSON text.
    (piece,) = tool_call_deltas(
        [{"index": 0, "id": "c1", "function": {"name": "f", "arguments": {"a": 1}}}]
    )
    assert (piece.id, piece.name, json.loads(piece.arguments)) == ("c1", "f", {"a": 1})
    assert tool_call_deltas(None) == [] and tool_call_deltas("junk") == []
    chunk = {
        "choices": [
            {
                "index": 0,
                "delta": {
                    "tool_calls": [
                        {"index": 0, "function": {"arguments": '{"a"'}},
                        {"index": 1, "id": "c2", "function": {"name": "g", "arguments": ""}},
                    ]
                },
                "finish_reason": "tool_calls",
            }
        ]
    }
    out = deltas(chunk)
    assert [d.tool_call.index for d in out if d.tool_call] == [0, 1]
    assert [d.finish_reason for d in out] == [None, "tool_calls"]
