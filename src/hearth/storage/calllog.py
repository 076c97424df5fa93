"""The call log: one row per request with its tokens, latency and cost, and the usage view
the web UI and ``hearth`` commands read back."""

from __future__ import annotations

import datetime
from dataclasses import astuple, dataclass, fields
from typing import Any

from hearth.storage.db import Database, connect
from hearth.storage.migrations import migrate

STATUSES = ("ok", "error", "cancelled")


@dataclass(frozen=True)
class CallRecord:
    id: str  # request id, e.g. "chatcmpl-..."
    created: float  # unix time the request arrived
    model: str
    endpoint: str  # "chat.completions" | "completions" | "embeddings" | ...
    prompt_tokens: int
    completion_tokens: int
    ttft_ms: float | None  # time to first token (None for non-streamed or failed)
    latency_ms: float
    status: str  # "ok" | "error" | "cancelled"
    error: str | None
    cost: float  # from the model's price, computed by the caller
    stream: bool


@dataclass(frozen=True)
class UsageRow:
    day: str  # "YYYY-MM-DD", UTC
    model: str
    calls: int
    errors: int
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cost: float


_COLUMNS = ", ".join(f.name for f in fields(CallRecord))
_INSERT = f"INSERT INTO calls ({_COLUMNS}) VALUES ({', '.join('?' for _ in fields(CallRecord))})"
_SELECT = f"SELECT {_COLUMNS} FROM calls"

# total_tokens is derived here rather than stored, so it can never disagree with its parts.
_USAGE = """
SELECT date(created, 'unixepoch') AS day, model,
       COUNT(*) AS calls,
       SUM(status = 'error') AS errors,
       SUM(prompt_tokens) AS prompt_tokens,
       SUM(completion_tokens) AS completion_tokens,
       SUM(prompt_tokens + completion_tokens) AS total_tokens,
       SUM(cost) AS cost
FROM calls
WHERE created >= ?
GROUP BY day, model
ORDER BY day, model
"""


class CallLog:
    def __init__(self, db: Database) -> None:
        self.db = db

    def record(self, rec: CallRecord) -> None:
        """Store one call; committed when this returns. A repeated id raises: ids are unique
        per request, so a duplicate means a bug upstream, not a row to overwrite."""
        if rec.status not in STATUSES:
            raise ValueError(f"call {rec.id}: status {rec.status!r} is not one of {STATUSES}")
        self.db.execute(_INSERT, astuple(rec))

    def recent(self, limit: int = 50) -> list[CallRecord]:
        """The newest calls first."""
        rows = self.db.query(f"{_SELECT} ORDER BY created DESC, rowid DESC LIMIT ?", (limit,))
        return [_record(row) for row in rows]

    def get(self, id: str) -> CallRecord | None:
        rows = self.db.query(f"{_SELECT} WHERE id = ?", (id,))
        return _record(rows[0]) if rows else None

    def usage(self, since: datetime.date | None = None) -> list[UsageRow]:
        """Totals per UTC day and model, from ``since`` (a UTC day, inclusive) on."""
        start = 0.0
        if since is not None:
            midnight = datetime.datetime.combine(since, datetime.time(), datetime.UTC)
            start = midnight.timestamp()
        return [UsageRow(**row) for row in self.db.query(_USAGE, (start,))]

    def close(self) -> None:
        self.db.close()


def open_calllog(url: str) -> CallLog:
    """Connect to ``url`` and bring its schema up to date."""
    db = connect(url)
    migrate(db)
    return CallLog(db)


def _record(row: dict[str, Any]) -> CallRecord:
    return CallRecord(**{**row, "stream": bool(row["stream"])})
