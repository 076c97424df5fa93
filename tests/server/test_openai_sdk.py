"""The server driven by the official ``openai`` SDK, the way applications use it."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import numpy as np
import openai
import pytest

from hearth.engines.fake import FakeEngine
from hearth.types import Message
from tests.conftest import LiveServer
from tests.server.helpers import REPLY

MESSAGES: list[Any] = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Say hello, 请用中文。"},
]


@pytest.fixture(scope="module")
def client(fake_server: LiveServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=fake_server.base_url, api_key="x", max_retries=0)


async def rendered_prompt_tokens(server: LiveServer, messages: list[Any]) -> int:
    """What /tokenize counts for the prompt the fake engine's chat template renders."""
    engine = FakeEngine(server.settings.models["fake"])
    prompt = await engine.render_chat([Message(m["role"], m["content"]) for m in messages])
    resp = httpx.post(server.url + "/tokenize", json={"model": "fake", "content": prompt})
    resp.raise_for_status()
    count: int = resp.json()["count"]
    return count


def completion_tokens_of(server: LiveServer, text: str) -> int:
    resp = httpx.post(server.url + "/tokenize", json={"model": "fake", "content": text})
    count: int = resp.json()["count"]
    return count


# -- chat -------------------------------------------------------------------------------


async def test_sync_chat_reply_and_usage_match_the_models_tokenizer(
    client: openai.OpenAI, fake_server: LiveServer
) -> None:
    out = client.chat.completions.create(model="fake", messages=MESSAGES)
    assert out.object == "chat.completion"
    assert out.id.startswith("chatcmpl-")
    assert out.model == "fake"
    [choice] = out.choices
    assert choice.message.role == "assistant"
    assert choice.message.content == REPLY
    assert choice.finish_reason == "stop"
    assert out.usage is not None
    assert out.usage.prompt_tokens == await rendered_prompt_tokens(fake_server, MESSAGES)
    assert out.usage.completion_tokens == completion_tokens_of(fake_server, REPLY)
    assert out.usage.total_tokens == out.usage.prompt_tokens + out.usage.completion_tokens


async def test_async_client_chat(fake_server: LiveServer) -> None:
    async with openai.AsyncOpenAI(
        base_url=fake_server.base_url, api_key="x", max_retries=0
    ) as aclient:
        out = await aclient.chat.completions.create(model="fake", messages=MESSAGES)
        stream = await aclient.chat.completions.create(model="fake", messages=MESSAGES, stream=True)
        pieces = [c.choices[0].delta.content or "" async for c in stream if c.choices]
    assert out.choices[0].message.content == REPLY
    assert "".join(pieces) == REPLY


def test_stream_by_default_puts_usage_on_the_last_choice_chunk(client: openai.OpenAI) -> None:
    chunks = list(client.chat.completions.create(model="fake", messages=MESSAGES, stream=True))
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert len({c.id for c in chunks}) == 1
    assert all(len(c.choices) == 1 for c in chunks)  # clients that read choices[0] keep working
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == REPLY
    with_usage = [i for i, c in enumerate(chunks) if c.usage is not None]
    assert with_usage == [len(chunks) - 1]
    last = chunks[-1]
    assert last.choices[0].finish_reason == "stop"
    whole = client.chat.completions.create(model="fake", messages=MESSAGES)
    assert last.usage == whole.usage


def test_stream_include_usage_true_ends_with_a_usage_only_chunk(client: openai.OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(
            model="fake",
            messages=MESSAGES,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    *body, final = chunks
    assert final.choices == []
    assert final.usage is not None
    assert all(c.usage is None for c in body)
    assert all(len(c.choices) == 1 for c in body)
    assert body[-1].choices[0].finish_reason == "stop"
    whole = client.chat.completions.create(model="fake", messages=MESSAGES)
    assert final.usage == whole.usage


def test_stream_include_usage_false_sends_no_usage(client: openai.OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(
            model="fake",
            messages=MESSAGES,
            stream=True,
            stream_options={"include_usage": False},
        )
    )
    assert all(c.usage is None for c in chunks)
    assert all(len(c.choices) == 1 for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == REPLY


def test_n_2_gives_two_choices_whole_and_streamed(client: openai.OpenAI) -> None:
    out = client.chat.completions.create(model="fake", messages=MESSAGES, n=2)
    assert [c.index for c in out.choices] == [0, 1]
    assert [c.message.content for c in out.choices] == [REPLY, REPLY]
    assert out.usage is not None
    one = client.chat.completions.create(model="fake", messages=MESSAGES)
    assert one.usage is not None
    assert out.usage.completion_tokens == 2 * one.usage.completion_tokens
    assert out.usage.prompt_tokens == one.usage.prompt_tokens

    texts = {0: "", 1: ""}
    finishes = {}
    for chunk in client.chat.completions.create(model="fake", messages=MESSAGES, n=2, stream=True):
        for c in chunk.choices:
            texts[c.index] += c.delta.content or ""
            if c.finish_reason:
                finishes[c.index] = c.finish_reason
    assert texts == {0: REPLY, 1: REPLY}
    assert finishes == {0: "stop", 1: "stop"}


def test_stop_sequence_cuts_the_reply_before_it(client: openai.OpenAI) -> None:
    out = client.chat.completions.create(model="fake", messages=MESSAGES, stop=["!", "世界"])
    assert out.choices[0].message.content == "Hello from hearth"
    assert out.choices[0].finish_reason == "stop"
    streamed = client.chat.completions.create(
        model="fake", messages=MESSAGES, stop="from", stream=True
    )
    assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices) == "Hello "


def test_max_tokens_ends_with_finish_reason_length(client: openai.OpenAI) -> None:
    out = client.chat.completions.create(model="fake", messages=MESSAGES, max_tokens=3)
    assert out.choices[0].finish_reason == "length"
    assert out.choices[0].message.content == "Hello from hearth"
    assert out.usage is not None and out.usage.completion_tokens == 3
    # The newer name of the same limit.
    newer = client.chat.completions.create(model="fake", messages=MESSAGES, max_completion_tokens=2)
    assert newer.choices[0].finish_reason == "length"
    assert newer.usage is not None and newer.usage.completion_tokens == 2


def test_response_format_json_object_gives_parseable_json(client: openai.OpenAI) -> None:
    out = client.chat.completions.create(
        model="fake", messages=MESSAGES, response_format={"type": "json_object"}
    )
    content = out.choices[0].message.content
    assert content is not None
    assert isinstance(json.loads(content), dict)


def test_chat_logprobs_cover_every_token(client: openai.OpenAI) -> None:
    out = client.chat.completions.create(model="fake", messages=MESSAGES, logprobs=True)
    choice = out.choices[0]
    assert choice.logprobs is not None and choice.logprobs.content is not None
    tokens = choice.logprobs.content
    assert "".join(t.token for t in tokens) == choice.message.content
    assert out.usage is not None and len(tokens) == out.usage.completion_tokens
    for t in tokens:
        assert t.logprob <= 0
        assert t.bytes == list(t.token.encode())


def test_no_logprobs_unless_asked(client: openai.OpenAI) -> None:
    out = client.chat.completions.create(model="fake", messages=MESSAGES)
    assert out.choices[0].logprobs is None


# -- text completions -------------------------------------------------------------------


def test_completion_plain(client: openai.OpenAI, fake_server: LiveServer) -> None:
    out = client.completions.create(model="fake", prompt="Once upon a time")
    assert out.object == "text_completion"
    assert out.choices[0].text == REPLY
    assert out.choices[0].finish_reason == "stop"
    assert out.usage is not None
    assert out.usage.prompt_tokens == completion_tokens_of(fake_server, "Once upon a time")
    assert out.usage.total_tokens == out.usage.prompt_tokens + out.usage.completion_tokens


def test_completion_streamed(client: openai.OpenAI) -> None:
    chunks = list(
        client.completions.create(
            model="fake",
            prompt="Once upon a time",
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert "".join(c.choices[0].text for c in chunks if c.choices) == REPLY
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    whole = client.completions.create(model="fake", prompt="Once upon a time")
    assert chunks[-1].usage == whole.usage


def test_completion_echo_puts_the_prompt_first(client: openai.OpenAI) -> None:
    out = client.completions.create(model="fake", prompt="Once upon a time", echo=True)
    assert out.choices[0].text == "Once upon a time" + REPLY
    streamed = client.completions.create(
        model="fake", prompt="Once upon a time", echo=True, stream=True
    )
    assert "".join(c.choices[0].text for c in streamed if c.choices) == "Once upon a time" + REPLY


def test_completion_logprobs(client: openai.OpenAI) -> None:
    out = client.completions.create(model="fake", prompt="Hi", logprobs=0, max_tokens=4)
    lp = out.choices[0].logprobs
    assert lp is not None and lp.tokens is not None and lp.token_logprobs is not None
    assert "".join(lp.tokens) == out.choices[0].text
    assert len(lp.token_logprobs) == 4


# -- embeddings -------------------------------------------------------------------------

TEXTS = ["query: 退货政策是什么？", "passage: Returns are accepted within 30 days.", "hello"]


def test_embeddings_float_for_a_list_of_inputs(client: openai.OpenAI) -> None:
    out = client.embeddings.create(model="fake-embed", input=TEXTS, encoding_format="float")
    assert [d.index for d in out.data] == [0, 1, 2]
    vectors = np.array([d.embedding for d in out.data])
    assert vectors.shape[0] == 3 and vectors.shape[1] > 0
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0)
    assert out.usage.prompt_tokens > 0
    assert out.usage.total_tokens == out.usage.prompt_tokens


def test_embeddings_base64_decodes_to_the_float_vectors(client: openai.OpenAI) -> None:
    floats = client.embeddings.create(model="fake-embed", input=TEXTS, encoding_format="float")
    packed = client.embeddings.create(model="fake-embed", input=TEXTS, encoding_format="base64")
    for f, b in zip(floats.data, packed.data, strict=True):
        assert isinstance(b.embedding, str)
        decoded = np.frombuffer(base64.b64decode(b.embedding), dtype="<f4")
        assert np.allclose(decoded, f.embedding, rtol=1e-6, atol=1e-7)
    # The SDK's default asks for base64 and decodes it itself.
    default = client.embeddings.create(model="fake-embed", input=TEXTS)
    for f, d in zip(floats.data, default.data, strict=True):
        assert np.allclose(d.embedding, f.embedding, rtol=1e-6, atol=1e-7)


def test_embeddings_single_string_input(client: openai.OpenAI) -> None:
    out = client.embeddings.create(model="fake-embed", input="hello", encoding_format="float")
    many = client.embeddings.create(model="fake-embed", input=TEXTS, encoding_format="float")
    assert len(out.data) == 1
    assert out.data[0].embedding == many.data[2].embedding


# -- models -----------------------------------------------------------------------------


def test_models_list_and_retrieve(client: openai.OpenAI) -> None:
    ids = [m.id for m in client.models.list()]
    assert ids == ["fake", "fake-slow", "fake-embed"]
    model = client.models.retrieve("fake")
    assert model.id == "fake" and model.object == "model" and model.owned_by == "hearth"
    assert (model.model_extra or {})["context_length"] == 256
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("no-such-model")
