"""engine = "transformers" on real weights (a Hugging Face directory made from the bundled
SmolLM2), behind the real server, driven by the openai SDK."""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import openai
import pytest

from hearth.config import ModelSpec
from hearth.engines.transformers import TransformersEngine
from hearth.errors import EngineError
from tests.conftest import LiveServer, make_settings, serve

pytestmark = pytest.mark.slow

MESSAGES = [
    {"role": "system", "content": "You are a concise assistant."},
    {"role": "user", "content": "What is the capital of France?"},
]


@pytest.fixture(scope="module")
def live(smol_hf: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    config = f"""
[models.smol-hf]
engine = "transformers"
path = "{smol_hf}"
context = 2048
threads = 1
"""
    settings = make_settings(tmp_path_factory.mktemp("home"), config).with_served(["smol-hf"])
    with serve(settings, preload=["smol-hf"]) as server:
        yield server


@pytest.fixture(scope="module")
def client(live: LiveServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=live.base_url, api_key="x", max_retries=0)


def test_chat_answers_with_exact_usage(client: openai.OpenAI, smol_hf: Path) -> None:
    from transformers import AutoTokenizer

    done = client.chat.completions.create(
        model="smol-hf", messages=MESSAGES, max_tokens=24, temperature=0
    )
    text = done.choices[0].message.content or ""
    assert "Paris" in text, text
    tokenizer = AutoTokenizer.from_pretrained(smol_hf)
    prompt = tokenizer.apply_chat_template(MESSAGES, add_generation_prompt=True, tokenize=False)
    assert done.usage is not None
    assert done.usage.prompt_tokens == len(tokenizer.encode(prompt, add_special_tokens=False))
    assert done.usage.completion_tokens == len(tokenizer.encode(text, add_special_tokens=False))
    # greedy decoding is the same streamed
    parts = [
        c.choices[0].delta.content or ""
        for c in client.chat.completions.create(
            model="smol-hf", messages=MESSAGES, max_tokens=24, temperature=0, stream=True
        )
        if c.choices
    ]
    assert "".join(parts) == text and len([p for p in parts if p]) > 1


def test_length_stop_sequences_and_a_seed(client: openai.OpenAI) -> None:
    long = client.completions.create(
        model="smol-hf", prompt="One, two, three, four,", max_tokens=6, temperature=0
    )
    assert long.choices[0].finish_reason == "length"
    assert long.usage is not None and long.usage.completion_tokens == 6
    counted = "".join(
        c.choices[0].text
        for c in client.completions.create(
            model="smol-hf",
            prompt="One, two, three, four,",
            max_tokens=40,
            temperature=0,
            stop=[" seven"],
            stream=True,
        )
        if c.choices
    )
    assert "six" in counted and "seven" not in counted, counted
    sampled = [
        client.completions.create(
            model="smol-hf", prompt="Once upon a time", max_tokens=12, temperature=1.0, seed=7
        )
        .choices[0]
        .text
        for _ in range(2)
    ]
    assert sampled[0] == sampled[1]


def test_concurrent_streams_take_turns(client: openai.OpenAI) -> None:
    firsts: list[float] = []
    ends: list[float] = []
    start = time.monotonic()

    def ask(prompt: str) -> None:
        stream = client.completions.create(
            model="smol-hf", prompt=prompt, max_tokens=30, temperature=0, stream=True
        )
        got_first = False
        for chunk in stream:
            if chunk.choices and chunk.choices[0].text and not got_first:
                firsts.append(time.monotonic() - start)
                got_first = True
        ends.append(time.monotonic() - start)

    threads = [threading.Thread(target=ask, args=(p,)) for p in ("Red, green,", "Paris is")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # both started streaming before either finished: neither waited for the other
    assert len(firsts) == 2 and max(firsts) < min(ends), (firsts, ends)


def test_a_closed_stream_stops_generating_within_a_second(
    client: openai.OpenAI, live: LiveServer
) -> None:
    stream = client.completions.create(
        model="smol-hf", prompt="Write a very long story:", max_tokens=1500, stream=True
    )
    for i, _ in enumerate(stream):
        if i == 3:
            break
    stream.close()
    closed = time.monotonic()
    while True:
        last = live.services().calllog.recent(1)[0]
        if last.status == "cancelled":
            break
        assert time.monotonic() - closed < 1.0, last
        time.sleep(0.02)
    assert last.completion_tokens < 100


def test_model_code_runs_only_when_trusted(smol_hf: Path, tmp_path: Path) -> None:
    custom = tmp_path / "custom"
    shutil.copytree(smol_hf, custom)
    config = json.loads((custom / "config.json").read_text())
    config["auto_map"] = {"AutoModelForCausalLM": "modeling_custom.CustomForCausalLM"}
    (custom / "config.json").write_text(json.dumps(config))
    spec = ModelSpec(name="custom", engine="transformers", path=str(custom))
    import asyncio

    with pytest.raises(EngineError, match="trust_remote_code = true"):
        asyncio.run(TransformersEngine(spec).start())
    # trusted, transformers goes on to import the model's code (absent here)
    with pytest.raises(Exception) as caught:
        asyncio.run(TransformersEngine(replace(spec, trust_remote_code=True)).start())
    assert "trust_remote_code" not in str(caught.value)


def test_requests_batched_together_answer_as_alone(client: openai.OpenAI) -> None:
    """Requests arriving together share a left-padded batch: greedy answers are the
    same as each one's alone, whatever the other prompts' lengths."""
    from concurrent.futures import ThreadPoolExecutor

    prompts = ["Why is the sky blue?", "Write a haiku about rain.", "Name three fruits."]

    def ask(question: str) -> str:
        done = client.chat.completions.create(
            model="smol-hf",
            messages=[{"role": "user", "content": question}],
            max_tokens=24,
            temperature=0,
        )
        return done.choices[0].message.content or ""

    alone = [ask(q) for q in prompts]
    with ThreadPoolExecutor(len(prompts)) as pool:
        together = list(pool.map(ask, prompts))
    assert together == alone
