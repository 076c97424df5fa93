"""Reading OpenAI-style completion chunks, which llama.cpp's server core and every remote
upstream both produce, into domain deltas."""

from __future__ import annotations

from typing import Any

from hearth.types import Delta, TokenLogprob, TopLogprob, Usage


def deltas(data: dict[str, Any], index: int | None = None) -> list[Delta]:
    """The deltas in one chat or text-completion chunk; ``index`` overrides the choice's
    own (for a stream that is one choice of several run separately)."""
    out = []
    for choice in data.get("choices") or []:
        text = choice.get("text")
        if text is None:
            text = (choice.get("delta") or {}).get("content") or ""
        lp = logprobs(choice.get("logprobs"))
        if text or lp or choice.get("finish_reason"):
            out.append(
                Delta(
                    index=choice.get("index", 0) if index is None else index,
                    text=text,
                    finish_reason=choice.get("finish_reason"),
                    logprobs=lp,
                )
            )
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
