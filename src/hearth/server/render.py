"""Domain chunks to OpenAI JSON for chat and text completions, streamed or whole."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hearth.types import Delta, TokenLogprob, Usage


def usage_json(usage: Usage, details: dict[str, Any] | None = None) -> dict[str, Any]:
    """OpenAI's usage; ``details`` (memory's budget) ride in ``prompt_tokens_details``."""
    out: dict[str, Any] = {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
    }
    if details:
        out["prompt_tokens_details"] = {"cached_tokens": 0, **details}
    return out


def _chat_logprobs(lps: list[TokenLogprob]) -> dict[str, Any]:
    return {
        "content": [
            {
                "token": t.token,
                "logprob": t.logprob,
                "bytes": t.bytes,
                "top_logprobs": [
                    {"token": x.token, "logprob": x.logprob, "bytes": x.bytes} for x in t.top
                ],
            }
            for t in lps
        ]
    }


def _text_logprobs(lps: list[TokenLogprob]) -> dict[str, Any]:
    return {
        "tokens": [t.token for t in lps],
        "token_logprobs": [t.logprob for t in lps],
        "top_logprobs": [{x.token: x.logprob for x in t.top} for t in lps],
    }


@dataclass
class Choice:
    text: str = ""
    finish_reason: str | None = None
    logprobs: list[TokenLogprob] = field(default_factory=list)
    tool_calls: dict[int, dict[str, str]] = field(default_factory=dict)  # index -> id, name, args

    def wire_tool_calls(self) -> list[dict[str, Any]]:
        return [
            {
                "id": c["id"],
                "type": "function",
                "function": {"name": c["name"], "arguments": c["arguments"] or "{}"},
            }
            for _, c in sorted(self.tool_calls.items())
        ]


@dataclass
class Renderer:
    """Builds the JSON for one request: ``kind`` is "chat" or "completion"."""

    kind: str
    id: str
    created: int
    model: str
    n: int = 1
    echo: str = ""  # completions with echo=true: the prompt, before each choice's text
    choices: dict[int, Choice] = field(default_factory=dict)
    usage: Usage | None = None
    details: dict[str, Any] | None = None  # memory's budget, reported with the usage

    @property
    def text(self) -> str:
        """The first choice's text so far."""
        return self.choices[0].text if 0 in self.choices else ""

    @property
    def object(self) -> str:
        return "chat.completion" if self.kind == "chat" else "text_completion"

    def _envelope(self, choices: list[dict[str, Any]], *, stream: bool) -> dict[str, Any]:
        obj = self.object + (".chunk" if stream and self.kind == "chat" else "")
        return {
            "id": self.id,
            "object": obj,
            "created": self.created,
            "model": self.model,
            "system_fingerprint": None,
            "choices": choices,
        }

    def add(self, chunk: Delta) -> None:
        """Fold a chunk into the running totals (for whole responses and the call log)."""
        if chunk.usage is not None:
            self.usage = chunk.usage
            return
        choice = self.choices.setdefault(chunk.index, Choice())
        choice.text += chunk.text
        if chunk.tool_call is not None:
            call = chunk.tool_call
            entry = choice.tool_calls.setdefault(
                call.index, {"id": "", "name": "", "arguments": ""}
            )
            entry["id"] = call.id or entry["id"]
            entry["name"] = call.name or entry["name"]
            entry["arguments"] += call.arguments
        if chunk.logprobs:
            choice.logprobs.extend(chunk.logprobs)
        if chunk.finish_reason:
            choice.finish_reason = chunk.finish_reason

    def opening(self) -> list[dict[str, Any]]:
        """Chat streams start with the assistant role, once per choice."""
        if self.kind != "chat":
            if not self.echo:
                return []
            return [
                self._envelope(
                    [{"index": i, "text": self.echo, "logprobs": None, "finish_reason": None}],
                    stream=True,
                )
                for i in range(self.n)
            ]
        return [
            self._envelope(
                [
                    {
                        "index": i,
                        "delta": {"role": "assistant", "content": ""},
                        "logprobs": None,
                        "finish_reason": None,
                    }
                ],
                stream=True,
            )
            for i in range(self.n)
        ]

    def stream_chunk(self, chunk: Delta) -> dict[str, Any]:
        if self.kind == "chat":
            delta: dict[str, Any] = {"content": chunk.text} if chunk.text else {}
            if chunk.tool_call is not None:
                call = chunk.tool_call
                wire: dict[str, Any] = {"index": call.index}
                if call.id is not None:
                    wire["id"], wire["type"] = call.id, "function"
                function: dict[str, str] = {"arguments": call.arguments}
                if call.name is not None:
                    function["name"] = call.name
                wire["function"] = function
                delta["tool_calls"] = [wire]
            lp = _chat_logprobs(chunk.logprobs) if chunk.logprobs else None
            choice: dict[str, Any] = {"index": chunk.index, "delta": delta, "logprobs": lp}
        else:
            lp = _text_logprobs(chunk.logprobs) if chunk.logprobs else None
            choice = {"index": chunk.index, "text": chunk.text, "logprobs": lp}
        choice["finish_reason"] = chunk.finish_reason
        return self._envelope([choice], stream=True)

    def usage_chunk(self, usage: Usage) -> dict[str, Any]:
        out = self._envelope([], stream=True)
        out["usage"] = usage_json(usage, self.details)
        return out

    def whole(self) -> dict[str, Any]:
        choices = []
        for index in sorted(self.choices):
            c = self.choices[index]
            if self.kind == "chat":
                lp = _chat_logprobs(c.logprobs) if c.logprobs else None
                message: dict[str, Any] = {"role": "assistant", "content": c.text}
                if c.tool_calls:
                    message["content"] = c.text.strip() or None
                    message["tool_calls"] = c.wire_tool_calls()
                choices.append(
                    {
                        "index": index,
                        "message": message,
                        "logprobs": lp,
                        "finish_reason": c.finish_reason or "stop",
                    }
                )
            else:
                lp = _text_logprobs(c.logprobs) if c.logprobs else None
                choices.append(
                    {
                        "index": index,
                        "text": self.echo + c.text,
                        "logprobs": lp,
                        "finish_reason": c.finish_reason or "stop",
                    }
                )
        out = self._envelope(choices, stream=False)
        out["usage"] = usage_json(self.usage or Usage(), self.details)
        return out
