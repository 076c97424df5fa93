"""Questions into the other language (Chinese <-> English) by a chat model, cached.

e5 matches a question with passages in its own language far better than across languages:
on the sample set an English question finds the Chinese passage that answers it in the top
5 about two times in three. Searching with the question *and* its translation closes most
of that gap (``retrieve.search(also=...)``). A small model translates well enough when it is
shown a few examples and told not to answer; what it returns is cleaned to one line.

The model is reached through ``Chat``, a function the caller supplies (the server runs it
through the model's queue, logs the call and counts it against the caller's key), so this
module holds no engine.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable

from hearth.rag.answer import language
from hearth.rag.embed import Embedder
from hearth.rag.retrieve import Result, is_small_talk, search
from hearth.rag.stores.base import Filters, Store
from hearth.types import GenerationParams, Message

Chat = Callable[[list[Message], GenerationParams], Awaitable[str]]

_EXAMPLES = (
    ("How do I reset my password?", "如何重置我的密码？"),
    ("Which plan includes phone support?", "哪个套餐包含电话支持？"),
    ("When was the bridge built?", "这座桥是什么时候建的？"),
)
_TARGET = {"zh": "English", "en": "Simplified Chinese"}


def messages(question: str) -> list[Message]:
    """A few-shot prompt that translates ``question`` into the other language."""
    source = language(question)
    target = _TARGET[source]
    out = [
        Message(
            "system",
            f"You are a translator. Translate the user's question into {target}. "
            "Do not answer it. Output only the translated question.",
        )
    ]
    for english, chinese in _EXAMPLES:
        asked, answer = (chinese, english) if source == "zh" else (english, chinese)
        out += [Message("user", asked), Message("assistant", answer)]
    out.append(Message("user", question))
    return out


def clean(question: str, reply: str) -> str | None:
    """The translation in a model's reply, or None when there is none worth searching."""
    line = next((ln.strip() for ln in reply.strip().splitlines() if ln.strip()), "")
    line = line.strip("\"'“”「」` ")
    return line if line and line != question.strip() else None


class Translator:
    """Translations by one model, the most recent ``size`` of them kept."""

    def __init__(self, *, size: int = 4096) -> None:
        self._size = size
        self._cache: OrderedDict[str, str | None] = OrderedDict()

    async def translate(self, question: str, chat: Chat) -> str | None:
        """``question`` in the other language, asked of the model through ``chat`` unless
        it was asked before."""
        key = question.strip()
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        # A question is short; its translation is about as long. The cap stops a model that
        # starts to answer instead.
        params = GenerationParams(max_tokens=min(256, 3 * len(key) + 16), temperature=0.0)
        found = clean(key, await chat(messages(key), params))
        self._cache[key] = found
        if len(self._cache) > self._size:
            self._cache.popitem(last=False)
        return found


async def search_across_languages(
    store: Store,
    embedder: Embedder,
    kb: str,
    query: str,
    *,
    chat: Chat,
    translator: Translator,
    k: int = 5,
    mode: str = "hybrid",
    filters: Filters = Filters(),
    gate: bool = True,
    threshold: float | None = None,
) -> list[Result]:
    """:func:`retrieve.search` with the query's translation as a second phrasing. Small
    talk is turned away before the model is asked for anything."""
    if gate and await asyncio.to_thread(is_small_talk, store, embedder, kb, query, filters):
        return []
    other = await translator.translate(query, chat)
    return await asyncio.to_thread(
        search,
        store,
        embedder,
        kb,
        query,
        k=k,
        mode=mode,
        filters=filters,
        gate=False,
        threshold=threshold,
        also=[other] if other else [],
    )
