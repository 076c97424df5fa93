"""The runner in front of the fake engine: queue bound, deadlines, and closing a stream."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable

import pytest

from hearth.config import ModelSpec
from hearth.engines.fake import FakeEngine
from hearth.engines.runner import Runner
from hearth.errors import Overloaded, RequestTimeout
from hearth.types import ChatRequest, Delta, Message

WORDS = "one two three four five six seven eight nine ten eleven twelve thirteen fourteen"
DELAY = 0.05
SLOW = ModelSpec(name="slow", engine="fake", script=(WORDS,), delay=DELAY, parallel=1)


def make_runner(*, queue_size: int = 4, timeout: float = 10.0) -> tuple[Runner, FakeEngine]:
    engine = FakeEngine(SLOW)
    return Runner(SLOW, engine, queue_size=queue_size, timeout=timeout), engine


def chat(engine: FakeEngine) -> Callable[[], AsyncIterator[Delta]]:
    return lambda: engine.stream_chat(ChatRequest([Message("user", "hi")]))


async def until(check: Callable[[], bool], timeout: float = 1.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.001)


async def test_queue_bound_raises_overloaded_when_full() -> None:
    runner, engine = make_runner(queue_size=1)
    running = runner.stream(chat(engine))
    assert (await anext(running)).text == "one"  # holds the only slot
    queued = runner.stream(chat(engine))
    waiting = asyncio.create_task(anext(queued))
    await until(lambda: runner.waiting == 1)

    refused: AsyncGenerator[Delta, None] = runner.stream(chat(engine))
    with pytest.raises(Overloaded) as caught:
        await anext(refused)
    assert caught.value.retry_after >= 1
    assert "slow" in caught.value.message and "limit 1" in caught.value.message
    assert (runner.active, runner.waiting) == (1, 1)  # the refusal took no place

    await running.aclose()
    assert (await asyncio.wait_for(waiting, 1)).text == "one"  # the queued one goes on
    await queued.aclose()
    assert (runner.active, runner.waiting, engine.active) == (0, 0, 0)


async def test_queue_size_zero_refuses_only_when_every_slot_is_busy() -> None:
    runner, engine = make_runner(queue_size=0)
    first = runner.stream(chat(engine))
    assert (await anext(first)).text == "one"
    with pytest.raises(Overloaded):
        await anext(runner.stream(chat(engine)))
    await first.aclose()
    again = runner.stream(chat(engine))
    assert (await anext(again)).text == "one"
    await again.aclose()


async def test_generation_past_the_request_timeout_raises_request_timeout() -> None:
    timeout = 0.12
    runner, engine = make_runner(timeout=timeout)
    received: list[str] = []
    started = time.monotonic()
    with pytest.raises(RequestTimeout) as caught:
        async for chunk in runner.stream(chat(engine)):
            received.append(chunk.text)
    elapsed = time.monotonic() - started
    assert caught.value.status == 504 and "timeout" in caught.value.message
    assert 0 < len(received) < len(WORDS.split())
    assert timeout <= elapsed < 0.75 * len(WORDS.split()) * DELAY  # well before the end
    assert (runner.active, runner.waiting, engine.active) == (0, 0, 0)


async def test_waiting_past_the_request_timeout_raises_request_timeout() -> None:
    runner, engine = make_runner(timeout=0.1)
    holder = runner.stream(chat(engine))
    await anext(holder)  # holds the slot and is not read again
    started = time.monotonic()
    with pytest.raises(RequestTimeout, match="waited"):
        await anext(runner.stream(chat(engine)))
    assert 0.08 <= time.monotonic() - started < 0.5
    assert runner.waiting == 0
    await holder.aclose()
    assert (runner.active, engine.active) == (0, 0)


async def test_stream_aclose_releases_the_slot_and_stops_the_engine() -> None:
    runner, engine = make_runner()
    first = runner.stream(chat(engine))
    assert [(await anext(first)).text, (await anext(first)).text] == ["one", " two"]
    assert (runner.active, engine.active) == (1, 1)

    await first.aclose()
    assert (runner.active, engine.active) == (0, 0)
    started = time.monotonic()
    second = runner.stream(chat(engine))
    assert (await anext(second)).text == "one"
    # The slot was free at once: one token's delay, not the rest of the first generation.
    assert time.monotonic() - started < (len(WORDS.split()) - 2) * DELAY / 2
    await second.aclose()
    assert (runner.active, engine.active) == (0, 0)


async def test_slots_bound_concurrency_and_queue_is_first_come_first_served() -> None:
    spec = ModelSpec(name="two", engine="fake", script=("a b",), delay=0.02, parallel=2)
    engine = FakeEngine(spec)
    runner = Runner(spec, engine, queue_size=8, timeout=10)
    peak = 0
    order: list[int] = []

    async def one(i: int) -> None:
        nonlocal peak
        async for _ in runner.stream(lambda: engine.stream_chat(ChatRequest([]))):
            peak = max(peak, engine.active)
        order.append(i)

    tasks = []
    for i in range(6):
        tasks.append(asyncio.create_task(one(i)))
        await asyncio.sleep(0)  # each task starts, in order, before the next is created
    await asyncio.gather(*tasks)
    assert peak == 2
    assert order[:2] == sorted(order[:2]) and set(order) == set(range(6))
    assert (runner.active, runner.waiting, engine.active) == (0, 0, 0)


def test_fake_embedding_model_does_not_chat_and_chat_model_does_not_embed() -> None:
    embedder = FakeEngine(ModelSpec(name="e", engine="fake", embedding=True))
    chatter = FakeEngine(ModelSpec(name="c", engine="fake"))
    assert (embedder.capabilities.chat, embedder.capabilities.embeddings) == (False, True)
    assert (chatter.capabilities.chat, chatter.capabilities.embeddings) == (True, False)
