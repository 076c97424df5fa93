"""Reading OpenAI-style completion chunks, which llama.cpp's server core and every remote
upstream both produce, into domain deltas."""

from __future__ import annotations

import json
from typing import Any

from hearth.types import Delta, TokenLogprob, ToolCallDelta, TopLogprob, Usage


def deltas(data: dict[str, Any], index: int | None = None) -> list[Delta]:
    """The deltas in one chat or text-completion chunk; ``index`` overrides the choice's
    own (for a stream that is one choice of several run separately)."""
    out = []
    for choice in data.get("choices") or []:
        at = choice.get("index", 0) if index is None else index
        delta = choice.get("delta") or {}
        text = choice.get("text")
        if text is None:
            text = delta.get("content") or ""
        calls = tool_call_deltas(delta.get("tool_calls"))
        lp = logprobs(choice.get("logprobs"))
        finish = choice.get("finish_reason")
        if text or lp or (finish and not calls):
            out.append(
                Delta(index=at, text=text, finish_reason=None if calls else finish, logprobs=lp)
            )
        for i, call in enumerate(calls):
            last = i == len(calls) - 1
            out.append(Delta(index=at, tool_call=call, finish_reason=finish if last else None))
    usage = data.get("usage")
    if usage:
        out.append(Delta(usage=Usage(usage["prompt_tokens"], usage.get("completion_tokens", 0))))
    return out


def logprobs(raw: dict[str, Any] | None) -> list[TokenLogprob] | None:
    if not raw or not raw.get("content"):
        return None
    return [
        TokenLogprob(
            token=t["token"],
            logprob=t["logprob"],
            bytes=t.get("bytes"),
            top=tuple(
                TopLogprob(x["token"], x["logprob"], x.get("bytes"))
                for x in t.get("top_logprobs") or []
            ),
        )
        for t in raw["content"]
    ]


def tool_call_deltas(raw: Any) -> list[ToolCallDelta]:
    """A chunk's ``delta.tool_calls`` as domain pieces. ``arguments`` sent as an object
    (a bug some servers have) becomes its JSON text."""
    if not isinstance(raw, list):
        return []
    out = []
    for position, call in enumerate(raw):
        if not isinstance(call, dict):
            continue
        function = call.get("function") or {}
        arguments = function.get("arguments")
        if isinstance(arguments, dict | list):
            arguments = json.dumps(arguments, ensure_ascii=False)
        index = call.get("index")
        out.append(
            ToolCallDelta(
                index=index if isinstance(index, int) else position,
                id=call.get("id") or None,
                name=function.get("name") or None,
                arguments=arguments if isinstance(arguments, str) else "",
            )
        )
    return out
