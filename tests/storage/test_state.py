"""Everything else hearth stores — keys, conversations and responses, memory, uploads —
on both backends (``db_url``: a SQLite file and a fresh PostgreSQL database), through the
same migrations."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from hearth.storage.calllog import CallLog, open_calllog
from hearth.storage.conversations import (
    ConversationConflict,
    ConversationStore,
    Item,
    StoredResponse,
    Summary,
)
from hearth.storage.keys import KeyStore
from hearth.storage.uploads import UploadStore


@pytest.fixture
def log(db_url: str) -> Iterator[CallLog]:
    log = open_calllog(db_url)
    yield log
    log.close()


def test_keys_round_trip_and_revoke_is_seen_by_another_connection(
    log: CallLog, db_url: str
) -> None:
    keys = KeyStore(log.db)
    key, secret = keys.create("team-a", models=["qwen"], rpm=60, budget=1.5, admin=False)
    assert secret.endswith(key.hint[-4:])
    other = open_calllog(db_url)  # another replica's connection
    try:
        seen = KeyStore(other.db).find(key.id)
        assert seen == key and seen.admin is False and seen.models == ("qwen",)
        keys.revoke("team-a")
        assert KeyStore(other.db).find(key.id).revoked is not None
    finally:
        other.close()


def test_conversation_items_responses_and_memory(log: CallLog) -> None:
    store = ConversationStore(log.db)
    conv = store.create(items=[Item("", "user", "你好"), Item("", "assistant", "您好！")])
    assert [i.content for i in store.items(conv.id)] == ["你好", "您好！"]
    store.update(conv.id, {"topic": "问候"})
    assert store.get(conv.id).metadata == {"topic": "问候"}
    added = store.append(conv.id, [Item("", "user", "再见")], expected=2)
    assert added[0].seq == 2
    with pytest.raises(ConversationConflict):
        store.append(conv.id, [Item("", "user", "stale")], expected=2)

    first = StoredResponse("resp_1", 1.0, "m", "completed", None, None, None, {"a": 1})
    store.save_response(first, [Item("", "user", "q1"), Item("", "assistant", "a1")], stored=True)
    second = StoredResponse("resp_2", 2.0, "m", "completed", "resp_1", None, None, {"b": 2})
    store.save_response(second, [Item("", "user", "q2"), Item("", "assistant", "a2")], stored=True)
    chain, summary = store.chain("resp_2")
    assert [i.content for i in chain] == ["q1", "a1", "q2", "a2"] and summary is None
    assert store.response("resp_2").body == {"b": 2}

    store.save_summary(Summary("resp_2", "older turns", chain[1].id, 1))
    store.save_summary(Summary("resp_2", "newer summary", chain[1].id, 1))  # upsert
    assert store.summary("resp_2") == Summary("resp_2", "newer summary", chain[1].id, 1)
    store.save_turn_tokens("m", {"t1": 5, "t2": 7})
    store.save_turn_tokens("m", {"t1": 6})
    assert store.turn_tokens("m", ["t1", "t2", "t3"]) == {"t1": 6, "t2": 7}

    store.delete(conv.id)
    assert store.recent() == []


def test_appends_from_many_writers_get_distinct_seqs(log: CallLog, db_url: str) -> None:
    """Two replicas appending to one conversation take turns: no seq is used twice."""
    conv = ConversationStore(log.db).create()
    writers = [open_calllog(db_url) for _ in range(4)]
    start = threading.Barrier(len(writers))

    def write(w: int) -> None:
        store = ConversationStore(writers[w].db)
        start.wait()
        for i in range(10):
            store.append(conv.id, [Item("", "user", f"{w}-{i}")])

    try:
        with ThreadPoolExecutor(len(writers)) as pool:
            for f in [pool.submit(write, w) for w in range(len(writers))]:
                f.result()
    finally:
        for w in writers:
            w.close()
    items = ConversationStore(log.db).items(conv.id, limit=100)
    assert sorted(i.seq for i in items) == list(range(40))


def test_uploads_round_trip(log: CallLog) -> None:
    uploads = UploadStore(log.db)
    up = uploads.add("kb", "doc.pdf", "/tmp/doc.pdf", 1234)
    assert [u.id for u in uploads.unfinished()] == [up.id]
    done = uploads.set(up, "done", chunks=9)
    assert uploads.of("kb")[0] == done and uploads.unfinished() == []
