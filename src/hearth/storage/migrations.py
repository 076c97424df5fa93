"""Append-only schema migrations.

Each migration is ``(version, name, sql)``. ``schema_migrations`` records which versions a
database has; :func:`migrate` applies the missing ones in order, each in its own transaction
together with its bookkeeping row, so a crash leaves a database at a whole version.
"""

from __future__ import annotations

import time

from hearth.errors import ConfigError
from hearth.storage.db import Database, postgres_ddl, redact

# APPEND ONLY. Never edit, reorder or delete a migration that has shipped: databases in the
# field already ran it and will not run it again. To change the schema, append a new
# (version, name, sql) with the next version number.
MIGRATIONS: list[tuple[int, str, str]] = [
    (
        1,
        "create calls",
        """
        CREATE TABLE calls (
            id TEXT PRIMARY KEY,
            created REAL NOT NULL,
            model TEXT NOT NULL,
            endpoint TEXT NOT NULL,
            prompt_tokens INTEGER NOT NULL,
            completion_tokens INTEGER NOT NULL,
            ttft_ms REAL,
            latency_ms REAL NOT NULL,
            status TEXT NOT NULL,
            error TEXT,
            cost REAL NOT NULL,
            stream INTEGER NOT NULL
        );
        CREATE INDEX calls_created ON calls (created);
        CREATE INDEX calls_model ON calls (model);
        """,
    ),
    (
        2,
        "api keys; the key of every call",
        """
        CREATE TABLE api_keys (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            hash TEXT NOT NULL UNIQUE,
            hint TEXT NOT NULL,
            models TEXT,
            kbs TEXT,
            rpm INTEGER,
            tpm INTEGER,
            budget REAL,
            expires REAL,
            admin INTEGER NOT NULL,
            created REAL NOT NULL,
            revoked REAL
        );
        ALTER TABLE calls ADD COLUMN key_id TEXT;
        CREATE INDEX calls_key ON calls (key_id, created);
        """,
    ),
    (
        3,
        "apps: the app, variant and prompt version of a call, its token split; moderation hits",
        """
        ALTER TABLE calls ADD COLUMN app TEXT;
        ALTER TABLE calls ADD COLUMN variant TEXT;
        ALTER TABLE calls ADD COLUMN prompt_version TEXT;
        ALTER TABLE calls ADD COLUMN tokens_system INTEGER;
        ALTER TABLE calls ADD COLUMN tokens_knowledge INTEGER;
        ALTER TABLE calls ADD COLUMN tokens_history INTEGER;
        ALTER TABLE calls ADD COLUMN tokens_input INTEGER;
        ALTER TABLE calls ADD COLUMN moderation_hits INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE calls ADD COLUMN retries INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE calls ADD COLUMN finish_reason TEXT;
        CREATE INDEX calls_app ON calls (app, created);
        CREATE TABLE moderation_hits (
            id INTEGER PRIMARY KEY,
            call_id TEXT NOT NULL,
            created REAL NOT NULL,
            app TEXT,
            model TEXT NOT NULL,
            list TEXT NOT NULL,
            category TEXT NOT NULL,
            action TEXT NOT NULL,
            direction TEXT NOT NULL,
            matched TEXT NOT NULL
        );
        CREATE INDEX moderation_hits_created ON moderation_hits (created);
        CREATE INDEX moderation_hits_call ON moderation_hits (call_id);
        """,
    ),
    (
        4,
        "conversations, their items and stored responses; memory summaries; chain runs",
        """
        CREATE TABLE conversations (
            id TEXT PRIMARY KEY,
            created REAL NOT NULL,
            updated REAL NOT NULL,
            metadata TEXT NOT NULL DEFAULT '{}',
            key_id TEXT,
            next_seq INTEGER NOT NULL DEFAULT 0
        );
        CREATE INDEX conversations_updated ON conversations (updated);
        CREATE TABLE responses (
            id TEXT PRIMARY KEY,
            created REAL NOT NULL,
            model TEXT NOT NULL,
            status TEXT NOT NULL,
            previous_response_id TEXT,
            conversation_id TEXT,
            key_id TEXT,
            stored INTEGER NOT NULL,
            body TEXT NOT NULL
        );
        CREATE INDEX responses_previous ON responses (previous_response_id);
        CREATE TABLE conversation_items (
            id TEXT PRIMARY KEY,
            conversation_id TEXT REFERENCES conversations (id) ON DELETE CASCADE,
            response_id TEXT,
            seq INTEGER NOT NULL,
            type TEXT NOT NULL,
            role TEXT NOT NULL,
            content TEXT NOT NULL,
            created REAL NOT NULL
        );
        CREATE UNIQUE INDEX conversation_items_seq ON conversation_items (conversation_id, seq);
        CREATE INDEX conversation_items_response ON conversation_items (response_id, seq);
        CREATE TABLE memory_tokens (
            turn TEXT NOT NULL,
            model TEXT NOT NULL,
            tokens INTEGER NOT NULL,
            PRIMARY KEY (turn, model)
        );
        CREATE TABLE memory_summaries (
            owner TEXT PRIMARY KEY,
            text TEXT NOT NULL,
            upto TEXT NOT NULL,
            turns INTEGER NOT NULL,
            created REAL NOT NULL
        );
        ALTER TABLE calls ADD COLUMN run_id TEXT;
        ALTER TABLE calls ADD COLUMN step TEXT;
        ALTER TABLE calls ADD COLUMN conversation_id TEXT;
        CREATE INDEX calls_run ON calls (run_id);
        """,
    ),
    (
        5,
        "agents: each tool call of a run",
        """
        CREATE TABLE tool_calls (
            run_id TEXT NOT NULL,
            step INTEGER NOT NULL,
            position INTEGER NOT NULL,
            created REAL NOT NULL,
            tool TEXT NOT NULL,
            arguments TEXT NOT NULL,
            result_chars INTEGER NOT NULL,
            latency_ms REAL NOT NULL,
            ok INTEGER NOT NULL,
            result TEXT NOT NULL,
            PRIMARY KEY (run_id, step, position)
        );
        """,
    ),
    (
        6,
        "knowledge-base uploads ingested in the background, with their state",
        """
        CREATE TABLE uploads (
            id TEXT PRIMARY KEY,
            kb TEXT NOT NULL,
            document TEXT NOT NULL,
            path TEXT NOT NULL,
            bytes INTEGER NOT NULL,
            state TEXT NOT NULL,
            error TEXT,
            chunks INTEGER NOT NULL DEFAULT 0,
            created REAL NOT NULL,
            updated REAL NOT NULL
        );
        CREATE INDEX uploads_kb ON uploads (kb, created);
        """,
    ),
    (
        7,
        "per-key counters shared by replicas; app files kept in the database",
        """
        CREATE TABLE key_events (
            id TEXT PRIMARY KEY,
            key_id TEXT NOT NULL,
            kind TEXT NOT NULL,
            at REAL NOT NULL,
            tokens INTEGER NOT NULL DEFAULT 0,
            cost REAL NOT NULL DEFAULT 0
        );
        CREATE INDEX key_events_key ON key_events (key_id, at);
        CREATE TABLE key_spend (
            key_id TEXT PRIMARY KEY,
            spent REAL NOT NULL
        );
        CREATE TABLE app_files (
            name TEXT PRIMARY KEY,
            text TEXT NOT NULL,
            updated REAL NOT NULL,
            deleted INTEGER NOT NULL DEFAULT 0
        );
        """,
    ),
    (
        8,
        "fine-tuned adapters kept in the database, for every replica",
        """
        CREATE TABLE adapters (
            name TEXT PRIMARY KEY,
            manifest TEXT NOT NULL,
            model TEXT NOT NULL,
            gguf BLOB NOT NULL,
            sha256 TEXT NOT NULL,
            updated REAL NOT NULL,
            deleted INTEGER NOT NULL DEFAULT 0
        );
        """,
    ),
    (
        9,
        "the call log's app and chain-run indexes hold only the rows that have one",
        # Most calls are neither an app's nor a chain step's: indexing their NULLs cost each
        # call-log write two more B-tree pages (~25 us of its ~90 us, measured). Every
        # query on them compares the column (app = ?, run_id = ?), which implies NOT NULL,
        # so both engines' planners still use them.
        """
        DROP INDEX calls_app;
        CREATE INDEX calls_app ON calls (app, created) WHERE app IS NOT NULL;
        DROP INDEX calls_run;
        CREATE INDEX calls_run ON calls (run_id) WHERE run_id IS NOT NULL;
        """,
    ),
]

BOOKKEEPING = "schema_migrations"


def applied_versions(db: Database, table: str = BOOKKEEPING) -> list[int]:
    _check_name(table)
    db.execute(
        f"CREATE TABLE IF NOT EXISTS {table} "
        "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied DOUBLE PRECISION NOT NULL)"
    )
    rows = db.query(f"SELECT version FROM {table} ORDER BY version")
    return [row["version"] for row in rows]


def migrate(
    db: Database,
    migrations: list[tuple[int, str, str]] = MIGRATIONS,
    *,
    table: str = BOOKKEEPING,
) -> list[int]:
    """Apply the migrations ``db`` lacks, in order; return the versions applied now.
    ``table`` keeps the bookkeeping, so another schema (knowledge bases) can share a file."""
    _check_order(migrations)
    with db.exclusive():  # replicas starting together migrate one at a time
        return _migrate(db, migrations, table)


def _migrate(db: Database, migrations: list[tuple[int, str, str]], table: str) -> list[int]:
    known = {version for version, _, _ in migrations}
    applied = applied_versions(db, table)
    newer = [v for v in applied if v not in known]
    if newer:
        raise ConfigError(
            f"database {redact(db.url)} has schema version(s) {newer} that this hearth does "
            "not know; it was written by a newer hearth. Upgrade hearth (pip install -U hearth)."
        )
    done = []
    for version, name, sql in migrations:
        if version in applied:
            continue
        with db.transaction():
            # Re-check inside the write lock: another process may have migrated meanwhile.
            if db.query(f"SELECT 1 FROM {table} WHERE version = ?", (version,)):
                continue
            db.script(postgres_ddl(sql) if db.dialect == "postgresql" else sql)
            db.execute(
                f"INSERT INTO {table} (version, name, applied) VALUES (?, ?, ?)",
                (version, name, time.time()),
            )
        done.append(version)
    return done


def _check_name(table: str) -> None:
    if not table.isidentifier():
        raise ValueError(f"not a table name: {table!r}")


def _check_order(migrations: list[tuple[int, str, str]]) -> None:
    versions = [version for version, _, _ in migrations]
    if versions != sorted(set(versions)) or (versions and versions[0] < 1):
        raise ValueError(f"migration versions must be unique and increasing from 1: {versions}")
