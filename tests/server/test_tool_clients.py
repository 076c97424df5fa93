"""Function calling through the clients people use: LangChain's ``bind_tools`` and
``instructor`` in TOOLS, JSON_SCHEMA and MD_JSON modes, against a real server (fake
engine); the slow tier runs the same clients on the bundled Qwen model."""

from __future__ import annotations

import json
from collections.abc import Callable

import instructor
import openai
import pytest
from langchain_core.messages import HumanMessage, ToolMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from pydantic import BaseModel, Field

from tests.conftest import LiveServer
from tests.server.test_tools import CONFIG as TOOL_MODELS


class Weather(BaseModel):
    """The weather in a city."""

    city: str = Field(description="The city's name")
    celsius: int


WEATHER = {"city": "北京", "celsius": 25}
_CALL = '<tool_call>{"name": "Weather", "arguments": ' + json.dumps(WEATHER) + "}</tool_call>"
_MD = "Here it is:\n```json\n" + json.dumps(WEATHER) + "\n```"
CONFIG = (
    TOOL_MODELS
    + f"""
[models.weather-call]
engine = "fake"
script = [{json.dumps(_CALL)}]

[models.weather-json]
engine = "fake"
script = [{json.dumps(json.dumps(WEATHER))}]

[models.weather-md]
engine = "fake"
script = [{json.dumps(_MD)}]
"""
)


@pytest.fixture
def live(server_factory: Callable[..., LiveServer]) -> LiveServer:
    return server_factory(
        CONFIG, served=["caller", "plain", "weather-call", "weather-json", "weather-md"]
    )


@tool
def get_weather(city: str) -> str:
    """Weather in a city."""
    return f"{city}: 晴 25°C"


def test_langchain_bind_tools(live: LiveServer) -> None:
    llm = ChatOpenAI(base_url=live.base_url, api_key="none", model="caller", max_retries=0)
    bound = llm.bind_tools([get_weather])
    ask = [HumanMessage("北京天气？")]
    reply = bound.invoke(ask)
    (call,) = reply.tool_calls
    assert call["name"] == "get_weather" and call["args"] == {"city": "北京"}
    # Streamed: the chunks add up to the same call.
    total = None
    for chunk in bound.stream(ask):
        total = chunk if total is None else total + chunk
    assert total is not None
    assert [(c["name"], c["args"]) for c in total.tool_calls] == [  # type: ignore[attr-defined]
        ("get_weather", {"city": "北京"})
    ]
    # The tool's result goes back as a ToolMessage; the next model answers in text.
    result = get_weather.invoke(call)
    assert isinstance(result, ToolMessage)
    plain = ChatOpenAI(base_url=live.base_url, api_key="none", model="plain").bind_tools(
        [get_weather]
    )
    final = plain.invoke([*ask, reply, result])
    assert final.content == "晴天，25 度。" and not final.tool_calls


@pytest.mark.parametrize(
    ("mode", "model"),
    [
        (instructor.Mode.TOOLS, "weather-call"),
        (instructor.Mode.JSON_SCHEMA, "weather-json"),
        (instructor.Mode.MD_JSON, "weather-md"),
    ],
)
def test_instructor_modes(live: LiveServer, mode: instructor.Mode, model: str) -> None:
    client = instructor.from_openai(
        openai.OpenAI(base_url=live.base_url, api_key="none", max_retries=0), mode=mode
    )
    got = client.chat.completions.create(
        model=model,
        response_model=Weather,
        messages=[{"role": "user", "content": "北京今天多少度？"}],
        max_retries=0,
    )
    assert isinstance(got, Weather) and got.model_dump() == WEATHER
