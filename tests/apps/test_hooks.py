"""Call hooks against real receivers on 127.0.0.1: a webhook endpoint and an OTLP/HTTP
collector, each a small HTTP server in a thread."""

from __future__ import annotations

import asyncio
import gzip
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from hearth.apps.hooks import CallEvent, Hooks
from hearth.config import HookSettings, load_settings
from hearth.errors import ConfigError

EVENT = CallEvent(
    id="chatcmpl-1",
    created=1_700_000_000.25,
    model="qwen2.5-0.5b-instruct",
    endpoint="chat.completions",
    status="ok",
    error=None,
    prompt_tokens=30,
    completion_tokens=12,
    latency_ms=840.5,
    ttft_ms=120.0,
    cost=0.0042,
    stream=True,
    key_id="key_1",
    app="客服",
    variant="qwen",
    prompt_version="3",
    finish_reason="stop",
    tokens={"system": 10, "knowledge": 8, "history": 4, "input": 8, "output": 12},
    moderation=[{"list": "default", "category": "abuse", "action": "mask", "direction": "output"}],
    retries=1,
)


@dataclass
class Post:
    at: float  # time.monotonic() when it arrived
    path: str
    headers: dict[str, str]  # names in lower case
    body: bytes


class Receiver(ThreadingHTTPServer):
    """Records every POST; answers the statuses in ``fail`` first, in turn, then 200."""

    def __init__(self, fail: list[int]) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.fail = fail
        self.posts: list[Post] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def json(self) -> list[dict[str, Any]]:
        return [json.loads(p.body) for p in self.posts]


class _Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        headers = {k.lower(): v for k, v in self.headers.items()}
        self.server.posts.append(Post(time.monotonic(), self.path, headers, body))
        status = self.server.fail.pop(0) if self.server.fail else 200
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        pass


@contextmanager
def receiver(fail: list[int] | None = None) -> Iterator[Receiver]:
    server = Receiver(list(fail or []))
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@contextmanager
def silent_port() -> Iterator[str]:
    """A port that accepts connections (the kernel's backlog) and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/events"
    finally:
        sock.close()


def closed_port() -> str:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return f"http://127.0.0.1:{port}/events"


def event(n: int, **changes: Any) -> CallEvent:
    return replace(EVENT, id=f"chatcmpl-{n}", **changes)


# --- the event ---------------------------------------------------------------------


def test_event_as_dict_is_the_webhook_body() -> None:
    body = EVENT.as_dict()
    assert body["type"] == "call"
    assert body["total_tokens"] == 42
    assert body["app"] == "客服"
    assert body["moderation"][0]["category"] == "abuse"
    assert json.loads(json.dumps(body)) == body


# --- webhook -----------------------------------------------------------------------


async def test_webhook_posts_each_call_as_json_with_headers() -> None:
    with receiver() as r:
        settings = HookSettings(
            webhook=r.url + "/events", webhook_headers={"Authorization": "Bearer x"}
        )
        hooks = Hooks(settings)
        assert hooks.active
        for n in range(3):
            hooks.emit(event(n))
        await hooks.aclose()
    assert [b["id"] for b in r.json()] == ["chatcmpl-0", "chatcmpl-1", "chatcmpl-2"]
    assert r.json()[0] == {**EVENT.as_dict(), "id": "chatcmpl-0"}
    assert {p.path for p in r.posts} == {"/events"}
    assert r.posts[0].headers["authorization"] == "Bearer x"
    assert r.posts[0].headers["content-type"] == "application/json"
    assert r.posts[0].headers["user-agent"].startswith("hearth/")
    assert (hooks.delivered, hooks.failed, hooks.dropped) == (3, 0, 0)


async def test_webhook_retries_5xx_with_exponential_backoff() -> None:
    with receiver(fail=[503, 503]) as r:
        hooks = Hooks(HookSettings(webhook=r.url))
        hooks.emit(EVENT)
        await hooks.aclose()
    assert len(r.posts) == 3
    first, second = (b.at - a.at for a, b in zip(r.posts, r.posts[1:], strict=False))
    assert 0.45 <= first < 0.95 and 0.95 <= second < 1.9  # 0.5 s, then 1 s
    assert [b["id"] for b in r.json()] == [EVENT.id] * 3
    assert (hooks.delivered, hooks.failed) == (1, 0)


async def test_webhook_retries_429_but_not_other_4xx() -> None:
    with receiver(fail=[429, 404, 400]) as r:
        hooks = Hooks(HookSettings(webhook=r.url), backoff=0.01)
        hooks.emit(event(1))  # 429, then 404: given up
        hooks.emit(event(2))  # 400: given up at once
        await hooks.aclose()
    assert [b["id"] for b in r.json()] == ["chatcmpl-1", "chatcmpl-1", "chatcmpl-2"]
    assert (hooks.delivered, hooks.failed) == (0, 2)


async def test_webhook_gives_up_after_its_retries_on_connection_errors() -> None:
    hooks = Hooks(HookSettings(webhook=closed_port(), webhook_retries=2), backoff=0.01)
    hooks.emit(EVENT)
    await hooks.aclose()
    assert (hooks.delivered, hooks.failed, hooks.dropped) == (0, 1, 0)


async def test_emit_never_waits_for_a_receiver_that_never_answers() -> None:
    with silent_port() as url:
        hooks = Hooks(HookSettings(webhook=url, webhook_timeout=0.2, webhook_retries=0))
        start = time.perf_counter()
        hooks.emit(EVENT)
        assert time.perf_counter() - start < 0.05
        start = time.perf_counter()
        for n in range(100):
            hooks.emit(event(n))
        assert time.perf_counter() - start < 0.05
        await asyncio.sleep(0.05)  # the worker is now stuck on its first POST
        start = time.perf_counter()
        await hooks.aclose(timeout=0.5)
        assert time.perf_counter() - start < 2  # bounded, whatever the receiver does
    assert hooks.delivered == 0
    assert hooks.failed + hooks.dropped == 101


async def test_a_full_queue_drops_the_oldest_events() -> None:
    with receiver() as r:
        hooks = Hooks(HookSettings(webhook=r.url), queue_size=2)
        for n in range(5):  # no await between: the worker has not taken any yet
            hooks.emit(event(n))
        assert hooks.dropped == 3
        await hooks.aclose()
    assert [b["id"] for b in r.json()] == ["chatcmpl-3", "chatcmpl-4"]
    assert (hooks.delivered, hooks.dropped) == (2, 3)


async def test_emit_after_close_is_dropped_and_nothing_is_configured_is_inactive() -> None:
    with receiver() as r:
        hooks = Hooks(HookSettings(webhook=r.url))
        await hooks.aclose()
        hooks.emit(EVENT)
        await asyncio.sleep(0.05)
    assert r.posts == [] and hooks.dropped == 1
    outside = Hooks(HookSettings(webhook=r.url))
    await asyncio.to_thread(outside.emit, EVENT)  # no running loop in that thread
    assert outside.dropped == 1
    quiet = Hooks(HookSettings())
    assert not quiet.active
    quiet.emit(EVENT)
    await quiet.aclose()


# --- OpenTelemetry -----------------------------------------------------------------


async def test_spans_reach_an_otlp_collector() -> None:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )
    from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

    failed = event(2, status="error", error="the engine stopped", endpoint="completions")
    with receiver() as r:
        hooks = Hooks(HookSettings(otlp_endpoint=r.url + "/", service_name="hearth-test"))
        hooks.emit(EVENT)
        hooks.emit(failed)
        hooks.emit(event(3, endpoint="embeddings", finish_reason=None, ttft_ms=None))
        await hooks.aclose()
    assert {p.path for p in r.posts} == {"/v1/traces"}
    assert r.posts[0].headers["content-type"] == "application/x-protobuf"
    resources = [
        rs for p in r.posts for rs in ExportTraceServiceRequest.FromString(p.body).resource_spans
    ]
    service = {a.key: a.value.string_value for a in resources[0].resource.attributes}
    assert service["service.name"] == "hearth-test"
    spans = {s.name: s for s in _spans(resources)}
    assert set(spans) == {
        "chat qwen2.5-0.5b-instruct",
        "text_completion qwen2.5-0.5b-instruct",
        "embeddings qwen2.5-0.5b-instruct",
    }

    chat = spans["chat qwen2.5-0.5b-instruct"]
    assert chat.kind == Span.SPAN_KIND_INTERNAL
    assert chat.start_time_unix_nano == 1_700_000_000_250_000_000
    assert chat.end_time_unix_nano == 1_700_000_000_250_000_000 + 840_500_000
    attributes = _attributes(chat)
    assert attributes == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "hearth",
        "gen_ai.system": "hearth",
        "gen_ai.request.model": "qwen2.5-0.5b-instruct",
        "gen_ai.response.model": "qwen2.5-0.5b-instruct",
        "gen_ai.response.id": "chatcmpl-1",
        "gen_ai.usage.input_tokens": 30,
        "gen_ai.usage.output_tokens": 12,
        "gen_ai.response.finish_reasons": ["stop"],
        "hearth.endpoint": "chat.completions",
        "hearth.status": "ok",
        "hearth.stream": True,
        "hearth.cost": 0.0042,
        "hearth.retries": 1,
        "hearth.moderation.hits": 1,
        "hearth.moderation.categories": ["abuse"],
        "hearth.app": "客服",
        "hearth.variant": "qwen",
        "hearth.prompt_version": "3",
        "hearth.ttft_ms": 120.0,
        "hearth.key_id": "key_1",
        "hearth.tokens.system": 10,
        "hearth.tokens.knowledge": 8,
        "hearth.tokens.history": 4,
        "hearth.tokens.input": 8,
        "hearth.tokens.output": 12,
    }
    assert chat.status.code == Status.STATUS_CODE_UNSET

    error = spans["text_completion qwen2.5-0.5b-instruct"]
    assert error.status.code == Status.STATUS_CODE_ERROR
    assert error.status.message == "the engine stopped"
    assert _attributes(error)["error.type"] == "_OTHER"
    assert _attributes(error)["gen_ai.operation.name"] == "text_completion"

    embedding = _attributes(spans["embeddings qwen2.5-0.5b-instruct"])
    assert "hearth.ttft_ms" not in embedding
    assert "gen_ai.response.finish_reasons" not in embedding


def _spans(resources: list[Any]) -> list[Any]:
    return [span for rs in resources for ss in rs.scope_spans for span in ss.spans]


def _attributes(span: Any) -> dict[str, Any]:
    def value(v: Any) -> Any:
        kind = v.WhichOneof("value")
        if kind == "array_value":
            return [value(x) for x in v.array_value.values]
        return getattr(v, kind)

    return {a.key: value(a.value) for a in span.attributes}


async def test_webhook_and_spans_together() -> None:
    with receiver() as hook, receiver() as collector:
        hooks = Hooks(HookSettings(webhook=hook.url, otlp_endpoint=collector.url))
        hooks.emit(EVENT)
        await hooks.aclose()
    assert [b["id"] for b in hook.json()] == [EVENT.id]
    assert [p.path for p in collector.posts] == ["/v1/traces"]


async def test_close_is_bounded_when_the_collector_is_down() -> None:
    hooks = Hooks(HookSettings(otlp_endpoint=closed_port().removesuffix("/events")))
    hooks.emit(EVENT)
    start = time.perf_counter()
    await hooks.aclose(timeout=0.3)
    assert time.perf_counter() - start < 2  # the exporter alone would retry for ~10 s


def test_missing_opentelemetry_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry.sdk.trace", None)
    with pytest.raises(ConfigError, match=r"pip install 'hearth\[otel\]'"):
        Hooks(HookSettings(otlp_endpoint="http://127.0.0.1:4318"))
    Hooks(HookSettings(webhook="http://127.0.0.1:9/events"))  # a webhook alone needs none


def test_opentelemetry_is_not_imported_until_asked_for() -> None:
    code = "import sys, hearth.apps.hooks; print([m for m in sys.modules if 'opentelemetry' in m])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# --- settings ----------------------------------------------------------------------


def test_hooks_settings_from_config_toml(tmp_path: Path) -> None:
    assert load_settings(home=tmp_path, env={}).hooks == HookSettings()
    (tmp_path / "config.toml").write_text(
        "[hooks]\n"
        'webhook = "http://127.0.0.1:9000/events"\n'
        'webhook_headers = { Authorization = "Bearer x" }\n'
        "webhook_timeout = 2\n"
        "webhook_retries = 0\n"
        'otlp_endpoint = "http://127.0.0.1:4318"\n'
        'service_name = "hearth-prod"\n',
        encoding="utf-8",
    )
    hooks = load_settings(home=tmp_path, env={}).hooks
    assert hooks == HookSettings(
        webhook="http://127.0.0.1:9000/events",
        webhook_headers={"Authorization": "Bearer x"},
        webhook_timeout=2.0,
        webhook_retries=0,
        otlp_endpoint="http://127.0.0.1:4318",
        service_name="hearth-prod",
    )
    assert isinstance(hooks.webhook_timeout, float)
    env = {"HEARTH_WEBHOOK": "https://hooks.example/x", "HEARTH_OTLP_ENDPOINT": ""}
    hooks = load_settings(home=tmp_path, env=env).hooks
    assert (hooks.webhook, hooks.otlp_endpoint) == ("https://hooks.example/x", None)


@pytest.mark.parametrize(
    ("toml", "env", "message"),
    [
        ('[hooks]\nwebhok = "http://x"\n', {}, r"unknown keys \['webhok'\]"),
        ("[hooks]\nwebhook = 1\n", {}, "webhook must be a URL"),
        ('[hooks]\nwebhook = "127.0.0.1:9000"\n', {}, r"must be an http\(s\):// URL"),
        ('[hooks]\nwebhook_timeout = "5"\n', {}, "webhook_timeout must be a number"),
        ("[hooks]\nwebhook_timeout = 0\n", {}, "must be > 0"),
        ("[hooks]\nwebhook_retries = 1.5\n", {}, "webhook_retries must be a whole number"),
        ("[hooks]\nwebhook_retries = true\n", {}, "webhook_retries must be a whole number"),
        ("[hooks]\nwebhook_retries = -1\n", {}, "0 or more"),
        ('[hooks]\nwebhook_headers = "x"\n', {}, "webhook_headers must be a table"),
        ("[hooks]\nwebhook_headers = { A = 1 }\n", {}, "values must be strings"),
        ('hooks = "x"\n', {}, r"must be a \[hooks\] table"),
        ("", {"HEARTH_OTLP_ENDPOINT": "localhost:4318"}, "HEARTH_OTLP_ENDPOINT"),
    ],
)
def test_hooks_settings_errors_say_what_is_wrong(
    tmp_path: Path, toml: str, env: dict[str, str], message: str
) -> None:
    (tmp_path / "config.toml").write_text(toml, encoding="utf-8")
    with pytest.raises(ConfigError, match=message):
        load_settings(home=tmp_path, env=env)
