"""Shared by the server tests: SSE parsing, the OpenAI error shape, polling with a deadline."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import httpx

REPLY = "Hello from hearth! 你好，世界。"  # the script of model "fake" in tests/conftest.py
SLOW_WORDS = 14  # tokens in the reply of "fake-slow"
SLOW_DELAY = 0.05  # its seconds per token


def chat_body(model: str = "fake", content: str = "hi", **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": content}], **extra}


def sse_events(lines: Iterable[str]) -> Iterator[dict[str, Any]]:
    """The JSON payloads of a server-sent event stream, up to ``data: [DONE]``."""
    for line in lines:
        if not line.startswith("data: "):
            continue
        data = line.removeprefix("data: ")
        if data == "[DONE]":
            return
        yield json.loads(data)
    raise AssertionError("the stream ended without data: [DONE]")


def assert_openai_error(
    resp: httpx.Response, status: int, code: str | None = None, param: str | None = None
) -> dict[str, Any]:
    """The response is ``status`` with OpenAI's error object; returns that object."""
    assert resp.status_code == status, (resp.status_code, resp.text)
    assert resp.headers["content-type"].startswith("application/json")
    body = resp.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}, error
    assert isinstance(error["message"], str) and error["message"], error
    assert isinstance(error["type"], str) and error["type"], error
    if code is not None:
        assert error["code"] == code, error
    if param is not None:
        assert error["param"] == param, error
    return dict(error)


def wait_until(check: Callable[[], bool], timeout: float = 3.0, what: str = "condition") -> None:
    """Poll ``check`` until it holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout}s")
        time.sleep(0.005)


def model_state(base: str, name: str) -> dict[str, Any]:
    """The /health entry of one model: loaded, active and queued requests."""
    models = httpx.get(base + "/health").json()["models"]
    found: dict[str, Any] = next(m for m in models if m["id"] == name)
    return found
