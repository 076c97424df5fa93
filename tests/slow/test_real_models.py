"""The real bundled models behind the real server, driven by the official openai client."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jinja2
import numpy as np
import openai
import pytest
from gguf import GGUFReader

from hearth.hub import bundled
from tests.conftest import LiveServer, make_settings, serve

pytestmark = pytest.mark.slow

QWEN = "qwen2.5-0.5b-instruct"
SMOL = "smollm2-135m-instruct"
E5 = "multilingual-e5-small"

# A second copy of SmolLM2 with one slot, to show queueing and cancellation on a real model.
CONFIG = """
[models."smol-1slot"]
engine = "llamacpp"
path = "models/SmolLM2-135M-Instruct.Q4_1.gguf"
context = 2048
parallel = 1
sampling = { temperature = 0.0 }
"""


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    home = tmp_path_factory.mktemp("real-home")
    bundled.ensure(SMOL, home / "models")
    settings = make_settings(home, CONFIG).with_served([QWEN, SMOL, E5, "smol-1slot"])
    with serve(settings, preload=[QWEN]) as live:
        yield live


@pytest.fixture(scope="module")
def client(real: LiveServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=real.base_url, api_key="unused")


def _gguf(live: LiveServer, model: str) -> Path:
    return live.settings.models_dir / bundled.BUNDLED[model].filename


def _template_count(live: LiveServer, model: str, messages: list[dict[str, str]]) -> int:
    """Count the prompt independently: the GGUF's own Jinja template, then /tokenize."""
    reader = GGUFReader(_gguf(live, model))
    field = reader.fields["tokenizer.chat_template"]
    template = bytes(field.parts[field.data[0]]).decode("utf-8")
    env = jinja2.Environment(loader=jinja2.BaseLoader())
    prompt = env.from_string(template).render(messages=messages, add_generation_prompt=True)
    resp = httpx.post(
        live.url + "/tokenize",
        json={"model": model, "content": prompt, "add_special": True, "with_pieces": False},
    )
    resp.raise_for_status()
    return int(resp.json()["count"])


def test_qwen_answers_chinese_with_exact_usage(real: LiveServer, client: openai.OpenAI) -> None:
    messages = [{"role": "user", "content": "中国的首都是哪里?"}]
    r = client.chat.completions.create(model=QWEN, messages=messages, max_tokens=40, temperature=0)
    assert "北京" in (r.choices[0].message.content or "")
    assert r.usage is not None
    assert r.usage.prompt_tokens == _template_count(real, QWEN, messages)
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    row = real.services().calllog.get(r.id)
    assert row is not None
    assert (row.prompt_tokens, row.completion_tokens) == (
        r.usage.prompt_tokens,
        r.usage.completion_tokens,
    )


def test_smollm_answers_english_streaming_with_usage(
    real: LiveServer, client: openai.OpenAI
) -> None:
    messages = [
        {"role": "system", "content": "You are a concise assistant."},
        {"role": "user", "content": "What is the capital of France?"},
    ]
    stream = client.chat.completions.create(
        model=SMOL, messages=messages, max_tokens=40, temperature=0, stream=True
    )
    text, usage = "", None
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            text += chunk.choices[0].delta.content
        usage = chunk.usage or usage
    assert "Paris" in text
    assert usage is not None
    assert usage.prompt_tokens == _template_count(real, SMOL, messages)
    assert usage.completion_tokens > 0


async def test_async_client_and_n_choices(real: LiveServer) -> None:
    client = openai.AsyncOpenAI(base_url=real.base_url, api_key="unused")
    r = await client.chat.completions.create(
        model=SMOL,
        messages=[{"role": "user", "content": "Name a colour."}],
        max_tokens=8,
        n=2,
        temperature=1.0,
        seed=1,
    )
    assert len(r.choices) == 2
    assert r.usage is not None
    # exact: the sum of the two choices' tokens, each capped at max_tokens
    assert 2 <= r.usage.completion_tokens <= 16
    await client.close()


def test_json_schema_output_is_valid(client: openai.OpenAI) -> None:
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "population": {"type": "integer"}},
        "required": ["city", "population"],
    }
    r = client.chat.completions.create(
        model=QWEN,
        messages=[{"role": "user", "content": "Describe Beijing as JSON."}],
        max_tokens=80,
        response_format={"type": "json_schema", "json_schema": {"name": "city", "schema": schema}},
    )
    data = json.loads(r.choices[0].message.content or "")
    assert isinstance(data["city"], str) and isinstance(data["population"], int)


def test_logprobs_and_text_completion(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(
        model=SMOL,
        messages=[{"role": "user", "content": "Say yes."}],
        max_tokens=3,
        logprobs=True,
        top_logprobs=2,
    )
    assert r.choices[0].logprobs is not None
    first = r.choices[0].logprobs.content[0]  # type: ignore[index]
    assert first.logprob <= 0 and len(first.top_logprobs) == 2
    c = client.completions.create(model=QWEN, prompt="1, 2, 3, 4,", max_tokens=4, temperature=0)
    assert "5" in c.choices[0].text


def test_context_length_exceeded_states_counts(real: LiveServer) -> None:
    resp = httpx.post(
        real.base_url + "/chat/completions",
        json={"model": SMOL, "messages": [{"role": "user", "content": "hello " * 3000}]},
        timeout=60,
    )
    assert resp.status_code == 400
    err = resp.json()["error"]
    assert err["code"] == "context_length_exceeded"
    assert "2048" in err["message"]


def test_partial_utf8_pieces_are_marked(real: LiveServer) -> None:
    resp = httpx.post(real.url + "/tokenize", json={"model": SMOL, "content": "北京烤鸭"})
    tokens = resp.json()["tokens"]
    assert b"".join(bytes(t["bytes"]) for t in tokens).decode() == "北京烤鸭"
    assert any(t["partial"] for t in tokens)  # an English-only vocabulary splits characters
    ids = [t["id"] for t in tokens]
    back = httpx.post(real.url + "/detokenize", json={"model": SMOL, "tokens": ids})
    assert back.json()["content"] == "北京烤鸭"


def test_e5_embeddings_rank_chinese_passages(client: openai.OpenAI) -> None:
    passages = ["passage: 北京是中国的首都。", "passage: 红烧肉要用五花肉慢炖。"]
    r = client.embeddings.create(model=E5, input=["query: 中国的首都在哪里", *passages])
    vecs = np.array([d.embedding for d in r.data])
    assert vecs.shape == (3, 384)
    scores = vecs[1:] @ vecs[0]
    assert scores[0] > scores[1]
    assert r.usage.prompt_tokens > 0


async def test_real_model_queues_and_disconnect_frees_slot(real: LiveServer) -> None:
    """One slot: a stream that is dropped must free it for the next request at once."""
    body = {
        "model": "smol-1slot",
        "messages": [{"role": "user", "content": "Write a long story about a dragon."}],
        "max_tokens": 1500,
        "stream": True,
    }
    async with httpx.AsyncClient(base_url=real.base_url, timeout=60) as http:
        await http.post("/chat/completions", json={**body, "stream": False, "max_tokens": 2})
        t0 = time.perf_counter()
        async with http.stream("POST", "/chat/completions", json=body) as resp:
            seen = 0
            async for line in resp.aiter_lines():
                seen += line.startswith("data:")
                if seen >= 5:
                    break
        dropped_after = time.perf_counter() - t0
        t1 = time.perf_counter()
        r = await http.post(
            "/chat/completions",
            json={
                "model": "smol-1slot",
                "messages": [{"role": "user", "content": "Hi"}],
                "max_tokens": 4,
            },
        )
        second = time.perf_counter() - t1
    assert r.status_code == 200
    # The dropped stream still had ~1,500 tokens to go (tens of seconds here); the next
    # request finishing within a few seconds shows the slot was freed on disconnect.
    assert second < 5, f"second request took {second:.1f}s after the drop at {dropped_after:.1f}s"


async def test_eight_concurrent_streams_all_finish(real: LiveServer) -> None:
    client = openai.AsyncOpenAI(base_url=real.base_url, api_key="unused")

    async def one(i: int) -> int:
        stream = await client.chat.completions.create(
            model=SMOL,
            messages=[{"role": "user", "content": f"Count to {i + 3}."}],
            max_tokens=16,
            stream=True,
        )
        n = 0
        async for chunk in stream:
            n += bool(chunk.choices and chunk.choices[0].delta.content)
        return n

    counts = await asyncio.gather(*(one(i) for i in range(8)))
    assert all(c > 0 for c in counts)
    await client.close()


def test_models_file_is_verified_once(real: LiveServer) -> None:
    path = _gguf(real, QWEN)
    assert path.is_file() and path.stat().st_size == 491400064
    marker = path.with_suffix(path.suffix + ".sha256")
    assert marker.read_text().strip() == bundled.BUNDLED[QWEN].sha256


def test_tokens_count_endpoint_matches_usage(real: LiveServer, client: openai.OpenAI) -> None:
    messages = [
        {"role": "system", "content": "你是一个乐于助人的助手。"},
        {"role": "user", "content": "用一句话介绍杭州。"},
    ]
    r = client.chat.completions.create(model=QWEN, messages=messages, max_tokens=5)
    counted = httpx.post(
        real.base_url + "/tokens/count", json={"model": QWEN, "messages": messages}
    )
    assert counted.status_code == 200
    assert r.usage is not None and counted.json()["count"] == r.usage.prompt_tokens
    text = httpx.post(real.base_url + "/tokens/count", json={"model": QWEN, "input": "你好，世界"})
    assert text.json() == {"object": "tokens.count", "model": QWEN, "kind": "text", "count": 3}


def test_qwen_answers_from_a_tool_result_in_its_history(
    real: LiveServer, client: openai.OpenAI
) -> None:
    """Qwen's template renders the call as <tool_call> and the result as <tool_response>,
    and usage counts them. (What the 0.5B model answers from there varies: it may repeat
    the call, so the answer's text is not checked here.)"""
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city": "北京"}'},
    }
    messages: list[dict[str, Any]] = [
        {"role": "user", "content": "北京今天天气怎么样？"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": "晴，气温 31°C"},
    ]
    r = client.chat.completions.create(
        model=QWEN,
        messages=messages,  # type: ignore[arg-type]
        max_tokens=40,
        temperature=0,
    )
    assert r.choices[0].message.content
    counted = httpx.post(
        real.base_url + "/tokens/count", json={"model": QWEN, "messages": messages}
    )
    assert r.usage is not None and counted.json()["count"] == r.usage.prompt_tokens
    alone = httpx.post(
        real.base_url + "/tokens/count", json={"model": QWEN, "messages": messages[:1]}
    )
    assert counted.json()["count"] > alone.json()["count"] + 15
