"""Tool calls out of a local model's text, in the shapes models actually write them.

Chat templates teach their own format: Qwen 2.5 and Hermes wrap a JSON object in
``<tool_call>…</tool_call>``; Llama 3.x writes ``<|python_tag|>`` or a bare object with
``parameters``; Mistral writes ``[TOOL_CALLS] [...]``. Small models often ignore the format
and answer with a fenced or bare JSON object (``{"name": ..., "arguments": {...}}``) or a
list of them. ``parse`` finds all of these. Only functions the request declared count as
calls, so an ordinary JSON answer is never mistaken for one; ``arguments`` always comes out
as a JSON string (``"{}"`` for none).

``ToolStream`` does the same on a stream: text that may be the start of a call is held back
until it is decided, so no call text leaks into ``content``.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Collection, Iterable
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

from hearth.types import ChatRequest, Delta, ToolCallDelta, ToolSpec

TAGS = (("<tool_call>", "</tool_call>"), ("<function_call>", "</function_call>"))
PREFIXES = ("<|python_tag|>", "[TOOL_CALLS]")
_FENCE = re.compile(r"```[ \t]*(?:json|tool_call|tool_code|javascript)?[ \t]*\n?(.*?)```", re.S)
_TAGGED = re.compile("|".join(f"{re.escape(a)}(.*?)(?:{re.escape(b)}|$)" for a, b in TAGS), re.S)


@dataclass(frozen=True)
class ParsedCall:
    id: str
    name: str
    arguments: str  # a JSON object, as text


def new_call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


def parse(text: str, tools: Collection[str]) -> tuple[str, list[ParsedCall]]:
    """``(content left, calls)``. With no call found the text comes back unchanged."""
    if not tools or not text.strip():
        return text, []
    tagged = list(_TAGGED.finditer(text))
    if tagged:
        calls = _calls(
            (next(g for g in m.groups() if g is not None) for m in tagged), tools, loose=True
        )
        if calls:
            rest = _TAGGED.sub("", text)
            return rest.strip(), calls
    stripped = text.strip()
    for prefix in PREFIXES:
        at = stripped.find(prefix)
        if at >= 0:
            calls = _calls([stripped[at + len(prefix) :]], tools, loose=True)
            if calls:
                return stripped[:at].strip(), calls
    fences = list(_FENCE.finditer(text))
    if fences:
        calls = _calls((m.group(1) for m in fences), tools)
        if calls:
            return _FENCE.sub("", text).strip(), calls
    calls = _calls([stripped], tools)
    if calls:
        return "", calls
    return text, []


def _calls(
    blobs: Iterable[str], tools: Collection[str], *, loose: bool = False
) -> list[ParsedCall]:
    """The calls in JSON ``blobs``; all of them must be calls to declared tools, or none
    counts (a fenced block of ordinary JSON stays content)."""
    out: list[ParsedCall] = []
    for blob in blobs:
        values = _json_values(blob.strip(), loose=loose)
        if values is None:
            return []
        for value in values:
            call = _call(value, tools)
            if call is None:
                return []
            out.append(call)
    return out


def _json_values(blob: str, *, loose: bool) -> list[Any] | None:
    """One JSON value (an object or a list of objects), or several objects one after
    another (one per line, as some models write parallel calls)."""
    decoder = json.JSONDecoder()
    values: list[Any] = []
    at = 0
    while at < len(blob):
        while at < len(blob) and blob[at] in " \t\r\n,;":
            at += 1
        if at >= len(blob):
            break
        try:
            value, at = decoder.raw_decode(blob, at)
        except ValueError:
            if loose and values:
                break  # trailing chatter after the calls of an explicit format
            return None
        values.extend(value if isinstance(value, list) else [value])
    return values or None


def _call(value: Any, tools: Collection[str]) -> ParsedCall | None:
    if not isinstance(value, dict):
        return None
    if isinstance(value.get("function"), dict):  # {"type": "function", "function": {...}}
        value = value["function"]
    name = value.get("name")
    if not isinstance(name, str) or name.strip() not in tools:
        return None
    args = value.get("arguments", value.get("parameters", {}))
    if isinstance(args, str):
        try:
            args = json.loads(args) if args.strip() else {}
        except ValueError:
            return None
    if args is None:
        args = {}
    if not isinstance(args, dict):
        return None
    return ParsedCall(new_call_id(), name.strip(), json.dumps(args, ensure_ascii=False))


_STARTS = tuple(a for a, _ in TAGS) + PREFIXES + ("```",)
_CALL_FENCES = ("", "json", "tool_call", "tool_code", "javascript")


def _hold_from(text: str, *, opening: bool) -> int | None:
    """Where text that may be a call starts: a marker (or the start of one cut off at the
    end), or everything when the answer so far (``opening``) starts like JSON."""
    lead = text.lstrip()
    if opening and (lead.startswith(("{", "[")) or any(m.startswith(lead) for m in _STARTS)):
        return 0 if lead else None
    found = [at for m in _STARTS if (at := text.find(m)) >= 0]
    if found:
        return min(found)
    for marker in _STARTS:
        for n in range(min(len(marker) - 1, len(text)), 0, -1):
            if text.endswith(marker[:n]):
                found.append(len(text) - n)
                break
    return min(found) if found else None


class ToolStream:
    """Splits a stream of text into content that is safe to show now and, at the end, the
    tool calls. ``feed`` returns the content to send; ``finish`` the rest and the calls.
    A fenced block in another language (```python) is content and streams as it comes."""

    def __init__(self, tools: Collection[str]) -> None:
        self.tools = tools
        self._sent = ""  # content released so far
        self._held = ""
        self._code = False  # inside a fenced block that is not a call

    def feed(self, text: str) -> str:
        if not self.tools:
            return text
        self._held += text
        out = ""
        while self._held:
            if self._code:
                end = self._held.find("```")
                if end < 0:
                    keep = len(self._held) - len(self._held.rstrip("`"))
                    cut = len(self._held) - keep
                    out, self._held = out + self._held[:cut], self._held[cut:]
                    break
                out, self._held = out + self._held[: end + 3], self._held[end + 3 :]
                self._code = False
                continue
            at = _hold_from(self._held, opening=not (self._sent + out).strip())
            if at is None:
                out, self._held = out + self._held, ""
                break
            out, self._held = out + self._held[:at], self._held[at:]
            if self._held.startswith("```"):
                line = self._held.find("\n")
                if line < 0:
                    break  # the fence's language is not known yet
                if self._held[3:line].strip().lower() not in _CALL_FENCES:
                    out, self._held = out + self._held[: line + 1], self._held[line + 1 :]
                    self._code = True
                    continue
            break
        self._sent += out
        return out

    def finish(self) -> tuple[str, list[ParsedCall]]:
        """``(content not sent yet, calls)``; held text that is no call is content."""
        held, self._held = self._held, ""
        if not held:
            return "", []
        rest, calls = parse(held, self.tools)
        if not calls:
            return held, []
        return rest, calls


def argument_pieces(arguments: str, size: int = 16) -> list[str]:
    """``arguments`` in pieces, as a stream would carry them; they join back exactly."""
    return [arguments[i : i + size] for i in range(0, len(arguments), size)] or [""]


async def extract(
    chunks: AsyncGenerator[Delta, None], request: ChatRequest
) -> AsyncGenerator[Delta, None]:
    # Closing this stream closes the engine's now (a client gone must free its slot).
    async with aclosing(chunks):
        async for chunk in _extract(chunks, request):
            yield chunk


async def _extract(chunks: AsyncIterator[Delta], request: ChatRequest) -> AsyncIterator[Delta]:
    """A chat stream with the calls in its text turned into tool-call deltas (id and name,
    then the arguments in pieces) and ``finish_reason: "tool_calls"``; the rest of the text
    streams as content. Without callable tools the stream passes through unchanged."""
    names = {t.name for t in request.callable_tools}
    if not names:
        async for chunk in chunks:
            yield chunk
        return
    streams: dict[int, ToolStream] = {}
    async for chunk in chunks:
        if chunk.usage is not None or chunk.tool_call is not None:
            yield chunk
            continue
        stream = streams.setdefault(chunk.index, ToolStream(names))
        if chunk.text:
            shown = stream.feed(chunk.text)
            if shown:
                yield Delta(index=chunk.index, text=shown, logprobs=chunk.logprobs)
        if chunk.finish_reason is None:
            continue
        rest, calls = stream.finish()
        if rest:
            yield Delta(index=chunk.index, text=rest)
        if not request.parallel_tool_calls:
            calls = calls[:1]
        for k, call in enumerate(calls):
            yield Delta(index=chunk.index, tool_call=ToolCallDelta(k, call.id, call.name))
            for piece in argument_pieces(call.arguments):
                yield Delta(index=chunk.index, tool_call=ToolCallDelta(k, arguments=piece))
        finish = "tool_calls" if calls and chunk.finish_reason == "stop" else chunk.finish_reason
        yield Delta(index=chunk.index, finish_reason=finish)


def call_schema(request: ChatRequest) -> dict[str, Any] | None:
    """For ``tool_choice`` required or named: the JSON Schema of one call to a callable
    tool (its name as a constant, its parameters as the arguments), for an engine that
    constrains decoding with it. None when the model may also answer in text."""
    tools = request.callable_tools
    if request.tool_choice != "required" or not tools:
        return None
    shapes = [
        {
            "type": "object",
            "properties": {
                "name": {"const": t.name},
                "arguments": _arguments_schema(t.parameters),
            },
            "required": ["name", "arguments"],
            "additionalProperties": False,
        }
        for t in tools
    ]
    return shapes[0] if len(shapes) == 1 else {"anyOf": shapes}


_NO_ARGUMENTS = {"type": "object", "properties": {}, "additionalProperties": False}
_OPEN_KEYS = ("properties", "additionalProperties", "patternProperties", "anyOf", "oneOf", "allOf")


def _arguments_schema(parameters: dict[str, Any]) -> dict[str, Any]:
    """A function that declares no parameters (none, or an object without properties)
    takes none: its arguments are ``{}``, not whatever the model makes up."""
    if not parameters or not any(parameters.get(k) for k in _OPEN_KEYS):
        return _NO_ARGUMENTS
    return parameters


def wire_tools(request: ChatRequest) -> list[dict[str, Any]]:
    """The callable tools as OpenAI's ``tools`` (what chat templates render)."""
    return [wire_tool(t) for t in request.callable_tools]


def wire_tool(t: ToolSpec) -> dict[str, Any]:
    """One tool as an entry of OpenAI's ``tools``."""
    return {
        "type": "function",
        "function": {
            "name": t.name,
            "description": t.description,
            "parameters": t.parameters or {"type": "object", "properties": {}},
        },
    }
