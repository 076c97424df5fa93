"""Memory policies on a real conversation store (SQLite file) with the fake engine's
tokenizer: whole turns only, token budgets that hold exactly, summaries that fold older
turns and stay under their cap."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from hearth.config import ModelSpec
from hearth.conversations.memory import (
    Counter,
    Policy,
    Remembered,
    assemble,
    group_turns,
    narrow,
    parse_policy,
)
from hearth.engines.base import count_chat_tokens
from hearth.engines.fake import FakeEngine
from hearth.errors import InvalidRequest
from hearth.types import Message

WORDS = ["你好", "价格", "hello", "engine", "续航", "520km", "torque", "是的", "ok", "电池"]


def engine() -> FakeEngine:
    return FakeEngine(ModelSpec(name="f", engine="fake", context=100_000))


def counter(e: FakeEngine) -> Counter:
    return Counter(lambda m: count_chat_tokens(e, m))


def turns(n: int, seed: int = 0) -> list:
    rnd = random.Random(seed)
    items = []
    for i in range(n):
        items.append((f"u{i}", Message("user", " ".join(rnd.choices(WORDS, k=rnd.randint(1, 30))))))
        items.append(
            (f"a{i}", Message("assistant", " ".join(rnd.choices(WORDS, k=rnd.randint(1, 60)))))
        )
        if i % 5 == 0:  # a tool result stays with its turn
            items.append((f"t{i}", Message("tool", "result 42")))
    return group_turns(items)


def test_a_turn_starts_at_each_user_message_and_keeps_its_tool_results() -> None:
    t = turns(6)
    assert len(t) == 6 and [m.role for m in t[0].messages] == ["user", "assistant", "tool"]
    assert t[0].key == "u0" and t[0].last == "t0"


async def test_tokens_policy_never_exceeds_its_budget() -> None:
    e = engine()
    c = counter(e)
    memory = Remembered(turns(50))
    system = [Message("system", "You are a car expert. 你是汽车专家。")]
    for budget in (1, 50, 200, 777, 3000):
        new = [Message("user", "现在的续航是多少? what about torque?")]
        out = await assemble(
            Policy("tokens", tokens=budget),
            memory,
            system + new,
            counter=c,
            context_length=100_000,
            answer_room=100,
        )
        reserved = await count_chat_tokens(e, system + new)
        total = await count_chat_tokens(e, out.messages)
        assert total <= reserved + budget
        assert total - reserved == out.budget.history
        kept = out.budget.kept
        assert out.messages[1:-1] == [m for t in memory.turns[50 - kept :] for m in t.messages]
        assert out.budget.kept + out.budget.dropped == 50
        assert out.budget.system + out.budget.history + out.budget.input == total


async def test_the_context_window_caps_every_policy() -> None:
    e = FakeEngine(ModelSpec(name="f", engine="fake", context=400))
    out = await assemble(
        Policy("turns", turns=50),
        Remembered(turns(50)),
        [Message("user", "hi")],
        counter=counter(e),
        context_length=400,
        answer_room=100,
    )
    assert 0 < out.budget.kept < 50
    assert await count_chat_tokens(e, out.messages) <= 300


async def test_summary_folds_old_turns_and_stays_under_its_cap() -> None:
    e = engine()
    c = counter(e)
    calls = []

    async def summarize(previous: str, messages: list[Message], cap: int) -> str:
        calls.append((previous, len(messages), cap))
        return (previous + " " + " ".join(m.content for m in messages)).strip()  # too long

    t = turns(10)
    policy = Policy("summary", turns=3, summary_max_tokens=40)
    out = await assemble(
        policy,
        Remembered(t),
        [Message("user", "next")],
        counter=c,
        context_length=100_000,
        answer_room=100,
        summarize=summarize,
    )
    assert out.summary is not None
    text, upto, folded = out.summary
    assert upto == t[6].last and folded == 7
    assert await c.text(text) <= 40  # re-summarised, then cut to the cap
    assert out.budget.summarised == 7 and out.budget.kept == 3 and out.budget.dropped == 0
    assert "摘要" in out.messages[0].content or "Summary" in out.messages[0].content
    # the next request folds only what is new
    calls.clear()
    t2 = turns(11)
    out2 = await assemble(
        policy,
        Remembered(t2, out.summary),
        [Message("user", "again")],
        counter=c,
        context_length=100_000,
        answer_room=100,
        summarize=summarize,
    )
    assert calls[0][0] == text and calls[0][1] == len(t2[7].messages)
    assert out2.summary is not None and out2.summary[2] == 8


def test_policies_parse_and_narrow() -> None:
    assert parse_policy({"turns": 3}) == Policy("turns", turns=3)
    assert parse_policy({"summary": {"max_tokens": 64}}).summary_max_tokens == 64
    for bad in ({"turns": -1}, {"tokens": 0}, {"a": 1}, {"none": False}, [1]):
        with pytest.raises(InvalidRequest):
            parse_policy(bad)
    limit = Policy("tokens", tokens=500)
    assert narrow(limit, Policy("tokens", tokens=100)).tokens == 100
    assert narrow(limit, Policy("none")).kind == "none"
    assert narrow(limit, Policy("turns", turns=2)) == Policy("tokens", tokens=500, turns=2)
    with pytest.raises(InvalidRequest):
        narrow(limit, Policy("tokens", tokens=501))


def test_store_round_trip(tmp_path: Path) -> None:
    from hearth.storage.calllog import open_calllog
    from hearth.storage.conversations import ConversationConflict, ConversationStore, Item

    log = open_calllog(f"sqlite:///{tmp_path}/h.db")
    store = ConversationStore(log.db)
    conv = store.create({"a": "b"}, items=[Item("", "user", "hi")])
    assert conv.next_seq == 1
    store.append(conv.id, [Item("", "assistant", "yo")], expected=1)
    with pytest.raises(ConversationConflict):
        store.append(conv.id, [Item("", "user", "stale")], expected=1)
    assert [i.content for i in store.items(conv.id)] == ["hi", "yo"]
    log.close()
