"""Function calling on the bundled Qwen model through the real server and ``openai`` SDK:
the fenced JSON it writes becomes ``tool_calls``; required and named calls are constrained
by a grammar, so their arguments validate against the function's parameters."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import jsonschema
import openai
import pytest

from tests.conftest import make_settings, serve

pytestmark = pytest.mark.slow

QWEN = "qwen2.5-0.5b-instruct"
WEATHER = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "unit": {"enum": ["c", "f"]}},
    "required": ["city"],
}
TOOLS: list[Any] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather in a city",
            "parameters": WEATHER,
        },
    },
    {
        "type": "function",
        "function": {
            "name": "get_time",
            "description": "Current time in a time zone",
            "parameters": {"type": "object", "properties": {"tz": {"type": "string"}}},
        },
    },
]
ASK: list[Any] = [{"role": "user", "content": "What's the weather in Paris?"}]


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[openai.OpenAI]:
    home = tmp_path_factory.mktemp("tools-home")
    with serve(make_settings(home, "").with_served([QWEN]), preload=[QWEN]) as live:
        yield openai.OpenAI(base_url=live.base_url, api_key="unused", max_retries=0)


def test_auto_call_is_parsed_from_the_models_text(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(
        model=QWEN, messages=ASK, tools=TOOLS, temperature=0, max_tokens=80
    )
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls", choice.message.content
    (call,) = choice.message.tool_calls or []
    assert call.function.name == "get_weather"  # type: ignore[union-attr]
    assert json.loads(call.function.arguments)["city"] == "Paris"  # type: ignore[union-attr]
    assert not (choice.message.content or "").strip().startswith("```")


def test_streamed_call_joins_into_valid_json(client: openai.OpenAI) -> None:
    content, name, args = "", "", ""
    for chunk in client.chat.completions.create(
        model=QWEN, messages=ASK, tools=TOOLS, temperature=0, max_tokens=80, stream=True
    ):
        if not chunk.choices:
            continue
        delta = chunk.choices[0].delta
        content += delta.content or ""
        for d in delta.tool_calls or []:
            name += (d.function.name or "") if d.function else ""
            args += (d.function.arguments or "") if d.function else ""
    assert name == "get_weather" and json.loads(args)["city"] == "Paris"
    assert "get_weather" not in content


@pytest.mark.parametrize(
    "choice",
    ["required", {"type": "function", "function": {"name": "get_time"}}],
)
def test_required_and_named_calls_are_valid(client: openai.OpenAI, choice: Any) -> None:
    r = client.chat.completions.create(
        model=QWEN,
        messages=[{"role": "user", "content": "你好，请介绍一下你自己。"}],
        tools=TOOLS,
        tool_choice=choice,
        temperature=0,
        max_tokens=80,
    )
    assert r.choices[0].finish_reason == "tool_calls"
    (call,) = r.choices[0].message.tool_calls or []
    fn = call.function  # type: ignore[union-attr]
    if isinstance(choice, dict):
        assert fn.name == "get_time"
    schema = next(t["function"]["parameters"] for t in TOOLS if t["function"]["name"] == fn.name)
    jsonschema.validate(json.loads(fn.arguments), schema)


def test_a_function_without_arguments_gets_an_empty_object(client: openai.OpenAI) -> None:
    ping = {"type": "function", "function": {"name": "ping", "description": "Check the server"}}
    r = client.chat.completions.create(
        model=QWEN,
        messages=[{"role": "user", "content": "Is the server up?"}],
        tools=[ping],
        tool_choice="required",
        temperature=0,
        max_tokens=40,
    )
    (call,) = r.choices[0].message.tool_calls or []
    assert call.function.name == "ping"  # type: ignore[union-attr]
    assert call.function.arguments == "{}"  # type: ignore[union-attr]


def test_responses_function_call(client: openai.OpenAI) -> None:
    tool = {"type": "function", "name": "get_weather", "parameters": WEATHER}
    r = client.responses.create(
        model=QWEN,
        input="What's the weather in Paris?",
        tools=[tool],  # type: ignore[list-item]
        tool_choice="required",
        temperature=0,
        max_output_tokens=60,
    )
    (call,) = [o for o in r.output if o.type == "function_call"]
    assert call.name == "get_weather"
    args = json.loads(call.arguments)
    jsonschema.validate(args, WEATHER)
    assert "paris" in args["city"].lower()


def test_langchain_bind_tools_on_qwen(client: openai.OpenAI) -> None:
    from langchain_core.tools import tool
    from langchain_openai import ChatOpenAI

    @tool
    def get_weather(city: str) -> str:
        """Current weather in a city."""
        return f"{city}: sunny, 21°C"

    llm = ChatOpenAI(
        base_url=str(client.base_url), api_key="unused", model=QWEN, temperature=0, max_tokens=80
    )
    reply = llm.bind_tools([get_weather]).invoke("What's the weather in Paris?")
    (call,) = reply.tool_calls
    assert call["name"] == "get_weather" and "paris" in call["args"]["city"].lower()
    # The result goes back as a ToolMessage, which the template renders into the prompt
    # (what a 0.5B model makes of it varies; that it is accepted and seen does not).
    final = llm.bind_tools([get_weather]).invoke(
        ["What's the weather in Paris?", reply, get_weather.invoke(call)]
    )
    assert final.usage_metadata and reply.usage_metadata
    grown = final.usage_metadata["input_tokens"] - reply.usage_metadata["input_tokens"]
    assert grown >= reply.usage_metadata["output_tokens"]


@pytest.mark.parametrize("mode", ["TOOLS", "JSON_SCHEMA", "MD_JSON"])
def test_instructor_modes_on_qwen(client: openai.OpenAI, mode: str) -> None:
    import instructor
    from pydantic import BaseModel

    class Person(BaseModel):
        name: str
        age: int

    patched = instructor.from_openai(client, mode=getattr(instructor.Mode, mode))
    got = patched.chat.completions.create(
        model=QWEN,
        response_model=Person,
        messages=[{"role": "user", "content": "Extract the person: Li Lei is 28 years old."}],
        temperature=0,
        max_tokens=80,
        max_retries=1,
    )
    assert "li" in got.name.lower() and got.age == 28
