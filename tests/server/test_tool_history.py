"""A history with tool calls and their results, as the ``openai`` SDK sends it after running
a tool: taken and rendered by the model's template; broken call/result pairs are a 400."""

from __future__ import annotations

from typing import Any

import openai
import pytest

from tests.conftest import LiveServer

WEATHER = {
    "id": "call_1",
    "type": "function",
    "function": {"name": "get_weather", "arguments": '{"city": "北京"}'},
}
TIME = {"id": "call_2", "type": "function", "function": {"name": "get_time", "arguments": ""}}


def history(*tail: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {"role": "user", "content": "北京天气和时间？"},
        {"role": "assistant", "content": None, "tool_calls": [WEATHER, TIME]},
        *tail,
    ]


@pytest.fixture(scope="module")
def client(fake_server: LiveServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=fake_server.base_url, api_key="none", max_retries=0)


def test_tool_results_answer_their_calls(client: openai.OpenAI) -> None:
    messages = history(
        {"role": "tool", "tool_call_id": "call_2", "content": "09:00"},
        {"role": "tool", "tool_call_id": "call_1", "content": "晴 25°C"},
    )
    r = client.chat.completions.create(model="fake", messages=messages)  # type: ignore[arg-type]
    assert r.choices[0].message.content
    counted = client.post(
        "/tokens/count", body={"model": "fake", "messages": messages}, cast_to=dict[str, Any]
    )
    without = client.post(
        "/tokens/count", body={"model": "fake", "messages": messages[:1]}, cast_to=dict[str, Any]
    )
    # The calls and their results are part of the prompt, not dropped on the way.
    assert counted["count"] > without["count"] + 10  # type: ignore[index]


@pytest.mark.parametrize(
    ("messages", "param"),
    [
        (
            history({"role": "tool", "tool_call_id": "call_9", "content": "x"}),
            "messages.2.tool_call_id",
        ),
        (
            history(
                {"role": "tool", "tool_call_id": "call_1", "content": "x"},
                {"role": "tool", "tool_call_id": "call_1", "content": "again"},
            ),
            "messages.3.tool_call_id",
        ),
        (
            history(
                {"role": "tool", "tool_call_id": "call_1", "content": "x"},
                {"role": "assistant", "content": "ok"},
                {"role": "tool", "tool_call_id": "call_2", "content": "late"},
            ),
            "messages.4.role",
        ),
        (
            [
                {"role": "user", "content": "hi"},
                {
                    "role": "assistant",
                    "tool_calls": [{**WEATHER, "function": {"name": "f", "arguments": "[1]"}}],
                },
                {"role": "tool", "tool_call_id": "call_1", "content": "x"},
            ],
            "messages.1.tool_calls.0.function.arguments",
        ),
        (
            [
                {"role": "user", "content": "hi"},
                {"role": "assistant", "tool_calls": [WEATHER, WEATHER]},
                {"role": "tool", "tool_call_id": "call_1", "content": "x"},
            ],
            "messages.1.tool_calls",
        ),
        (
            [{"role": "user", "content": "hi", "tool_calls": [WEATHER]}],
            "messages.0.tool_calls",
        ),
    ],
)
def test_broken_pairs_are_a_400(client: openai.OpenAI, messages: list, param: str) -> None:
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="fake", messages=messages)
    assert e.value.body["param"] == param  # type: ignore[index]


def test_tool_messages_are_not_stored_in_a_conversation_yet(client: openai.OpenAI) -> None:
    conv = client.conversations.create()
    messages = history({"role": "tool", "tool_call_id": "call_1", "content": "x"})
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(
            model="fake",
            messages=messages,  # type: ignore[arg-type]
            extra_body={"conversation": conv.id},
        )
    assert e.value.body["code"] == "unsupported_parameter"  # type: ignore[index]
