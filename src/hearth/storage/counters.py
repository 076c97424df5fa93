"""Per-key counters that several server processes share: the requests and tokens of each
key's last minute, the holds of its calls in flight, and what it has spent.

Rows in ``key_events`` are ``request`` (one admitted request), ``used`` (tokens a finished
call used) and ``hold`` (a call in flight's reservation, deleted when it settles). Each
decision reads and writes them inside one transaction holding the key's lock (an advisory
lock on PostgreSQL; SQLite's single writer lock), so replicas admit exactly up to a limit.
Events older than the window are pruned as calls settle; a hold older than ``STALE_HOLD_S``
belonged to a process that died mid-call and no longer counts.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from hearth.storage.db import Database

STALE_HOLD_S = 3600.0


@dataclass
class Window:
    spent: float
    requests: list[float] = field(default_factory=list)  # admission times, oldest first
    tokens: list[tuple[float, int]] = field(default_factory=list)  # (time, tokens used)
    held_tokens: int = 0
    held_cost: float = 0.0


class KeyCounters:
    def __init__(self, db: Database, window: float) -> None:
        self.db = db
        self.window = window

    def _lock(self, key_id: str) -> None:
        if self.db.dialect == "postgresql":
            self.db.query("SELECT pg_advisory_xact_lock(hashtext(?))", ("key:" + key_id,))

    @contextmanager
    def locked(self, key_id: str) -> Iterator[Window]:
        """The key's last minute, read under its lock; writes made in the block are part of
        the same transaction."""
        with self.db.transaction():
            self._lock(key_id)
            now = time.time()
            rows = self.db.query(
                "SELECT kind, at, tokens, cost FROM key_events WHERE key_id = ? AND "
                "((kind <> 'hold' AND at > ?) OR (kind = 'hold' AND at > ?)) ORDER BY at",
                (key_id, now - self.window, now - STALE_HOLD_S),
            )
            window = Window(self._spent(key_id))
            for r in rows:
                if r["kind"] == "request":
                    window.requests.append(r["at"])
                elif r["kind"] == "used":
                    window.tokens.append((r["at"], r["tokens"]))
                else:
                    window.held_tokens += r["tokens"]
                    window.held_cost += r["cost"]
            yield window

    def _spent(self, key_id: str) -> float:
        rows = self.db.query("SELECT spent FROM key_spend WHERE key_id = ?", (key_id,))
        if rows:
            return float(rows[0]["spent"])
        # First sight of this key: start from what its logged calls cost.
        total = self.db.query(
            "SELECT COALESCE(SUM(cost), 0) AS cost FROM calls WHERE key_id = ?", (key_id,)
        )
        spent = float(total[0]["cost"] or 0.0)
        self.db.execute("INSERT INTO key_spend (key_id, spent) VALUES (?, ?)", (key_id, spent))
        return spent

    def _event(self, key_id: str, kind: str, at: float, tokens: int = 0, cost: float = 0.0) -> str:
        id = uuid.uuid4().hex
        self.db.execute(
            "INSERT INTO key_events (id, key_id, kind, at, tokens, cost) VALUES (?, ?, ?, ?, ?, ?)",
            (id, key_id, kind, at, tokens, cost),
        )
        return id

    def add_request(self, key_id: str, at: float) -> None:
        self._event(key_id, "request", at)

    def hold(self, key_id: str, at: float, tokens: int, cost: float) -> str:
        return self._event(key_id, "hold", at, tokens, cost)

    def settle(self, key_id: str, hold_id: str, tokens: int, cost: float, at: float) -> None:
        """Replace hold ``hold_id`` by what the call used, and prune what has aged out."""
        with self.db.transaction():
            self._lock(key_id)
            self.db.execute("DELETE FROM key_events WHERE id = ?", (hold_id,))
            if tokens:
                self._event(key_id, "used", at, tokens)
            add = "UPDATE key_spend SET spent = spent + ? WHERE key_id = ?"
            if cost and not self.db.execute(add, (cost, key_id)):
                self._spent(key_id)  # the reservation made the row; made here if it did not
                self.db.execute(add, (cost, key_id))
            self.db.execute(
                "DELETE FROM key_events WHERE key_id = ? AND "
                "((kind <> 'hold' AND at <= ?) OR at <= ?)",
                (key_id, at - self.window, at - STALE_HOLD_S),
            )
