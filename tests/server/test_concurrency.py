"""Slots, queueing and cancellation, shown with "fake-slow": one slot, 0.05 s per token."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import openai
import pytest

from hearth.engines.fake import FakeEngine
from tests.conftest import FAKE_MODELS, LiveServer
from tests.server.helpers import (
    SLOW_DELAY,
    chat_body,
    model_state,
    sse_events,
    wait_until,
)

LONG_COUNT = 80
LONG_WORDS = " ".join(f"w{i}" for i in range(LONG_COUNT))
LONG_MODEL = f"""
[models.fake-long]
engine = "fake"
script = ["{LONG_WORDS}"]
delay = 0.05
parallel = 1
"""


def long_server(factory: Callable[..., LiveServer]) -> tuple[LiveServer, FakeEngine]:
    """A server whose one-slot model needs ~4 s per answer, loaded and ready."""
    live = factory(FAKE_MODELS + LONG_MODEL, served=["fake-long"])
    httpx.post(live.base_url + "/chat/completions", json=chat_body("fake-long", max_tokens=1))
    [runner] = live.services().registry.loaded()
    assert isinstance(runner.engine, FakeEngine)
    return live, runner.engine


def slow_engine(server: LiveServer) -> FakeEngine:
    """The engine behind "fake-slow", loading it first if needed."""
    httpx.post(server.base_url + "/chat/completions", json=chat_body("fake-slow", max_tokens=1))
    [runner] = [r for r in server.services().registry.loaded() if r.spec.name == "fake-slow"]
    engine = runner.engine
    assert isinstance(engine, FakeEngine)
    return engine


def content_events(lines: Iterator[str]) -> Iterator[dict[str, Any]]:
    """Stream events that carry generated text."""
    for event in sse_events(lines):
        if event["choices"] and event["choices"][0]["delta"].get("content"):
            yield event


async def test_requests_beyond_the_slots_queue_and_run_one_at_a_time(
    fake_server: LiveServer,
) -> None:
    slow_engine(fake_server)
    count, tokens = 4, 4
    each = tokens * SLOW_DELAY
    finished = 0

    def arrived() -> int:
        state = model_state(fake_server.url, "fake-slow")
        return int(state["active"] + state["queued"]) + finished

    async with httpx.AsyncClient(base_url=fake_server.base_url, timeout=30) as client:

        async def one() -> httpx.Response:
            nonlocal finished
            body = chat_body("fake-slow", max_tokens=tokens)
            resp = await client.post("/chat/completions", json=body)
            finished += 1
            return resp

        started = time.monotonic()
        tasks = []
        for i in range(count):
            tasks.append(asyncio.create_task(one()))
            # Arrivals in a known order: the next is sent once the server holds this one.
            await asyncio.to_thread(wait_until, lambda i=i: arrived() >= i + 1, 5, "arrival")
        responses = await asyncio.gather(*tasks)
        wall = time.monotonic() - started

    for resp in responses:
        assert resp.status_code == 200
        choice = resp.json()["choices"][0]
        assert choice["message"]["content"] == "one two three four"
        assert choice["finish_reason"] == "length"
    # One slot: the requests ran back to back, not side by side (that would take ~each).
    assert wall >= 0.9 * count * each
    # The server's own clock, from the call log: in order of arrival, each request ended a
    # whole generation after the one before it.
    calllog = fake_server.services().calllog
    rows = [calllog.get(r.json()["id"]) for r in responses]
    ends = [row.created + row.latency_ms / 1000 for row in rows if row is not None]
    assert len(ends) == count
    gaps = [b - a for a, b in itertools.pairwise(ends)]
    assert all(gap >= 0.8 * each for gap in gaps), gaps


def test_client_disconnect_mid_stream_frees_the_slot(
    server_factory: Callable[..., LiveServer],
) -> None:
    live, engine = long_server(server_factory)
    calllog = live.services().calllog
    with httpx.Client(base_url=live.base_url, timeout=10) as client:
        with client.stream(
            "POST", "/chat/completions", json=chat_body("fake-long", stream=True)
        ) as resp:
            events = content_events(resp.iter_lines())
            first, second = next(events), next(events)
            assert engine.active == 1
        closed = time.monotonic()  # leaving the block closed the connection mid-stream
        call_id = first["id"]
        assert second["id"] == call_id
        remaining = (LONG_COUNT - 2) * SLOW_DELAY  # what the first stream still had to do

        wait_until(lambda: engine.active == 0, timeout=remaining / 3, what="generation stopped")
        with client.stream(
            "POST", "/chat/completions", json=chat_body("fake-long", stream=True, max_tokens=2)
        ) as resp:
            events = content_events(resp.iter_lines())
            text = next(events)["choices"][0]["delta"]["content"]
            first_token = time.monotonic() - closed
            text += "".join(e["choices"][0]["delta"]["content"] for e in events)
    # The next request got the slot at once rather than after the abandoned generation.
    assert first_token < remaining / 2, (first_token, remaining)
    assert text == "w0 w1"

    wait_until(lambda: calllog.get(call_id) is not None, what="call log row")
    row = calllog.get(call_id)
    assert row is not None
    assert row.status == "cancelled" and row.stream
    assert 2 <= row.completion_tokens < LONG_COUNT
    assert row.prompt_tokens > 0


def test_closing_an_sdk_stream_cancels_the_generation(
    server_factory: Callable[..., LiveServer],
) -> None:
    live, engine = long_server(server_factory)
    client = openai.OpenAI(base_url=live.base_url, api_key="x", max_retries=0)
    stream = client.chat.completions.create(
        model="fake-long", messages=[{"role": "user", "content": "x"}], stream=True
    )
    chunk_id = next(iter(stream)).id
    stream.close()
    wait_until(lambda: engine.active == 0, timeout=1.0, what="stop within a second")
    calllog = live.services().calllog
    wait_until(lambda: calllog.get(chunk_id) is not None, what="call log row")
    row = calllog.get(chunk_id)
    assert row is not None and row.status == "cancelled"


def test_streamed_tokens_are_sent_as_they_are_generated(
    server_factory: Callable[..., LiveServer],
) -> None:
    """The gap between the role chunk (sent once the first token exists) and the first
    content chunk should be transport time, not one more token's generation time."""
    delay = 0.15
    config = FAKE_MODELS + '\n[models.paced]\nengine = "fake"\nscript = ["a b c"]\n'
    config += f"delay = {delay}\nparallel = 1\n"
    live = server_factory(config, served=["paced"])
    with httpx.stream(
        "POST", live.base_url + "/chat/completions", json=chat_body("paced", stream=True)
    ) as resp:
        arrivals = [(time.monotonic(), event) for event in sse_events(resp.iter_lines())]
    role_at = arrivals[0][0]
    first_content_at = next(t for t, e in arrivals if e["choices"][0]["delta"].get("content"))
    assert first_content_at - role_at < delay / 2


def test_client_disconnect_during_a_whole_response_frees_the_slot(
    server_factory: Callable[..., LiveServer],
) -> None:
    """A non-streamed request whose client gives up stops generating within a second."""
    live, engine = long_server(server_factory)
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(live.base_url + "/chat/completions", json=chat_body("fake-long"), timeout=0.3)
    # 80 tokens at 0.05 s would run ~4 s; the disconnect must stop it within 1 s.
    wait_until(lambda: engine.active == 0, timeout=1.0, what="generation stopped")

    # The row is written once the engine has let go, a moment after it stops.
    def cancelled() -> list[Any]:
        return [r for r in live.services().calllog.recent(5) if r.status == "cancelled"]

    wait_until(lambda: bool(cancelled()), what="the cancelled call's row")
    assert cancelled()[0].completion_tokens < LONG_COUNT
