"""Every call is logged once with its tokens and cost; /metrics and /health tell the same story."""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import LiveServer
from tests.server.helpers import (
    assert_openai_error,
    chat_body,
    model_state,
    sse_events,
    wait_until,
)

PRICE_IN, PRICE_OUT = 0.5, 1.5  # model "fake", per 1,000 tokens


def sample(metrics: str, name: str, **labels: str) -> float:
    """The value of one Prometheus sample; fails when it is missing."""
    for family in text_string_to_metric_families(metrics):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    raise AssertionError(f"no sample {name}{labels} in /metrics")


@pytest.fixture
def traffic(server_factory: Callable[..., LiveServer]) -> tuple[LiveServer, dict[str, Any]]:
    """A fresh server (its own call log) after a known set of requests."""
    live = server_factory(served=["fake", "fake-slow", "fake-embed"])
    with httpx.Client(base_url=live.base_url, timeout=10) as http:
        chat = http.post("/chat/completions", json=chat_body(content="hello")).json()
        with http.stream(
            "POST",
            "/chat/completions",
            json=chat_body(content="again", stream=True, stream_options={"include_usage": True}),
        ) as resp:
            events = list(sse_events(resp.iter_lines()))
        completion = http.post("/completions", json={"model": "fake", "prompt": "Once"}).json()
        embedding = http.post("/embeddings", json={"model": "fake-embed", "input": ["a b", "c"]})
        too_long = http.post("/chat/completions", json=chat_body(content="word " * 300))
    assert_openai_error(too_long, 400, "context_length_exceeded")
    stream_id = events[0]["id"]
    calllog = live.services().calllog
    # A stream's row is written as the stream closes, which may be just after [DONE].
    wait_until(lambda: calllog.get(stream_id) is not None, what="stream row")
    return live, {
        "chat": chat,
        "stream": {"id": stream_id, "usage": events[-1]["usage"]},
        "completion": completion,
        "embedding": embedding.json(),
    }


def test_one_row_per_request_with_the_responses_usage_and_cost(
    traffic: tuple[LiveServer, dict[str, Any]],
) -> None:
    live, answers = traffic
    calllog = live.services().calllog
    rows = calllog.recent(100)
    assert len(rows) == 5
    assert len({r.id for r in rows}) == 5

    expected = {
        "chat": ("chat.completions", False),
        "stream": ("chat.completions", True),
        "completion": ("completions", False),
    }
    for name, (endpoint, stream) in expected.items():
        answer = answers[name]
        row = calllog.get(answer["id"])
        assert row is not None, name
        assert (row.model, row.endpoint, row.stream, row.status) == ("fake", endpoint, stream, "ok")
        assert row.error is None
        assert row.prompt_tokens == answer["usage"]["prompt_tokens"] > 0
        assert row.completion_tokens == answer["usage"]["completion_tokens"] > 0
        cost = (row.prompt_tokens * PRICE_IN + row.completion_tokens * PRICE_OUT) / 1000
        assert row.cost == pytest.approx(cost)
        assert row.latency_ms > 0

    streamed = calllog.get(answers["stream"]["id"])
    assert streamed is not None and streamed.ttft_ms is not None
    assert 0 < streamed.ttft_ms <= streamed.latency_ms

    [embedded] = [r for r in rows if r.endpoint == "embeddings"]
    assert embedded.model == "fake-embed" and embedded.status == "ok"
    assert embedded.prompt_tokens == answers["embedding"]["usage"]["prompt_tokens"] == 3
    assert embedded.completion_tokens == 0 and embedded.cost == 0


def test_a_context_error_is_logged_as_an_error_row(
    traffic: tuple[LiveServer, dict[str, Any]],
) -> None:
    live, _ = traffic
    [failed] = [r for r in live.services().calllog.recent(100) if r.status == "error"]
    assert failed.model == "fake" and failed.endpoint == "chat.completions"
    assert failed.error is not None and "maximum context length is 256" in failed.error
    assert (failed.prompt_tokens, failed.completion_tokens, failed.cost) == (0, 0, 0)

    [today] = [u for u in live.services().calllog.usage() if u.model == "fake"]
    assert today.day == datetime.datetime.now(datetime.UTC).date().isoformat()
    assert (today.calls, today.errors) == (4, 1)


def test_metrics_count_requests_tokens_and_latency(
    traffic: tuple[LiveServer, dict[str, Any]],
) -> None:
    live, answers = traffic
    resp = httpx.get(live.url + "/metrics")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/plain")
    text = resp.text
    for name in (
        "hearth_requests_total",
        "hearth_tokens_total",
        "hearth_request_latency_seconds",
        "hearth_time_to_first_token_seconds",
        "hearth_queue_depth",
        "hearth_active_requests",
    ):
        assert name in text

    def requests(model: str, endpoint: str, status: str) -> float:
        return sample(text, "hearth_requests_total", model=model, endpoint=endpoint, status=status)

    assert requests("fake", "chat.completions", "ok") == 2
    assert requests("fake", "chat.completions", "error") == 1
    assert requests("fake", "completions", "ok") == 1
    assert requests("fake-embed", "embeddings", "ok") == 1

    answered = [answers[k]["usage"] for k in ("chat", "stream", "completion")]
    prompt = sum(u["prompt_tokens"] for u in answered)
    completion = sum(u["completion_tokens"] for u in answered)
    assert sample(text, "hearth_tokens_total", model="fake", kind="prompt") == prompt
    assert sample(text, "hearth_tokens_total", model="fake", kind="completion") == completion

    latency = "hearth_request_latency_seconds_count"
    assert sample(text, latency, model="fake", endpoint="chat.completions") == 3
    assert sample(text, "hearth_time_to_first_token_seconds_count", model="fake") == 1
    assert sample(text, "hearth_queue_depth", model="fake") == 0
    assert sample(text, "hearth_active_requests", model="fake") == 0


def test_health_lists_the_served_models(traffic: tuple[LiveServer, dict[str, Any]]) -> None:
    live, _ = traffic
    body = httpx.get(live.url + "/health").json()
    assert body["status"] == "ok"
    assert [(m["id"], m["loaded"]) for m in body["models"]] == [
        ("fake", True),
        ("fake-slow", False),
        ("fake-embed", True),
    ]
    assert all(m["active"] == 0 and m["queued"] == 0 for m in body["models"])


async def test_queue_depth_shows_a_waiting_request(fake_server: LiveServer) -> None:
    body = chat_body("fake-slow", max_tokens=3)
    async with httpx.AsyncClient(base_url=fake_server.base_url, timeout=10) as client:
        running = asyncio.create_task(client.post("/chat/completions", json=body))
        queued = asyncio.create_task(client.post("/chat/completions", json=body))

        def both_held() -> bool:
            state = model_state(fake_server.url, "fake-slow")
            return bool(state["active"] == 1 and state["queued"] == 1)

        await asyncio.to_thread(wait_until, both_held, 3, "one running, one queued")
        text = (await client.get(fake_server.url + "/metrics")).text
        assert sample(text, "hearth_queue_depth", model="fake-slow") == 1
        assert sample(text, "hearth_active_requests", model="fake-slow") == 1
        # both generations and this scrape
        assert sample(text, "hearth_http_requests_in_flight") == 3
        assert [r.status_code for r in await asyncio.gather(running, queued)] == [200, 200]
    text = httpx.get(fake_server.url + "/metrics").text
    assert sample(text, "hearth_queue_depth", model="fake-slow") == 0
    assert sample(text, "hearth_http_requests_in_flight") == 1  # the scrape alone
