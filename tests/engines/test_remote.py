"""A remote model is another hearth (fake engine) reached over real HTTP."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import openai
import pytest

from tests.conftest import FAKE_MODELS, LiveServer


def _remote_config(upstream: LiveServer, extra: str = "") -> str:
    return (
        FAKE_MODELS
        + f"""
[models.far]
engine = "remote"
url = "{upstream.base_url}"
upstream_model = "fake"
price = {{ input = 1.0, output = 2.0 }}
{extra}

[models.far-missing]
engine = "remote"
url = "{upstream.base_url}"
upstream_model = "no-such-model"
"""
    )


@pytest.fixture
def proxy(fake_server: LiveServer, server_factory: Callable[..., LiveServer]) -> LiveServer:
    return server_factory(_remote_config(fake_server), served=["far", "far-missing", "fake"])


def test_remote_passes_answer_and_upstream_usage(
    proxy: LiveServer, fake_server: LiveServer
) -> None:
    client = openai.OpenAI(base_url=proxy.base_url, api_key="x")
    direct = openai.OpenAI(base_url=fake_server.base_url, api_key="x")
    messages = [{"role": "user", "content": "hello there"}]
    via = client.chat.completions.create(model="far", messages=messages)
    ref = direct.chat.completions.create(model="fake", messages=messages)
    assert via.choices[0].message.content == ref.choices[0].message.content
    assert via.usage is not None and ref.usage is not None
    assert via.usage.prompt_tokens == ref.usage.prompt_tokens
    assert via.usage.completion_tokens == ref.usage.completion_tokens
    row = proxy.services().calllog.get(via.id)
    assert row is not None and row.model == "far"
    assert row.cost == pytest.approx(
        (ref.usage.prompt_tokens * 1.0 + ref.usage.completion_tokens * 2.0) / 1000
    )


def test_remote_streams_chunk_by_chunk(proxy: LiveServer) -> None:
    client = openai.OpenAI(base_url=proxy.base_url, api_key="x")
    stream = client.chat.completions.create(
        model="far", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    pieces = [
        c.choices[0].delta.content for c in stream if c.choices and c.choices[0].delta.content
    ]
    assert len(pieces) > 3
    assert "".join(pieces) == "Hello from hearth! 你好，世界。"


def test_remote_upstream_errors_are_not_500(proxy: LiveServer) -> None:
    resp = httpx.post(
        proxy.base_url + "/chat/completions",
        json={"model": "far-missing", "messages": [{"role": "user", "content": "hi"}]},
    )
    assert resp.status_code == 502
    assert "no-such-model" in resp.json()["error"]["message"]
    long = {"model": "far", "messages": [{"role": "user", "content": "word " * 400}]}
    resp = httpx.post(proxy.base_url + "/chat/completions", json=long)
    assert resp.status_code == 400
    assert resp.json()["error"]["code"] == "context_length_exceeded"


def test_remote_tokenizer_counts_when_configured(
    fake_server: LiveServer, server_factory: Callable[..., LiveServer]
) -> None:
    live = server_factory(_remote_config(fake_server, 'tokenizer = "fake"'), served=["far"])
    resp = httpx.post(live.url + "/tokenize", json={"model": "far", "content": "a b c"})
    assert resp.status_code == 200 and resp.json()["count"] == 3


def test_remote_without_tokenizer_says_how_to_set_one(proxy: LiveServer) -> None:
    resp = httpx.post(proxy.url + "/tokenize", json={"model": "far", "content": "a b c"})
    assert resp.status_code == 400
    assert "tokenizer =" in resp.json()["error"]["message"]
