"""Every client mistake is a 4xx with OpenAI's error object; none of them is a 500."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import openai
import pytest

from hearth.engines.fake import FakeEngine
from hearth.types import Message
from tests.conftest import LiveServer
from tests.server.helpers import (
    SLOW_WORDS,
    assert_openai_error,
    chat_body,
    model_state,
    sse_events,
    wait_until,
)

LIMIT = 64 * 1024  # max_body_bytes of the fake_server fixture


@pytest.fixture(scope="module")
def http(fake_server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fake_server.base_url, timeout=10) as client:
        yield client


# -- the body is not a request at all ---------------------------------------------------


@pytest.mark.parametrize("raw", [b"{not json", b'{"model": "fake",', b"\xff\xfe"])
def test_invalid_json_body(http: httpx.Client, raw: bytes) -> None:
    resp = http.post("/chat/completions", content=raw, headers={"content-type": "application/json"})
    error = assert_openai_error(resp, 400, "invalid_request")
    assert error["type"] == "invalid_request_error"
    assert "not valid JSON" in error["message"]


def test_empty_body(http: httpx.Client) -> None:
    resp = http.post("/chat/completions", headers={"content-type": "application/json"})
    assert_openai_error(resp, 400, "invalid_request")


@pytest.mark.parametrize("raw", [b"[1, 2]", b'"hello"', b"42", b"null"])
def test_body_that_is_not_an_object(http: httpx.Client, raw: bytes) -> None:
    resp = http.post("/chat/completions", content=raw, headers={"content-type": "application/json"})
    error = assert_openai_error(resp, 400, "invalid_request")
    assert "JSON object" in error["message"]


# -- fields with the wrong type or out of range -----------------------------------------

BAD_FIELDS: dict[str, tuple[dict[str, Any], str]] = {
    "messages_as_string": ({"messages": "hello"}, "messages"),
    "empty_messages": ({"messages": []}, "messages"),
    "temperature_as_word": ({"temperature": "hot"}, "temperature"),
    "temperature_above_2": ({"temperature": 3}, "temperature"),
    "top_p_zero": ({"top_p": 0}, "top_p"),
    "max_tokens_zero": ({"max_tokens": 0}, "max_tokens"),
    "n_zero": ({"n": 0}, "n"),
    "five_stop_sequences": ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
    "model_missing_is_empty": ({"model": ""}, "model"),
    "stream_options_not_object": ({"stream": True, "stream_options": "yes"}, "stream_options"),
    "unknown_response_format": ({"response_format": {"type": "xml"}}, "response_format.type"),
}


@pytest.mark.parametrize("case", BAD_FIELDS)
def test_bad_field_names_the_param(http: httpx.Client, case: str) -> None:
    override, param = BAD_FIELDS[case]
    resp = http.post("/chat/completions", json={**chat_body(), **override})
    error = assert_openai_error(resp, 400, "invalid_request", param)
    assert f"'{param}'" in error["message"]


def test_unknown_role(http: httpx.Client) -> None:
    body = {"model": "fake", "messages": [{"role": "wizard", "content": "hi"}]}
    error = assert_openai_error(http.post("/chat/completions", json=body), 400, "invalid_request")
    assert error["param"] == "messages.0.role"
    assert "user" in error["message"]  # names what is allowed


def test_completions_validate_too(http: httpx.Client) -> None:
    resp = http.post("/completions", json={"model": "fake", "prompt": ["a", "b"]})
    assert_openai_error(resp, 400, "invalid_request", "prompt")
    resp = http.post("/completions", json={"model": "fake", "prompt": "a", "logprobs": 9})
    assert_openai_error(resp, 400, "invalid_request", "logprobs")


# -- requests the model cannot serve ----------------------------------------------------


async def test_context_length_exceeded_states_both_numbers(
    http: httpx.Client, fake_server: LiveServer
) -> None:
    content = "word " * 300
    engine = FakeEngine(fake_server.settings.models["fake"])
    prompt = await engine.render_chat([Message("user", content)])
    count = httpx.post(fake_server.url + "/tokenize", json={"model": "fake", "content": prompt})
    prompt_tokens = count.json()["count"]
    assert prompt_tokens > 256

    resp = http.post("/chat/completions", json=chat_body(content=content))
    error = assert_openai_error(resp, 400, "context_length_exceeded", "messages")
    assert f"{prompt_tokens} tokens" in error["message"]
    assert "256" in error["message"]

    streamed = http.post("/chat/completions", json=chat_body(content=content, stream=True))
    assert_openai_error(streamed, 400, "context_length_exceeded")


def test_unknown_model_is_404(http: httpx.Client, fake_server: LiveServer) -> None:
    resp = http.post("/chat/completions", json=chat_body(model="gpt-9"))
    error = assert_openai_error(resp, 404, "model_not_found", "model")
    assert "gpt-9" in error["message"] and "fake" in error["message"]  # lists what is served
    resp = http.post("/embeddings", json={"model": "gpt-9", "input": "x"})
    assert_openai_error(resp, 404, "model_not_found")

    client = openai.OpenAI(base_url=fake_server.base_url, api_key="x", max_retries=0)
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="gpt-9", messages=[{"role": "user", "content": "x"}])
    assert caught.value.code == "model_not_found"


def test_n_above_the_engine_limit(http: httpx.Client) -> None:
    resp = http.post("/chat/completions", json=chat_body(n=5))
    error = assert_openai_error(resp, 400, "unsupported_parameter", "n")
    assert "4" in error["message"]  # the fake engine's max_n


def test_embeddings_on_a_chat_model_and_chat_on_an_embedding_model(http: httpx.Client) -> None:
    resp = http.post("/embeddings", json={"model": "fake", "input": ["a"]})
    assert_openai_error(resp, 400, "unsupported_parameter", "model")
    resp = http.post("/chat/completions", json=chat_body(model="fake-embed"))
    assert_openai_error(resp, 400, "unsupported_parameter", "model")


def test_embeddings_input_checks(http: httpx.Client) -> None:
    resp = http.post("/embeddings", json={"model": "fake-embed", "input": ["a", ""]})
    assert_openai_error(resp, 400, "invalid_request", "input.1")
    resp = http.post("/embeddings", json={"model": "fake-embed", "input": []})
    assert_openai_error(resp, 400, "invalid_request", "input")
    resp = http.post(
        "/embeddings", json={"model": "fake-embed", "input": "a", "encoding_format": "hex"}
    )
    assert_openai_error(resp, 400, "invalid_request", "encoding_format")


# -- transport: routes, methods, body size ----------------------------------------------


def test_unknown_route_is_404_json(fake_server: LiveServer) -> None:
    assert_openai_error(httpx.get(fake_server.base_url + "/nope"), 404, "not_found")
    assert_openai_error(httpx.post(fake_server.url + "/v2/chat"), 404, "not_found")


def test_wrong_method_is_405_json(http: httpx.Client) -> None:
    assert_openai_error(http.get("/chat/completions"), 405, "method_not_allowed")


def big_body() -> bytes:
    return ('{"model": "fake", "messages": [{"role": "user", "content": "' + "x" * LIMIT).encode()


def test_body_over_the_limit_with_content_length(http: httpx.Client) -> None:
    resp = http.post(
        "/chat/completions", content=big_body(), headers={"content-type": "application/json"}
    )
    error = assert_openai_error(resp, 413, "payload_too_large")
    assert str(LIMIT) in error["message"] and "max_body_bytes" in error["message"]


def test_body_over_the_limit_streamed_without_content_length(http: httpx.Client) -> None:
    data = big_body()

    def pieces() -> Iterator[bytes]:
        for i in range(0, len(data), 4096):
            yield data[i : i + 4096]

    resp = http.post(
        "/chat/completions", content=pieces(), headers={"content-type": "application/json"}
    )
    assert resp.request.headers.get("transfer-encoding") == "chunked"
    assert "content-length" not in resp.request.headers
    assert_openai_error(resp, 413, "payload_too_large")


def test_body_just_under_the_limit_is_served(http: httpx.Client) -> None:
    # Well-formed and under the limit; it then fails on context length, not on size.
    head, tail = '{"model": "fake", "messages": [{"role": "user", "content": "', '"}]}'
    body = head + "x " * ((LIMIT - len(head) - len(tail) - 16) // 2) + tail
    resp = http.post(
        "/chat/completions", content=body.encode(), headers={"content-type": "application/json"}
    )
    assert_openai_error(resp, 400, "context_length_exceeded")


# -- a full queue -----------------------------------------------------------------------


async def test_full_queue_is_429_with_retry_after_and_the_queued_request_completes(
    server_factory: Callable[..., LiveServer],
) -> None:
    live = server_factory(served=["fake-slow"], queue_size=1)

    def state() -> dict[str, Any]:
        return model_state(live.url, "fake-slow")

    async def stream(client: httpx.AsyncClient) -> tuple[int, str]:
        async with client.stream(
            "POST", "/chat/completions", json=chat_body("fake-slow", stream=True)
        ) as resp:
            lines = [line async for line in resp.aiter_lines()]
        text = "".join(
            e["choices"][0]["delta"].get("content", "") for e in sse_events(lines) if e["choices"]
        )
        return resp.status_code, text

    async with httpx.AsyncClient(base_url=live.base_url, timeout=30) as client:
        running = asyncio.create_task(stream(client))
        await asyncio.to_thread(wait_until, lambda: state()["active"] == 1, 5, "first running")
        queued = asyncio.create_task(stream(client))
        await asyncio.to_thread(wait_until, lambda: state()["queued"] == 1, 5, "second queued")

        started = time.monotonic()
        refused = await client.post("/chat/completions", json=chat_body("fake-slow"))
        assert time.monotonic() - started < 0.5  # refused at once, not after waiting
        assert_openai_error(refused, 429, "overloaded")
        assert refused.json()["error"]["type"] == "rate_limit_error"
        assert int(refused.headers["Retry-After"]) >= 1

        # The refusal took nothing from the two that were accepted.
        words = " ".join(["one", "two", "three"])
        for status, text in await asyncio.gather(running, queued):
            assert status == 200
            assert text.startswith(words) and len(text.split()) == SLOW_WORDS
    assert state() == {"id": "fake-slow", "loaded": True, "active": 0, "queued": 0}


def test_openai_sdk_sees_429_as_rate_limit_error(
    server_factory: Callable[..., LiveServer],
) -> None:
    # queue_size=0: anything beyond the running request is refused.
    live = server_factory(served=["fake-slow"], queue_size=0)
    client = openai.OpenAI(base_url=live.base_url, api_key="x", max_retries=0)
    stream = client.chat.completions.create(
        model="fake-slow", messages=[{"role": "user", "content": "x"}], stream=True
    )
    with stream:
        next(iter(stream))
        with pytest.raises(openai.RateLimitError) as caught:
            client.chat.completions.create(
                model="fake-slow", messages=[{"role": "user", "content": "x"}]
            )
    assert caught.value.response.headers["Retry-After"] == "1"
