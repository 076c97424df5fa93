"""Answering from a knowledge base: fit the retrieved chunks into the model's context by its
own token count, ask it to answer only from them, and keep the numbered sources."""

from __future__ import annotations

import re
from dataclasses import dataclass

from hearth.engines.base import Engine, count_chat_tokens
from hearth.rag.retrieve import Result
from hearth.types import Message

_CJK = re.compile(r"[\u3400-\u9fff]")

SYSTEM = {
    "zh": "你是一个严谨的助手。只根据用户提供的资料回答问题，并在句末用 [编号] 标注所依据的资料。"
    "如果资料里没有答案，就直接说资料中没有相关信息，不要编造。",
    "en": "You are a careful assistant. Answer only from the sources the user provides and "
    "cite them as [n] after each statement. If the answer is not in the sources, say so "
    "plainly; do not make anything up.",
}
HEAD = {"zh": ("资料：", "问题："), "en": ("Sources:", "Question:")}


@dataclass(frozen=True)
class AnswerPrompt:
    messages: list[Message]
    sources: list[Result]  # the chunks that made it into the prompt, numbered from 1
    prompt_tokens: int
    max_tokens: int  # room left for the answer


def language(text: str) -> str:
    return "zh" if _CJK.search(text) else "en"


def _messages(question: str, sources: list[Result]) -> list[Message]:
    lang = language(question)
    if not sources:
        return [Message("user", question)]
    heading, ask = HEAD[lang]
    body = "\n\n".join(f"[{i}] ({r.citation()})\n{r.chunk.text}" for i, r in enumerate(sources, 1))
    return [
        Message("system", SYSTEM[lang]),
        Message("user", f"{heading}\n{body}\n\n{ask}{question}"),
    ]


async def build_prompt(
    engine: Engine, question: str, results: list[Result], *, max_tokens: int
) -> AnswerPrompt:
    """Keep the best-ranked chunks that fit: context = prompt + sources + the answer.
    The answer gets at most half the context, so sources always have room."""
    max_tokens = min(max_tokens, engine.context_length // 2)
    budget = engine.context_length - max_tokens
    chosen: list[Result] = []
    used = await count_chat_tokens(engine, _messages(question, chosen))
    for result in results:
        trial = [*chosen, result]
        tokens = await count_chat_tokens(engine, _messages(question, trial))
        if tokens > budget:
            continue  # a later, shorter chunk may still fit
        chosen, used = trial, tokens
    return AnswerPrompt(_messages(question, chosen), chosen, used, max_tokens)
