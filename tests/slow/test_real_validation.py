"""What llama.cpp refuses or cannot honour is a 400 before it runs, on the real SmolLM2."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import httpx
import jsonschema
import pytest

from hearth.errors import InvalidRequest
from hearth.hub import bundled
from hearth.types import ChatRequest, GenerationParams, Message
from tests.conftest import LiveServer, make_settings, serve
from tests.server.helpers import assert_openai_error

pytestmark = pytest.mark.slow

SMOL = "smollm2-135m-instruct"
VOCAB = 49152  # SmolLM2's tokenizer


@pytest.fixture(scope="module")
def smol(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    home = tmp_path_factory.mktemp("smol-home")
    bundled.ensure(SMOL, home / "models")
    with serve(make_settings(home, "").with_served([SMOL]), preload=[SMOL]) as live:
        yield live


def chat(live: LiveServer, messages: list[dict[str, Any]], **extra: Any) -> httpx.Response:
    body = {"model": SMOL, "messages": messages, "max_tokens": 24, "temperature": 0, **extra}
    return httpx.post(live.base_url + "/chat/completions", json=body, timeout=120)


USER = [{"role": "user", "content": "Give me a number from 1 to 9."}]


def test_two_assistant_messages_at_the_end(smol: LiveServer) -> None:
    messages = [*USER, {"role": "assistant", "content": "a"}, {"role": "assistant", "content": "b"}]
    error = assert_openai_error(chat(smol, messages), 400, "invalid_request", "messages")
    assert "2 assistant messages" in error["message"]
    one = chat(smol, [*USER, {"role": "assistant", "content": "My number is"}], max_tokens=3)
    assert one.status_code == 200


def test_detokenize_past_the_vocabulary(smol: LiveServer) -> None:
    resp = httpx.post(smol.url + "/detokenize", json={"model": SMOL, "tokens": [VOCAB]})
    error = assert_openai_error(resp, 400, "invalid_request", "tokens")
    assert f"{VOCAB} tokens" in error["message"]
    last = httpx.post(smol.url + "/detokenize", json={"model": SMOL, "tokens": [VOCAB - 1]})
    assert last.status_code == 200


def test_logit_bias_reaches_llama_cpp(smol: LiveServer) -> None:
    tokens = httpx.post(
        smol.url + "/tokenize", json={"model": SMOL, "content": "Banana", "with_pieces": False}
    ).json()["tokens"]
    piece = httpx.post(smol.url + "/detokenize", json={"model": SMOL, "tokens": tokens[:1]})
    forced = chat(smol, USER, max_tokens=1, logit_bias={str(tokens[0]): 100})
    assert forced.json()["choices"][0]["message"]["content"] == piece.json()["content"]
    past = chat(smol, USER, logit_bias={str(VOCAB): 5})
    assert_openai_error(past, 400, "invalid_request", "logit_bias")


def _format(schema: dict[str, Any]) -> dict[str, Any]:
    return {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}}


def test_a_schema_the_grammar_would_not_enforce_is_refused(smol: LiveServer) -> None:
    for schema, keyword in (
        ({"type": "string", "format": "email"}, "format"),
        ({"type": "number", "minimum": 0}, "minimum"),
        ({"type": "array", "items": {"type": "integer"}, "uniqueItems": True}, "uniqueItems"),
    ):
        resp = chat(smol, USER, response_format=_format(schema))
        error = assert_openai_error(resp, 400, "unsupported_parameter")
        assert error["param"] == "response_format.json_schema.schema"
        assert f"'{keyword}'" in error["message"]


def test_an_enforced_schema_is_followed(smol: LiveServer) -> None:
    schema = {
        "type": "object",
        "properties": {"n": {"type": "integer", "minimum": 1, "maximum": 9}},
        "required": ["n"],
    }
    resp = chat(smol, USER, response_format=_format(schema), max_tokens=40)
    assert resp.status_code == 200, resp.text
    content = resp.json()["choices"][0]["message"]["content"]
    text = content.strip().removeprefix("```json").removesuffix("```")
    jsonschema.validate(json.loads(text), schema)


def test_what_llama_cpp_refuses_is_a_request_error_with_its_reason(smol: LiveServer) -> None:
    """Past hearth's own checks, what llama.cpp throws while it reads a request is the
    client's mistake (400 with llama.cpp's words), not a 500."""
    engine = smol.services().registry.loaded()[0].engine
    two = [Message("user", "hi"), Message("assistant", "a"), Message("assistant", "b")]

    async def run() -> None:
        async for _ in engine.stream_chat(ChatRequest(two, GenerationParams(max_tokens=2))):
            pass

    with pytest.raises(InvalidRequest, match="Cannot have 2 or more assistant messages"):
        asyncio.run(run())
