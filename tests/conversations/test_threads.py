"""Threads over a real SQLite store: the in-process history cache follows every change to a
conversation (a turn kept here, another process appending, an item deleted), and a kept
turn's cost is counted once and found cached by the next request."""

from __future__ import annotations

from pathlib import Path

from hearth.config import ModelSpec
from hearth.conversations.memory import Counter, Policy, assemble
from hearth.conversations.threads import Thread
from hearth.engines.base import count_chat_tokens
from hearth.engines.fake import FakeEngine
from hearth.storage.calllog import open_calllog
from hearth.storage.conversations import ConversationStore, Item
from hearth.types import Message


def texts(thread: Thread) -> list[str]:
    return [m.content for t in thread.remembered.turns for m in t.messages]


async def test_history_cache_follows_every_change(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/h.db"
    log, other_log = open_calllog(url), open_calllog(url)
    store, other = ConversationStore(log.db), ConversationStore(other_log.db)
    conv = store.create(items=[Item("", "user", "u0"), Item("", "assistant", "a0")])
    engine = FakeEngine(ModelSpec(name="f", engine="fake", context=100_000))
    counter = Counter(lambda m: count_chat_tokens(engine, m))

    async def turn(text: str) -> Thread:
        thread = await Thread.load(store, "f", conversation=conv.id)
        out = await assemble(
            Policy(),
            thread.remembered,
            [Message("user", text)],
            counter=counter,
            context_length=100_000,
            answer_room=16,
        )
        kept = await thread.keep(out, [Item("", "user", text), Item("", "assistant", "ok")])
        await thread.count_turns(counter, kept)
        return thread

    await turn("u1")  # read from SQLite, then extended in the cache by its own turn
    thread = await Thread.load(store, "f", conversation=conv.id)
    assert texts(thread) == ["u0", "a0", "u1", "ok"]
    # Every turn's cost is cached now: the one kept was counted after it was stored.
    assert set(thread.remembered.cached) == {t.key for t in thread.remembered.turns}

    # Another process appends: the version changed, so the history is read again.
    other.append(conv.id, [Item("", "user", "from-elsewhere"), Item("", "assistant", "x")])
    thread = await Thread.load(store, "f", conversation=conv.id)
    assert texts(thread)[-2:] == ["from-elsewhere", "x"]

    # An item deleted (anywhere) is gone from the next history.
    first = store.items(conv.id)[0]
    other.delete_item(conv.id, first.id)
    thread = await Thread.load(store, "f", conversation=conv.id)
    assert "u0" not in texts(thread)
    await turn("u2")
    assert texts(await Thread.load(store, "f", conversation=conv.id))[-2:] == ["u2", "ok"]
    assert texts(await Thread.load(other, "f", conversation=conv.id)) == texts(
        await Thread.load(store, "f", conversation=conv.id)
    )
    log.close()
    other_log.close()
