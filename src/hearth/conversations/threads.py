"""A thread is where a request's history comes from and where its turn goes: a stored
conversation (``conversation``) or a chain of stored responses (``previous_response_id``).
``load`` reads the history, its summary and cached turn counts; ``keep`` stores what memory
worked out (turn counts, a new summary) and the new turn."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from hearth.conversations.memory import Assembly, Remembered, group_turns
from hearth.storage.conversations import ConversationStore, Item, Summary
from hearth.types import Message


@dataclass
class Thread:
    store: ConversationStore
    model: str  # whose tokenizer the cached counts are for
    conversation: str | None = None
    previous: str | None = None
    expected: int | None = None  # the conversation's next_seq when its history was read
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
            thread.expected = store.get(conversation).next_seq
            items = store.items(conversation)
            summary = store.summary(conversation)
        elif previous is not None:
            store.response(previous)  # 404 unless it was stored
            items, summary = store.chain(previous)
        else:
            return thread
        turns = group_turns([(i.id, Message(i.role, i.content)) for i in items])
        cached = store.turn_tokens(model, [t.key for t in turns])
        folded = (summary.text, summary.upto, summary.turns) if summary else None
        thread.remembered = Remembered(turns, folded, cached)
        return thread

    async def keep(
        self, assembly: Assembly, items: list[Item], *, response_id: str | None = None
    ) -> list[Item]:
        """Store the new turn (for a conversation; a response chain stores its items with the
        response) and what memory counted; the stored items come back."""
        return await asyncio.to_thread(self._keep, assembly, items, response_id)

    def _keep(self, assembly: Assembly, items: list[Item], response_id: str | None) -> list[Item]:
        stored = items
        if self.conversation is not None:
            stored = self.store.append(
                self.conversation, items, expected=self.expected, response_id=response_id
            )
        self.store.save_turn_tokens(self.model, assembly.counted)
        owner = self.conversation or response_id
        if assembly.summary is not None and owner is not None:
            text, upto, turns = assembly.summary
            self.store.save_summary(Summary(owner, text, upto, turns))
        return stored
