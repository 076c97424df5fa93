"""The OpenAI wire format as hearth speaks it to an upstream: the request's body, the
stream's events read and checked a batch at a time, and the upstream's error answers as
hearth's errors."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson

from hearth.engines.openai_chunks import deltas
from hearth.engines.tool_calls import wire_tool
from hearth.errors import (
    ContextLengthExceeded,
    HearthError,
    InvalidRequest,
    Overloaded,
    UpstreamError,
)
from hearth.types import ChatRequest, Delta, GenerationParams


class Broken(UpstreamError):
    """The upstream answered something that is not the OpenAI protocol."""


class MidAnswer(UpstreamError):
    """The upstream's stream carried an error event instead of the rest of its answer."""


class Events:
    """The deltas of one upstream's event stream, a list per read. Every event is checked:
    UTF-8, JSON, an object with ``choices`` (or a usage); what is not raises
    :class:`Broken`, an error event :class:`MidAnswer`. ``done`` says whether ``[DONE]``
    came."""

    def __init__(self, content: aiohttp.StreamReader, where: str) -> None:
        self.content = content
        self.where = where
        self.done = False

    async def __aiter__(self) -> AsyncIterator[list[Delta]]:
        where = self.where
        async for piece in lines(self.content, where):
            out: list[Delta] = []
            for raw in piece:
                try:
                    line = raw.decode("utf-8").rstrip("\r\n")
                except UnicodeDecodeError as e:
                    raise Broken(
                        f"{where} broke the protocol: its stream is not UTF-8 ({e.reason} "
                        f"at byte {e.start}): {raw[:200]!r}"
                    ) from e
                if line.startswith("data:") and line[5:].strip() == "[DONE]":
                    # read on to the end rather than stop: a response left unread closes
                    # its connection instead of going back to the pool
                    self.done = True
                    continue
                data = sse_data(line, where)
                if data is not None:
                    out += _event(data, where)
            if out:
                yield out


def _event(data: Any, where: str) -> list[Delta]:
    if not isinstance(data, dict):
        raise Broken(f"{where} sent an event that is not an object")
    if "error" in data:
        raise MidAnswer(f"{where} failed mid-answer: {data['error']}")
    if not isinstance(data.get("choices"), list) and not data.get("usage"):
        raise Broken(
            f"{where} broke the protocol: an event without choices: {json.dumps(data)[:200]}"
        )
    try:
        return deltas(data)
    except (KeyError, TypeError, AttributeError, ValueError) as e:
        raise Broken(
            f"{where} broke the protocol: an event hearth cannot read "
            f"({e!r}): {json.dumps(data)[:200]}"
        ) from e


def tools_body(request: ChatRequest) -> dict[str, Any]:
    """``tools``, ``tool_choice`` and ``parallel_tool_calls`` as OpenAI takes them."""
    choice: str | dict[str, Any] = request.tool_choice
    if request.tool_name is not None:
        choice = {"type": "function", "function": {"name": request.tool_name}}
    out: dict[str, Any] = {
        "tools": [wire_tool(t) for t in request.tools],
        "tool_choice": choice,
    }
    if not request.parallel_tool_calls:
        out["parallel_tool_calls"] = False
    return out


def params_body(p: GenerationParams, *, chat: bool) -> dict[str, Any]:
    out: dict[str, Any] = {
        k: v
        for k, v in (
            ("max_tokens", p.max_tokens),
            ("temperature", p.temperature),
            ("top_p", p.top_p),
            ("seed", p.seed),
            ("presence_penalty", p.presence_penalty),
            ("frequency_penalty", p.frequency_penalty),
            ("repeat_penalty", p.repeat_penalty),
        )
        if v is not None
    }
    if p.stop:
        out["stop"] = p.stop
    if p.logit_bias:
        out["logit_bias"] = {str(k): v for k, v in p.logit_bias.items()}
    if p.n != 1:
        out["n"] = p.n
    if p.logprobs:
        if chat:
            out["logprobs"] = True
            out["top_logprobs"] = p.top_logprobs
        else:
            out["logprobs"] = p.top_logprobs
    fmt = p.response_format
    if fmt and fmt["type"] == "json_schema":
        out["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "response", "schema": fmt.get("schema", {})},
        }
    elif fmt:
        out["response_format"] = {"type": fmt["type"]}
    return out


MAX_LINE = 16 * 1024 * 1024  # an event line longer than this is not an answer


async def lines(content: aiohttp.StreamReader, where: str) -> AsyncIterator[list[bytes]]:
    """The stream's lines as they arrive, a batch per read rather than an await per line
    (a fast upstream's four events came in one read: eight line reads before, one now)."""
    pending: list[bytes] = []  # the start of a line still arriving
    size = 0
    async for piece in content.iter_any():
        if b"\n" not in piece:
            pending.append(piece)
            size += len(piece)
            if size > MAX_LINE:
                raise Broken(f"{where} broke the protocol: a line of over {MAX_LINE} bytes")
            continue
        lines = (b"".join(pending) + piece if pending else piece).split(b"\n")
        rest = lines.pop()
        pending, size = ([rest], len(rest)) if rest else ([], 0)
        yield lines
    if pending:
        yield [b"".join(pending)]


def dumps(body: Any) -> str:
    try:
        return orjson.dumps(body).decode()
    except TypeError:  # what only json takes (an int past 64 bits)
        return json.dumps(body)


def sse_data(line: str, where: str) -> Any:
    if not line.startswith("data:"):
        return None
    raw = line[5:].strip()
    if not raw or raw == "[DONE]":
        return None
    try:
        return orjson.loads(raw)  # ~4x json's speed: an event per token on the hot path
    except orjson.JSONDecodeError:
        pass
    try:  # what orjson refuses and json takes: lone surrogates, NaN, ints past 64 bits
        return json.loads(raw)
    except json.JSONDecodeError as e:
        raise Broken(f"{where} sent an event that is not JSON: {raw[:200]!r}") from e


def upstream_error(status: int, body: bytes, name: str, url: str = "") -> HearthError:
    text = body.decode("utf-8", "replace")
    try:
        err = json.loads(text).get("error") or {}
    except (json.JSONDecodeError, AttributeError):
        err = {}
    message = err.get("message") if isinstance(err, dict) else str(err)
    message = message or text[:300]
    if status == 429:
        return Overloaded(f"upstream of '{name}' is overloaded: {message}")
    if status == 400 and isinstance(err, dict) and err.get("code") == "context_length_exceeded":
        e = InvalidRequest(message, param=err.get("param"))
        e.code = ContextLengthExceeded.code
        return e
    if status in (400, 413, 422):
        return InvalidRequest(f"upstream of '{name}' refused the request: {message}")
    where = f"upstream {url} of '{name}'" if url else f"upstream of '{name}'"
    return UpstreamError(f"{where} answered {status}: {message}")
