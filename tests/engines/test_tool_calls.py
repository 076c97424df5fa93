"""Tool calls parsed out of model text in the shapes local models write them, whole and
streamed in arbitrary pieces; ordinary answers (JSON or code included) stay content."""

from __future__ import annotations

import json
import random

import jsonschema
import pytest

from hearth.engines.tool_calls import ToolStream, argument_pieces, call_schema, parse
from hearth.types import ChatRequest, ToolSpec

TOOLS = {"get_weather", "get_time", "ping"}

CALLS = [
    # Qwen 2.5 / Hermes
    (
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "北京"}}\n</tool_call>',
        [("get_weather", {"city": "北京"})],
        "",
    ),
    # parallel calls, and text before them
    (
        "Let me check.\n<tool_call>\n"
        '{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>\n'
        '<tool_call>\n{"name": "get_time", "arguments": {"tz": "CET"}}\n</tool_call>',
        [("get_weather", {"city": "Paris"}), ("get_time", {"tz": "CET"})],
        "Let me check.",
    ),
    # the closing tag never came (the stream stopped at the stop token)
    ('<tool_call>\n{"name": "ping", "arguments": {}}', [("ping", {})], ""),
    # a fenced block, as the bundled Qwen coder model answers
    (
        '```json\n{"name": "get_weather", "arguments": {"city": "上海", "unit": "c"}}\n```',
        [("get_weather", {"city": "上海", "unit": "c"})],
        "",
    ),
    # bare JSON, Llama 3's "parameters", arguments as a JSON string, a list of calls
    ('{"name": "get_time", "parameters": {"tz": "UTC"}}', [("get_time", {"tz": "UTC"})], ""),
    ('{"name": "ping", "arguments": "{}"}', [("ping", {})], ""),
    (
        '[{"name": "ping"}, {"name": "get_time", "arguments": {"tz": "JST"}}]',
        [("ping", {}), ("get_time", {"tz": "JST"})],
        "",
    ),
    # OpenAI's own shape, and objects one per line
    (
        '{"type": "function", "function": {"name": "ping", "arguments": "{\\"n\\": 1}"}}',
        [("ping", {"n": 1})],
        "",
    ),
    (
        '{"name": "ping", "arguments": {}}\n{"name": "get_time", "arguments": {"tz": "X"}}',
        [("ping", {}), ("get_time", {"tz": "X"})],
        "",
    ),
    ('<|python_tag|>{"name": "ping", "parameters": {}}', [("ping", {})], ""),
    (
        '[TOOL_CALLS] [{"name": "get_time", "arguments": {"tz": "Z"}}]',
        [("get_time", {"tz": "Z"})],
        "",
    ),
]

CONTENT = [
    "北京今天晴，25°C。",
    '{"answer": 42}',  # JSON, but not a call
    '{"name": "unknown_tool", "arguments": {}}',  # a function nobody declared
    "```python\nprint('hello')\n```\nThat prints hello.",
    '```json\n{"city": "Paris"}\n```',
    "Use `<tool_call>` tags? No.",
    '<tool_call>\n{"name": "get_weather", "arguments": [1, 2]}\n</tool_call>',  # bad arguments
]


@pytest.mark.parametrize(("text", "want", "rest"), CALLS)
def test_calls_are_found(text: str, want: list, rest: str) -> None:
    content, calls = parse(text, TOOLS)
    assert [(c.name, json.loads(c.arguments)) for c in calls] == want
    assert content == rest
    assert all(c.id.startswith("call_") for c in calls)
    assert len({c.id for c in calls}) == len(calls)


@pytest.mark.parametrize("text", CONTENT)
def test_ordinary_answers_stay_content(text: str) -> None:
    assert parse(text, TOOLS) == (text, [])


def test_no_tools_no_calls() -> None:
    text = '{"name": "ping", "arguments": {}}'
    assert parse(text, set()) == (text, [])


def pieces(text: str, seed: int) -> list[str]:
    rnd = random.Random(seed)
    out, at = [], 0
    while at < len(text):
        n = rnd.randint(1, 7)
        out.append(text[at : at + n])
        at += n
    return out


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize(("text", "want", "rest"), CALLS)
def test_streamed_calls_never_leak_into_content(
    text: str, want: list, rest: str, seed: int
) -> None:
    stream = ToolStream(TOOLS)
    shown = "".join(stream.feed(p) for p in pieces(text, seed))
    tail, calls = stream.finish()
    assert [(c.name, json.loads(c.arguments)) for c in calls] == want
    assert (shown + tail).strip() == rest
    assert "tool_call" not in shown and '"name"' not in shown


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("text", CONTENT)
def test_streamed_content_comes_through_whole(text: str, seed: int) -> None:
    stream = ToolStream(TOOLS)
    shown = "".join(stream.feed(p) for p in pieces(text, seed))
    tail, calls = stream.finish()
    assert calls == [] and shown + tail == text


def test_code_in_another_language_streams_before_the_end() -> None:
    stream = ToolStream(TOOLS)
    shown = stream.feed("Here:\n```python\nfor i in range(3):\n")
    assert "for i in range(3)" in shown


def test_argument_pieces_join_back() -> None:
    args = json.dumps({"city": "北京", "days": [1, 2, 3]}, ensure_ascii=False)
    parts = argument_pieces(args, 5)
    assert len(parts) > 1 and "".join(parts) == args
    assert argument_pieces("") == [""]


def test_call_schema_only_for_required_and_named() -> None:
    weather = ToolSpec("get_weather", "", {"type": "object", "properties": {"city": {}}})
    ping = ToolSpec("ping")
    assert call_schema(ChatRequest([], tools=(weather, ping))) is None  # auto may answer text
    both = call_schema(ChatRequest([], tools=(weather, ping), tool_choice="required"))
    assert both is not None and len(both["anyOf"]) == 2
    named = call_schema(
        ChatRequest([], tools=(weather, ping), tool_choice="required", tool_name="ping")
    )
    assert named is not None and named["properties"]["name"] == {"const": "ping"}
    # A function without parameters takes none: its arguments can only be {}.
    validator = jsonschema.Draft202012Validator(named)
    assert validator.is_valid({"name": "ping", "arguments": {}})
    assert not validator.is_valid({"name": "ping", "arguments": {"type": "object"}})
    # Declared parameters are the arguments' schema as given.
    assert both["anyOf"][0]["properties"]["arguments"] == weather.parameters
