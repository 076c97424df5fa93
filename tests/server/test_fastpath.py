"""The generation routes' fast path (``hearth.server.fastpath``) answers what FastAPI's
route answers: well-formed requests are served by it, everything else is handed on and gets
FastAPI's own error, word for word."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from hearth.server import fastpath
from tests.conftest import LiveServer
from tests.server.helpers import REPLY, assert_openai_error, chat_body, sse_events


@pytest.fixture(scope="module")
def http(fake_server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fake_server.url, timeout=10) as client:
        yield client


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The models of the requests the fast path handled itself (the real handler runs)."""
    seen: list[str] = []
    real = fastpath.handle

    async def spy(body: Any, *args: Any) -> Any:
        seen.append(body.model)
        return await real(body, *args)

    monkeypatch.setattr(fastpath, "handle", spy)
    return seen


# JSON to FastAPI (a +json subtype), not to the fast path (application/json only)
SLOW = "application/vnd.example+json"


def post(http: httpx.Client, path: str, raw: bytes, ctype: str | None) -> httpx.Response:
    headers = {"content-type": ctype} if ctype else {}
    return http.post(path, content=raw, headers=headers)


def _same(fast: httpx.Response, slow: httpx.Response) -> None:
    assert fast.status_code == slow.status_code, (fast.text, slow.text)
    a, b = fast.json(), slow.json()
    for body in (a, b):
        body.pop("id", None)
        body.pop("created", None)
    assert a == b
    for header in ("content-type", "x-should-retry", "retry-after"):
        assert fast.headers.get(header) == slow.headers.get(header)


def test_a_well_formed_request_is_served_as_fastapi_serves_it(
    http: httpx.Client, served: list[str]
) -> None:
    raw = json.dumps(chat_body(seed=1)).encode()
    fast = post(http, "/v1/chat/completions", raw, "application/json; charset=utf-8")
    assert served == ["fake"]
    slow = post(http, "/v1/chat/completions", raw, SLOW)
    assert served == ["fake"]
    _same(fast, slow)
    assert fast.json()["choices"][0]["message"]["content"] == REPLY

    raw = json.dumps({"model": "fake", "prompt": "hi", "max_tokens": 3}).encode()
    _same(post(http, "/v1/completions", raw, "application/json"),
          post(http, "/v1/completions", raw, SLOW))  # fmt: skip
    assert served == ["fake", "fake"]


def test_streams_through_the_fast_path(http: httpx.Client, served: list[str]) -> None:
    body = chat_body(stream=True, stream_options={"include_usage": True})
    with http.stream("POST", "/v1/chat/completions", json=body) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        events = list(sse_events(resp.iter_lines()))
    assert served == ["fake"]
    text = "".join(e["choices"][0]["delta"].get("content") or "" for e in events if e["choices"])
    assert text == REPLY
    assert events[-1]["usage"]["completion_tokens"] > 0


JSON = "application/json"
BAD: list[tuple[bytes, str | None]] = [
    (b"", "application/json"),
    (b"{not json", "application/json"),
    (b"[1, 2]", "application/json"),
    (b'"a string"', "application/json"),
    (json.dumps({"model": "fake"}).encode(), "application/json"),
    (json.dumps(chat_body(temperature="hot")).encode(), "application/json"),
    (json.dumps(chat_body(n=0)).encode(), "application/json"),
    (json.dumps({"model": "fake", "messages": [{"role": "pirate"}]}).encode(), "application/json"),
    (b'{"model": "fake", "messages": [{"role": "user", "content": "\\ud800"}]}', JSON),
    (b"\xff\xfe not utf-8", "application/json"),
    (b"[" * 100_000, "application/json"),  # nested past the parser's recursion limit
    (json.dumps(chat_body()).encode(), "text/plain"),
    (json.dumps(chat_body(model="no-such-model")).encode(), "application/json"),
]


@pytest.mark.parametrize(("raw", "ctype"), BAD)
def test_bad_requests_get_fastapis_errors(
    http: httpx.Client, served: list[str], raw: bytes, ctype: str | None
) -> None:
    fast = post(http, "/v1/chat/completions", raw, ctype)
    slow = post(http, "/v1/chat/completions", raw, SLOW)
    assert fast.status_code in (400, 404, 413), fast.text
    assert_openai_error(fast, fast.status_code)
    if ctype == "application/json":
        _same(fast, slow)
    # only a request that validates reaches the fast path's handler
    assert served == (["no-such-model"] if b"no-such-model" in raw else [])


def test_a_body_over_the_limit_is_413_while_it_is_read(
    http: httpx.Client, fake_server: LiveServer, served: list[str]
) -> None:
    limit = fake_server.settings.max_body_bytes
    big = json.dumps(chat_body(content="x" * (limit + 10))).encode()

    def chunks() -> Iterator[bytes]:  # no content-length: the limit counts as it reads
        for i in range(0, len(big), 8192):
            yield big[i : i + 8192]

    resp = http.post(
        "/v1/chat/completions", content=chunks(), headers={"content-type": "application/json"}
    )
    assert_openai_error(resp, 413, "payload_too_large")
    assert "max_body_bytes" in resp.json()["error"]["message"]
    assert served == []


def test_auth_errors_are_the_same(server_factory: Any) -> None:
    live = server_factory(auth=True)
    raw = json.dumps(chat_body()).encode()
    with httpx.Client(base_url=live.url, timeout=10) as client:
        for headers in ({}, {"authorization": "Bearer hk-wrong"}, {"api-key": "hk-wrong"}):
            fast = client.post("/v1/chat/completions", content=raw,
                               headers={**headers, "content-type": "application/json"})  # fmt: skip
            slow = client.post("/v1/chat/completions", content=raw,
                               headers={**headers, "content-type": SLOW})  # fmt: skip
            assert_openai_error(fast, 401, "invalid_api_key")
            _same(fast, slow)
