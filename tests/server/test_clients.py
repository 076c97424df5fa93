"""Clients other than the current SDK: the 2023-era ``openai`` 0.28 and LangChain."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import pytest
from langchain_core.messages import AIMessageChunk
from langchain_openai import ChatOpenAI

from tests.conftest import LiveServer
from tests.server.helpers import REPLY

LEGACY = Path(__file__).resolve().parents[2] / ".cache" / "openai-legacy"

LEGACY_SCRIPT = """
import json, sys
import openai

assert openai.version.VERSION == "0.28.1", openai.version.VERSION
openai.api_base = sys.argv[1]
openai.api_key = "x"
messages = [{"role": "user", "content": "hello"}]
completion = openai.ChatCompletion.create(model="fake", messages=messages)
streamed, roles, finishes = "", [], []
for chunk in openai.ChatCompletion.create(model="fake", messages=messages, stream=True):
    delta = chunk["choices"][0]["delta"]
    streamed += delta.get("content", "")
    if "role" in delta:
        roles.append(delta["role"])
    if chunk["choices"][0]["finish_reason"]:
        finishes.append(chunk["choices"][0]["finish_reason"])
embedded = openai.Embedding.create(model="fake-embed", input=["a b", "c"])
print(json.dumps({
    "prompt_tokens": completion["usage"]["prompt_tokens"],
    "total_tokens": completion["usage"]["total_tokens"],
    "content": completion["choices"][0]["message"]["content"],
    "streamed": streamed,
    "roles": roles,
    "finishes": finishes,
    "dims": [len(d["embedding"]) for d in embedded["data"]],
    "embedding": embedded["data"][0]["embedding"],
}))
"""


@pytest.fixture(scope="module")
def legacy_env() -> dict[str, str]:
    if not (LEGACY / "openai").is_dir():
        pytest.skip(
            f"openai==0.28.1 is not installed in {LEGACY}; `make test-fast` installs it "
            f"(or: pip install --target {LEGACY} 'openai==0.28.1')"
        )
    return {**os.environ, "PYTHONPATH": str(LEGACY)}


def test_legacy_openai_028_chat_stream_and_embeddings(
    fake_server: LiveServer, legacy_env: dict[str, str]
) -> None:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(LEGACY_SCRIPT), fake_server.base_url],
        env=legacy_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["content"] == REPLY
    assert out["prompt_tokens"] > 0 and out["total_tokens"] > out["prompt_tokens"]
    assert out["streamed"] == REPLY
    assert out["roles"] == ["assistant"]
    assert out["finishes"] == ["stop"]
    assert out["dims"] == [16, 16]  # the fake embedder's size

    # 0.28 asks for base64 and decodes it: the numbers must equal the float answer.
    floats = httpx.post(
        fake_server.base_url + "/embeddings",
        json={"model": "fake-embed", "input": ["a b"], "encoding_format": "float"},
    ).json()
    assert out["embedding"] == pytest.approx(floats["data"][0]["embedding"], rel=1e-6)


@pytest.fixture(scope="module")
def chat_model(fake_server: LiveServer) -> ChatOpenAI:
    return ChatOpenAI(
        model="fake", base_url=fake_server.base_url, api_key="x", max_retries=0, timeout=10
    )


def test_langchain_invoke_reports_usage(chat_model: ChatOpenAI) -> None:
    message = chat_model.invoke([("system", "Be brief."), ("user", "hello")])
    assert message.content == REPLY
    usage = message.usage_metadata
    assert usage is not None
    assert usage["input_tokens"] > 0 and usage["output_tokens"] > 0
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]


def test_langchain_stream_gets_usage_without_asking(chat_model: ChatOpenAI) -> None:
    # LangChain does not send stream_options to a custom base_url; hearth's default puts
    # usage on the last choice chunk so the total still arrives.
    invoked = chat_model.invoke([("user", "hello")]).usage_metadata
    chunks = list(chat_model.stream([("user", "hello")]))
    assert len(chunks) > 3
    total = chunks[0]
    for chunk in chunks[1:]:
        total += chunk
    assert isinstance(total, AIMessageChunk)
    assert total.content == REPLY
    assert total.usage_metadata is not None and invoked is not None
    assert total.usage_metadata["input_tokens"] == invoked["input_tokens"]
    assert total.usage_metadata["output_tokens"] == invoked["output_tokens"]


def test_langchain_stream_with_stream_usage(chat_model: ChatOpenAI) -> None:
    invoked = chat_model.invoke([("user", "hello")]).usage_metadata
    chunks = list(chat_model.stream([("user", "hello")], stream_usage=True))
    total = chunks[0]
    for chunk in chunks[1:]:
        total += chunk
    assert isinstance(total, AIMessageChunk)
    assert total.content == REPLY
    assert total.usage_metadata == invoked
