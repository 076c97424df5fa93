"""A thread is where a request's history comes from and where its turn goes: a stored
conversation (``conversation``) or a chain of stored responses (``previous_response_id``).
``load`` reads the history, its summary and cached turn counts; ``keep`` stores what memory
worked out (turn counts, a new summary) and the new turn.

A conversation's items are kept in a small per-store cache, keyed by the conversation's
version (``next_seq``, ``updated``): a turn stored here extends the cached history, so the
next request reads one row instead of the whole history; anything else that changes the
conversation (another process appending, an item deleted) changes the version and the
history is read again."""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections import OrderedDict
from dataclasses import dataclass, field

from hearth.conversations.memory import Assembly, Counter, Remembered, group_turns
from hearth.storage.conversations import Conversation, ConversationStore, Item, Summary
from hearth.types import Message

Version = tuple[int, float]  # (next_seq, updated)


class _Histories:
    """The items of recently used conversations of one store, each at a version."""

    def __init__(self, size: int = 256) -> None:
        self._size = size
        self._entries: OrderedDict[str, tuple[Version, list[Item]]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, conv: Conversation) -> list[Item] | None:
        with self._lock:
            entry = self._entries.get(conv.id)
            if entry is None or entry[0] != (conv.next_seq, conv.updated):
                return None
            self._entries.move_to_end(conv.id)
            return entry[1]

    def put(self, id: str, version: Version, items: list[Item]) -> None:
        with self._lock:
            self._entries[id] = (version, items)
            self._entries.move_to_end(id)
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)

    def extend(self, id: str, was: Version, new: list[Item]) -> None:
        """``new`` was appended to the history read at version ``was``."""
        with self._lock:
            entry = self._entries.get(id)
            if entry is None or entry[0] != was or not new:
                self._entries.pop(id, None)
                return
            last = new[-1]
            self._entries[id] = ((last.seq + 1, last.created), entry[1] + new)


_histories: weakref.WeakKeyDictionary[ConversationStore, _Histories] = weakref.WeakKeyDictionary()
_histories_lock = threading.Lock()


def _cache(store: ConversationStore) -> _Histories:
    with _histories_lock:
        cache = _histories.get(store)
        if cache is None:
            cache = _histories[store] = _Histories()
        return cache


@dataclass
class Thread:
    store: ConversationStore
    model: str  # whose tokenizer the cached counts are for
    conversation: str | None = None
    previous: str | None = None
    expected: int | None = None  # the conversation's next_seq when its history was read
    version: Version | None = None  # and its full version, for the history cache
    remembered: Remembered = field(default_factory=lambda: Remembered([]))

    @classmethod
    async def load(
        cls,
        store: ConversationStore,
        model: str,
        *,
        conversation: str | None = None,
        previous: str | None = None,
    ) -> Thread:
        return await asyncio.to_thread(cls._load, store, model, conversation, previous)

    @classmethod
    def _load(
        cls, store: ConversationStore, model: str, conversation: str | None, previous: str | None
    ) -> Thread:
        thread = cls(store, model, conversation, previous)
        summary: Summary | None = None
        if conversation is not None:
            conv = store.get(conversation)
            thread.expected, thread.version = conv.next_seq, (conv.next_seq, conv.updated)
            cache = _cache(store)
            cached = cache.get(conv)
            if cached is None:
                cached = store.items(conversation)
                cache.put(conversation, thread.version, cached)
            items = cached
            summary = store.summary(conversation)
        elif previous is not None:
            store.response(previous)  # 404 unless it was stored
            items, summary = store.chain(previous)
        else:
            return thread
        turns = group_turns([(i.id, Message(i.role, i.content)) for i in items])
        counts = store.turn_tokens(model, [t.key for t in turns])
        folded = (summary.text, summary.upto, summary.turns) if summary else None
        thread.remembered = Remembered(turns, folded, counts)
        return thread

    async def keep(
        self, assembly: Assembly, items: list[Item], *, response_id: str | None = None
    ) -> list[Item]:
        """Store the new turn (for a conversation; a response chain stores its items with the
        response) and what memory counted; the stored items come back."""
        return await asyncio.to_thread(self._keep, assembly, items, response_id)

    def _keep(self, assembly: Assembly, items: list[Item], response_id: str | None) -> list[Item]:
        stored = items
        with self.store.db.transaction():
            if self.conversation is not None:
                stored = self.store.append(
                    self.conversation, items, expected=self.expected, response_id=response_id
                )
            self.store.save_turn_tokens(self.model, assembly.counted)
            owner = self.conversation or response_id
            if assembly.summary is not None and owner is not None:
                text, upto, turns = assembly.summary
                self.store.save_summary(Summary(owner, text, upto, turns))
        if self.conversation is not None and self.version is not None:
            _cache(self.store).extend(self.conversation, self.version, stored)
        return stored

    async def count_turns(self, counter: Counter, items: list[Item]) -> None:
        """Count and cache the turns of ``items`` (a turn just stored), so the request after
        finds their costs cached. Only a conversation's items have their ids here."""
        if self.conversation is None or not all(i.id for i in items):
            return
        turns = group_turns([(i.id, Message(i.role, i.content)) for i in items])
        counts = {t.key: await counter.turn(t.messages) for t in turns}
        await asyncio.to_thread(self.store.save_turn_tokens, self.model, counts)
