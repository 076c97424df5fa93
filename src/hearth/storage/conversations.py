"""Conversations, their items and stored responses, in the same database as the call log.

A conversation is an ordered list of items (messages); ``seq`` numbers them and the pair
``(conversation_id, seq)`` is unique, so two writers can never interleave a turn: a writer
says which ``seq`` it read up to, and appending after someone else moved on is a
``ConversationConflict``. A stored response keeps its body (what ``GET /v1/responses/{id}``
returns) and the items of its turn (input and output); following ``previous_response_id``
back through responses gives a chain's history in one recursive query.

Memory keeps two derived things here: each turn's token count per model (counted once with
that model's tokenizer and chat template) and running summaries, keyed by their owner (a
conversation, or the response a summary was made for).
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from hearth.errors import UserError
from hearth.storage.db import Database, Row


def new_id(prefix: str) -> str:
    """OpenAI-style ids: ``conv_``, ``resp_``, ``msg_`` and 48 hex digits."""
    return f"{prefix}_{secrets.token_hex(24)}"


class NotFound(UserError):
    status = 404

    def __init__(self, what: str, id: str, code: str, hint: str) -> None:
        super().__init__(f"No {what} '{id}'. {hint}", param=what.replace(" ", "_"))
        self.code = code


def conversation_not_found(id: str) -> NotFound:
    return NotFound(
        "conversation",
        id,
        "conversation_not_found",
        "Create one with POST /v1/conversations; list them with `hearth conversations list`.",
    )


def response_not_found(id: str) -> NotFound:
    return NotFound(
        "response", id, "response_not_found", "Only responses created with store=true are kept."
    )


class ConversationConflict(UserError):
    """Another request added to the conversation after this one read it."""

    status = 409
    code = "conversation_busy"

    def __init__(self, id: str) -> None:
        super().__init__(
            f"Conversation '{id}' changed while this request ran (another request added a "
            "turn). Send the message again: it will see the new turn.",
            param="conversation",
        )


@dataclass(frozen=True)
class Item:
    id: str
    role: str  # "user" | "assistant" | "system" | "tool"
    content: str
    type: str = "message"
    seq: int = 0
    created: float = 0.0
    response_id: str | None = None
    conversation_id: str | None = None


@dataclass(frozen=True)
class Conversation:
    id: str
    created: float
    updated: float
    metadata: dict[str, str] = field(default_factory=dict)
    key_id: str | None = None
    next_seq: int = 0  # items so far; the seq the next item gets


@dataclass(frozen=True)
class StoredResponse:
    id: str
    created: float
    model: str
    status: str
    previous_response_id: str | None
    conversation_id: str | None
    key_id: str | None
    body: dict[str, Any]


@dataclass(frozen=True)
class Summary:
    owner: str
    text: str
    upto: str  # the id of the last item it covers
    turns: int  # how many turns it folds


_ITEM_COLUMNS = "id, role, content, type, seq, created, response_id, conversation_id"


def _item(row: Row) -> Item:
    return Item(**row)


def _conversation(row: Row) -> Conversation:
    return Conversation(**{**row, "metadata": json.loads(row["metadata"])})


class ConversationStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # -- conversations ------------------------------------------------------------------
    def create(
        self,
        metadata: dict[str, str] | None = None,
        *,
        key_id: str | None = None,
        items: list[Item] | None = None,
    ) -> Conversation:
        now = time.time()
        conv = Conversation(new_id("conv"), now, now, dict(metadata or {}), key_id)
        with self.db.transaction():
            self.db.execute(
                "INSERT INTO conversations (id, created, updated, metadata, key_id, next_seq) "
                "VALUES (?, ?, ?, ?, ?, 0)",
                (conv.id, now, now, json.dumps(conv.metadata, ensure_ascii=False), key_id),
            )
            if items:
                self.append(conv.id, items, expected=0)
        return self.get(conv.id)

    def get(self, id: str) -> Conversation:
        rows = self.db.query("SELECT * FROM conversations WHERE id = ?", (id,))
        if not rows:
            raise conversation_not_found(id)
        return _conversation(rows[0])

    def update(self, id: str, metadata: dict[str, str]) -> Conversation:
        changed = self.db.execute(
            "UPDATE conversations SET metadata = ?, updated = ? WHERE id = ?",
            (json.dumps(metadata, ensure_ascii=False), time.time(), id),
        )
        if not changed:
            raise conversation_not_found(id)
        return self.get(id)

    def delete(self, id: str) -> None:
        with self.db.transaction():
            if not self.db.execute("DELETE FROM conversations WHERE id = ?", (id,)):
                raise conversation_not_found(id)
            self.db.execute("DELETE FROM conversation_items WHERE conversation_id = ?", (id,))
            self.db.execute("DELETE FROM memory_summaries WHERE owner = ?", (id,))

    def recent(self, *, limit: int = 50, key_id: str | None = None) -> list[Conversation]:
        """The most recently updated first; ``key_id`` keeps one key's conversations."""
        where, params = ("WHERE key_id = ?", [key_id]) if key_id else ("", [])
        rows = self.db.query(
            f"SELECT * FROM conversations {where} ORDER BY updated DESC, id LIMIT ?",
            [*params, limit],
        )
        return [_conversation(r) for r in rows]

    # -- items --------------------------------------------------------------------------
    def items(
        self,
        id: str,
        *,
        after: str | None = None,
        limit: int | None = None,
        order: str = "asc",
    ) -> list[Item]:
        """A conversation's items in ``order`` of seq; ``after``: those past that item."""
        direction = "ASC" if order == "asc" else "DESC"
        where = "conversation_id = ?"
        params: list[object] = [id]
        if after is not None:
            seq = self.item(id, after).seq
            where += " AND seq > ?" if order == "asc" else " AND seq < ?"
            params.append(seq)
        sql = (
            f"SELECT {_ITEM_COLUMNS} FROM conversation_items WHERE {where} ORDER BY seq {direction}"
        )
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return [_item(r) for r in self.db.query(sql, params)]

    def item(self, id: str, item_id: str) -> Item:
        rows = self.db.query(
            f"SELECT {_ITEM_COLUMNS} FROM conversation_items WHERE conversation_id = ? AND id = ?",
            (id, item_id),
        )
        if not rows:
            self.get(id)  # an unknown conversation is reported as such
            raise NotFound(
                "item",
                item_id,
                "item_not_found",
                f"List the items of '{id}' with GET /v1/conversations/{id}/items.",
            )
        return _item(rows[0])

    def delete_item(self, id: str, item_id: str) -> None:
        self.item(id, item_id)
        with self.db.transaction():
            self.db.execute(
                "DELETE FROM conversation_items WHERE conversation_id = ? AND id = ?",
                (id, item_id),
            )
            # A summary that folded the removed item no longer matches the history.
            self.db.execute("DELETE FROM memory_summaries WHERE owner = ?", (id,))
            self.db.execute("UPDATE conversations SET updated = ? WHERE id = ?", (time.time(), id))

    def append(
        self,
        id: str,
        items: list[Item],
        *,
        expected: int | None = None,
        response_id: str | None = None,
    ) -> list[Item]:
        """Add ``items`` at the end, in one transaction. ``expected``: the ``next_seq`` the
        caller read its history at; if another writer appended since, nothing is written
        and ``ConversationConflict`` is raised, so no turn is built on a stale history."""
        now = time.time()
        with self.db.transaction():
            # Touching the row first takes its write lock on PostgreSQL (SQLite's BEGIN
            # IMMEDIATE already holds the file's): two replicas appending to one
            # conversation take turns instead of both reading the same next_seq.
            self.db.execute("UPDATE conversations SET updated = ? WHERE id = ?", (now, id))
            rows = self.db.query("SELECT next_seq FROM conversations WHERE id = ?", (id,))
            if not rows:
                raise conversation_not_found(id)
            seq = rows[0]["next_seq"]
            if expected is not None and seq != expected:
                raise ConversationConflict(id)
            out = []
            for item in items:
                stored = Item(
                    item.id or new_id("msg"),
                    item.role,
                    item.content,
                    item.type,
                    seq,
                    now,
                    response_id or item.response_id,
                    id,
                )
                self._insert(stored)
                out.append(stored)
                seq += 1
            self.db.execute(
                "UPDATE conversations SET next_seq = ?, updated = ? WHERE id = ?", (seq, now, id)
            )
        return out

    def _insert(self, item: Item) -> None:
        self.db.execute(
            f"INSERT INTO conversation_items ({_ITEM_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                item.id,
                item.role,
                item.content,
                item.type,
                item.seq,
                item.created,
                item.response_id,
                item.conversation_id,
            ),
        )

    # -- responses ----------------------------------------------------------------------
    def save_response(self, resp: StoredResponse, items: list[Item], *, stored: bool) -> None:
        """A response and the items of its turn (kept for ``previous_response_id``)."""
        with self.db.transaction():
            self.db.execute(
                "INSERT INTO responses (id, created, model, status, previous_response_id, "
                "conversation_id, key_id, stored, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    resp.id,
                    resp.created,
                    resp.model,
                    resp.status,
                    resp.previous_response_id,
                    resp.conversation_id,
                    resp.key_id,
                    int(stored),
                    json.dumps(resp.body, ensure_ascii=False),
                ),
            )
            if resp.conversation_id is None:
                for i, item in enumerate(items):
                    self._insert(
                        Item(
                            item.id or new_id("msg"),
                            item.role,
                            item.content,
                            item.type,
                            i,
                            resp.created,
                            resp.id,
                            None,
                        )
                    )

    def response(self, id: str) -> StoredResponse:
        rows = self.db.query(
            "SELECT id, created, model, status, previous_response_id, conversation_id, key_id, "
            "body FROM responses WHERE id = ? AND stored = 1",
            (id,),
        )
        if not rows:
            raise response_not_found(id)
        row = rows[0]
        return StoredResponse(**{**row, "body": json.loads(row["body"])})

    def delete_response(self, id: str) -> None:
        self.response(id)
        with self.db.transaction():
            self.db.execute("DELETE FROM responses WHERE id = ?", (id,))
            self.db.execute(
                "DELETE FROM conversation_items WHERE response_id = ? AND conversation_id IS NULL",
                (id,),
            )
            self.db.execute("DELETE FROM memory_summaries WHERE owner = ?", (id,))

    def response_items(self, id: str) -> list[Item]:
        """The items of one response's turn: its input, then its output."""
        return [
            _item(r)
            for r in self.db.query(
                f"SELECT {_ITEM_COLUMNS} FROM conversation_items WHERE response_id = ? "
                "ORDER BY seq",
                (id,),
            )
        ]

    def chain(self, id: str) -> tuple[list[Item], Summary | None]:
        """The history behind response ``id`` (its items and every earlier response's, oldest
        first), and the newest summary made along that chain."""
        cte = (
            "WITH RECURSIVE chain(id, prev, depth) AS ("
            " SELECT id, previous_response_id, 0 FROM responses WHERE id = ?"
            " UNION ALL SELECT r.id, r.previous_response_id, c.depth + 1"
            " FROM responses r JOIN chain c ON r.id = c.prev) "
        )
        rows = self.db.query(
            cte + f"SELECT {', '.join('i.' + c for c in _ITEM_COLUMNS.split(', '))} "
            "FROM chain c JOIN conversation_items i ON i.response_id = c.id "
            "ORDER BY c.depth DESC, i.seq",
            (id,),
        )
        found = self.db.query(
            cte + "SELECT s.owner, s.text, s.upto, s.turns FROM chain c "
            "JOIN memory_summaries s ON s.owner = c.id ORDER BY c.depth LIMIT 1",
            (id,),
        )
        return [_item(r) for r in rows], (Summary(**found[0]) if found else None)

    # -- memory -------------------------------------------------------------------------
    def summary(self, owner: str) -> Summary | None:
        rows = self.db.query(
            "SELECT owner, text, upto, turns FROM memory_summaries WHERE owner = ?", (owner,)
        )
        return Summary(**rows[0]) if rows else None

    def save_summary(self, summary: Summary) -> None:
        self.db.execute(
            "INSERT INTO memory_summaries (owner, text, upto, turns, created) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (owner) DO UPDATE SET text = excluded.text, "
            "upto = excluded.upto, turns = excluded.turns, created = excluded.created",
            (summary.owner, summary.text, summary.upto, summary.turns, time.time()),
        )

    def turn_tokens(self, model: str, turns: list[str]) -> dict[str, int]:
        """Cached token counts of turns (by their first item's id) for ``model``."""
        if not turns:
            return {}
        out: dict[str, int] = {}
        for start in range(0, len(turns), 500):  # SQLite's bound-parameter limit
            part = turns[start : start + 500]
            marks = ", ".join("?" for _ in part)
            for row in self.db.query(
                f"SELECT turn, tokens FROM memory_tokens WHERE model = ? AND turn IN ({marks})",
                [model, *part],
            ):
                out[row["turn"]] = row["tokens"]
        return out

    def save_turn_tokens(self, model: str, counts: dict[str, int]) -> None:
        if not counts:
            return
        with self.db.transaction():
            for turn, tokens in counts.items():
                self.db.execute(
                    "INSERT INTO memory_tokens (turn, model, tokens) VALUES (?, ?, ?) "
                    "ON CONFLICT (turn, model) DO UPDATE SET tokens = excluded.tokens",
                    (turn, model, tokens),
                )
