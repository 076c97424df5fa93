"""The call log: one row per request with its tokens, latency, cost and API key, and the
usage view the web UI, ``hearth usage`` and ``GET /v1/usage`` read back."""

from __future__ import annotations

import datetime
import operator
from dataclasses import astuple, dataclass, fields
from typing import Any

from hearth.errors import UserError
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
    key_id: str | None = None  # the API key that made the call; None without auth
    app: str | None = None  # the app it ran, with its variant and prompt version (a hash)
    variant: str | None = None
    prompt_version: str | None = None
    # the prompt's tokens by where they came from (apps), in the model's own tokenizer
    tokens_system: int | None = None
    tokens_knowledge: int | None = None
    tokens_history: int | None = None
    tokens_input: int | None = None
    moderation_hits: int = 0
    retries: int = 0  # answers re-asked because they did not match the output schema
    finish_reason: str | None = None
    run_id: str | None = None  # the chain run this call was a step of, and which step
    step: str | None = None
    conversation_id: str | None = None


@dataclass(frozen=True)
class ModerationRecord:
    call_id: str
    created: float
    app: str | None
    model: str
    list: str
    category: str
    action: str  # "block" | "mask" | "review"
    direction: str  # "input" | "output"
    matched: str  # the text as it appeared (with any noise characters)


@dataclass(frozen=True)
class ToolRecord:
    """One tool call of an agent run: which step, what was asked, what came back."""

    run_id: str
    step: int
    position: int  # among the step's calls
    created: float
    tool: str
    arguments: str
    result_chars: int
    latency_ms: float
    ok: bool
    result: str  # the start of what the tool answered


@dataclass(frozen=True)
class ModerationRow:
    app: str
    list: str
    category: str
    action: str
    direction: str
    hits: int
    calls: int


@dataclass(frozen=True)
class UsageRow:
    calls: int
    errors: int
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cost: float
    # the grouping columns asked for; the others stay None
    day: str | None = None  # "YYYY-MM-DD", UTC
    model: str | None = None
    key: str | None = None  # key id ("" for calls made without a key)
    key_name: str | None = None
    app: str | None = None  # "" for calls to a model without an app


# What usage can be grouped by, and the SQL of each.
GROUPS: dict[str, tuple[str, ...]] = {
    "day": ("date(c.created, 'unixepoch') AS day",),
    "model": ("c.model AS model",),
    "key": ("COALESCE(c.key_id, '') AS key", "COALESCE(k.name, '') AS key_name"),
    "app": ("COALESCE(c.app, '') AS app",),
}


def parse_groups(by: str) -> tuple[str, ...]:
    """``"key,model"`` as the groups ``CallLog.usage`` takes; a clear error otherwise."""
    groups = tuple(g.strip() for g in by.split(",") if g.strip())
    if not groups or any(g not in GROUPS for g in groups):
        raise UserError(
            f"usage can be grouped by some of {', '.join(GROUPS)} (comma-separated); got {by!r}",
            param="by",
        )
    if "app" in groups and "model" not in groups:
        groups += ("model",)  # an app runs on several models: its rows say which
    return groups


_NAMES = tuple(f.name for f in fields(CallRecord))
_HIT_NAMES = tuple(f.name for f in fields(ModerationRecord))
# a row's values in column order (dataclasses.astuple deep-copies: ~40 us a call row)
_row = operator.attrgetter(*_NAMES)
_hit_row = operator.attrgetter(*_HIT_NAMES)
_COLUMNS = ", ".join(_NAMES)
_INSERT = f"INSERT INTO calls ({_COLUMNS}) VALUES ({', '.join('?' for _ in fields(CallRecord))})"
_SELECT = f"SELECT {_COLUMNS} FROM calls"
_HIT_COLUMNS = ", ".join(_HIT_NAMES)
_INSERT_HIT = (
    f"INSERT INTO moderation_hits ({_HIT_COLUMNS}) "
    f"VALUES ({', '.join('?' for _ in fields(ModerationRecord))})"
)

# total_tokens is derived here rather than stored, so it can never disagree with its parts.
_TOTALS = """COUNT(*) AS calls,
       SUM(CASE WHEN c.status = 'error' THEN 1 ELSE 0 END) AS errors,
       SUM(c.prompt_tokens) AS prompt_tokens,
       SUM(c.completion_tokens) AS completion_tokens,
       SUM(c.prompt_tokens + c.completion_tokens) AS total_tokens,
       SUM(c.cost) AS cost"""


class CallLog:
    def __init__(self, db: Database) -> None:
        self.db = db

    def record(self, rec: CallRecord, hits: list[ModerationRecord] | None = None) -> None:
        """Store one call and its moderation hits, together; committed when this returns.
        A repeated id raises: ids are unique per request, so a duplicate means a bug
        upstream, not a row to overwrite."""
        if rec.status not in STATUSES:
            raise ValueError(f"call {rec.id}: status {rec.status!r} is not one of {STATUSES}")
        if not hits:
            self.db.execute(_INSERT, _row(rec))
            return
        with self.db.transaction():
            self.db.execute(_INSERT, _row(rec))
            for hit in hits:
                self.db.execute(_INSERT_HIT, _hit_row(hit))

    def record_many(self, calls: list[tuple[CallRecord, list[ModerationRecord]]]) -> None:
        """Store several calls and their hits in one transaction: all or none."""
        for rec, _ in calls:
            if rec.status not in STATUSES:
                raise ValueError(f"call {rec.id}: status {rec.status!r} is not one of {STATUSES}")
        with self.db.transaction():
            for rec, hits in calls:
                self.db.execute(_INSERT, _row(rec))
                for hit in hits:
                    self.db.execute(_INSERT_HIT, _hit_row(hit))

    def record_tool(self, rec: ToolRecord) -> None:
        self.db.execute(
            "INSERT INTO tool_calls (run_id, step, position, created, tool, arguments, "
            "result_chars, latency_ms, ok, result) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (*astuple(rec)[:8], int(rec.ok), rec.result),
        )

    def tools(self, run_id: str) -> list[ToolRecord]:
        rows = self.db.query(
            "SELECT run_id, step, position, created, tool, arguments, result_chars, "
            "latency_ms, ok, result FROM tool_calls WHERE run_id = ? ORDER BY step, position",
            (run_id,),
        )
        return [ToolRecord(**{**dict(r), "ok": bool(r["ok"])}) for r in rows]

    def moderation(self, since: datetime.date | None = None) -> list[ModerationRow]:
        """Moderation hits from ``since`` on, by app, list, category, action and direction."""
        sql = (
            "SELECT COALESCE(app, '') AS app, list, category, action, direction, "
            "COUNT(*) AS hits, COUNT(DISTINCT call_id) AS calls FROM moderation_hits "
            "WHERE created >= ? GROUP BY 1, 2, 3, 4, 5 ORDER BY hits DESC, 1, 2, 3"
        )
        return [ModerationRow(**row) for row in self.db.query(sql, (_start(since),))]

    def hits(self, call_id: str) -> list[ModerationRecord]:
        rows = self.db.query(
            f"SELECT {_HIT_COLUMNS} FROM moderation_hits WHERE call_id = ? ORDER BY id",
            (call_id,),
        )
        return [ModerationRecord(**row) for row in rows]

    def recent(self, limit: int = 50, *, key_id: str | None = None) -> list[CallRecord]:
        """The newest calls first; ``key_id``: one key's only."""
        if key_id is None:
            rows = self.db.query(f"{_SELECT} ORDER BY created DESC, id DESC LIMIT ?", (limit,))
        else:
            rows = self.db.query(
                f"{_SELECT} WHERE key_id = ? ORDER BY created DESC, id DESC LIMIT ?",
                (key_id, limit),
            )
        return [_record(row) for row in rows]

    def runs(self, app: str, limit: int = 20) -> list[list[CallRecord]]:
        """The newest chain runs of ``app``, each its steps' calls in the order they began."""
        ids = self.db.query(
            "SELECT run_id, MAX(created) AS last FROM calls WHERE app = ? AND run_id IS NOT NULL "
            "GROUP BY run_id ORDER BY last DESC LIMIT ?",
            (app, limit),
        )
        out = []
        for row in ids:
            rows = self.db.query(f"{_SELECT} WHERE run_id = ? ORDER BY created", (row["run_id"],))
            out.append([_record(r) for r in rows])
        return out

    def get(self, id: str) -> CallRecord | None:
        rows = self.db.query(f"{_SELECT} WHERE id = ?", (id,))
        return _record(rows[0]) if rows else None

    def usage(
        self,
        since: datetime.date | None = None,
        *,
        by: tuple[str, ...] = ("day", "model"),
        key_id: str | None = None,
        until: datetime.date | None = None,
    ) -> list[UsageRow]:
        """Totals from ``since`` (a UTC day, inclusive) on, grouped by ``by`` (any of
        ``GROUPS``), for one key's calls or, with ``key_id`` None, everyone's."""
        unknown = [g for g in by if g not in GROUPS]
        if unknown or not by:
            raise ValueError(f"usage can be grouped by {', '.join(GROUPS)}; got {list(by)}")
        start = _start(since)
        columns = [_dialect(sql, self.db.dialect) for g in by for sql in GROUPS[g]]
        names = [sql.rsplit(" AS ", 1)[1] for sql in columns]
        params: list[Any]
        where, params = "c.created >= ?", [start]
        if key_id is not None:
            where += " AND c.key_id = ?"
            params.append(key_id)
        if until is not None:  # inclusive: the whole of that UTC day
            where += " AND c.created < ?"
            params.append(_start(until) + 86400)
        sql = (
            f"SELECT {', '.join(columns)}, {_TOTALS} FROM calls c "
            f"LEFT JOIN api_keys k ON k.id = c.key_id WHERE {where} "
            f"GROUP BY {', '.join(names)} ORDER BY {', '.join(names)}"
        )
        return [UsageRow(**row) for row in self.db.query(sql, params)]

    def spent(self, key_id: str) -> float:
        """What a key's calls have cost so far (where its budget starts from)."""
        rows = self.db.query("SELECT SUM(cost) AS cost FROM calls WHERE key_id = ?", (key_id,))
        return float(rows[0]["cost"] or 0.0)

    def close(self) -> None:
        self.db.close()


def open_calllog(url: str) -> CallLog:
    """Connect to ``url`` and bring its schema up to date."""
    db = connect(url)
    migrate(db)
    return CallLog(db)


# The one expression the dialects spell differently: a UTC day from epoch seconds.
_PG_DAY = "to_char(to_timestamp(c.created) AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS day"


def _dialect(sql: str, dialect: str) -> str:
    return _PG_DAY if dialect == "postgresql" and sql == GROUPS["day"][0] else sql


def _start(since: datetime.date | None) -> float:
    if since is None:
        return 0.0
    return datetime.datetime.combine(since, datetime.time(), datetime.UTC).timestamp()


def _record(row: dict[str, Any]) -> CallRecord:
    return CallRecord(**{**row, "stream": bool(row["stream"])})
