"""The Responses and Conversations APIs with the real ``openai`` client: memory held on the
server, streamed and not, policies that trim, and concurrent turns that lose nothing."""

from __future__ import annotations

import threading
from collections.abc import Callable

import openai
import pytest

from tests.conftest import LiveServer

CONFIG = """
[models.echo]
engine = "fake"
context = 4096
parallel = 4

[models.short]
engine = "fake"
context = 4096
memory = { turns = 2 }

[models.summed]
engine = "fake"
context = 4096
memory = { summary = { max_tokens = 30, turns = 1 } }

[models.slow]
engine = "fake"
delay = 0.02
parallel = 2
"""


@pytest.fixture
def live(server_factory: Callable[..., LiveServer]) -> LiveServer:
    return server_factory(CONFIG, served=["echo", "short", "slow", "summed"])


def client(live: LiveServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=live.base_url, api_key="none", max_retries=0)


def test_responses_create_retrieve_delete(live: LiveServer) -> None:
    c = client(live)
    r = c.responses.create(model="echo", input="你好 hearth", instructions="Be brief.")
    assert r.status == "completed"
    assert r.output_text == "You said: 你好 hearth"
    assert r.usage is not None and r.usage.input_tokens > 0 and r.usage.output_tokens > 0
    assert c.responses.retrieve(r.id).output_text == r.output_text
    c.responses.delete(r.id)
    with pytest.raises(openai.NotFoundError):
        c.responses.retrieve(r.id)


def test_previous_response_id_remembers(live: LiveServer) -> None:
    c = client(live)
    first = c.responses.create(model="echo", input="my name is Ada")
    second = c.responses.create(model="echo", input="who am I?", previous_response_id=first.id)
    details = second.usage.input_tokens_details.model_dump()  # type: ignore[union-attr]
    assert details["turns_remembered"] == 1 and details["turns_kept"] == 1
    assert details["history_tokens"] > 0
    assert second.usage.input_tokens > first.usage.input_tokens  # type: ignore[union-attr]
    with pytest.raises(openai.NotFoundError):
        c.responses.create(model="echo", input="x", previous_response_id="resp_nope")


def test_streamed_response_with_the_sdk_helper(live: LiveServer) -> None:
    c = client(live)
    conv = c.conversations.create(metadata={"topic": "test"})
    with c.responses.stream(model="echo", input="stream me", conversation=conv.id) as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == final.output_text == "You said: stream me"
    items = c.conversations.items.list(conv.id, order="asc")
    assert [(i.role, i.content[0].text) for i in items.data] == [  # type: ignore[union-attr]
        ("user", "stream me"),
        ("assistant", "You said: stream me"),
    ]


def test_conversations_crud_and_pagination(live: LiveServer) -> None:
    c = client(live)
    conv = c.conversations.create(items=[{"role": "user", "content": "a"}], metadata={"k": "v"})
    assert c.conversations.retrieve(conv.id).metadata == {"k": "v"}
    c.conversations.update(conv.id, metadata={"k": "w"})
    assert c.conversations.retrieve(conv.id).metadata == {"k": "w"}
    c.conversations.items.create(
        conv.id, items=[{"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}]
    )
    seen = [i.id for i in c.conversations.items.list(conv.id, limit=1, order="asc")]
    assert len(seen) == 3 and len(set(seen)) == 3
    c.conversations.items.delete(seen[1], conversation_id=conv.id)
    assert len(list(c.conversations.items.list(conv.id))) == 2
    c.conversations.delete(conv.id)
    with pytest.raises(openai.NotFoundError):
        c.conversations.retrieve(conv.id)


def test_chat_completions_with_a_conversation_and_turns_policy(live: LiveServer) -> None:
    c = client(live)
    conv = c.conversations.create()
    for i in range(4):
        r = c.chat.completions.create(
            model="short",
            messages=[{"role": "user", "content": f"turn {i}"}],
            extra_body={"conversation": conv.id},
        )
    details = r.usage.prompt_tokens_details.model_dump()  # type: ignore[union-attr]
    assert details["memory_policy"] == "turns:2"
    assert details["turns_remembered"] == 3 and details["turns_kept"] == 2
    assert details["turns_dropped"] == 1
    # a request may narrow the policy, never widen it
    r = c.chat.completions.create(
        model="short",
        messages=[{"role": "user", "content": "x"}],
        extra_body={"conversation": conv.id, "memory": {"turns": 0}},
    )
    assert r.usage.prompt_tokens_details.model_dump()["turns_kept"] == 0  # type: ignore[union-attr]
    with pytest.raises(openai.BadRequestError):
        c.chat.completions.create(
            model="short",
            messages=[{"role": "user", "content": "x"}],
            extra_body={"conversation": conv.id, "memory": {"turns": 9}},
        )


def test_memory_survives_a_restart(server_factory: Callable[..., LiveServer]) -> None:
    first = server_factory(CONFIG, served=["echo"])
    c = client(first)
    r = c.responses.create(model="echo", input="remember me")
    conv = c.conversations.create(items=[{"role": "user", "content": "hello"}])
    home = first.settings.home
    second = server_factory(CONFIG, served=["echo"], home=home) if False else None
    assert second is None
    # a second server on the same database file sees both
    from dataclasses import replace

    from tests.conftest import serve

    with serve(replace(first.settings)) as again:
        c2 = client(again)
        assert c2.responses.retrieve(r.id).output_text == "You said: remember me"
        r2 = c2.responses.create(model="echo", input="and now?", previous_response_id=r.id)
        assert r2.usage.input_tokens_details.model_dump()["turns_kept"] == 1  # type: ignore[union-attr]
        assert len(list(c2.conversations.items.list(conv.id))) == 1


def test_concurrent_turns_on_one_conversation_lose_nothing(live: LiveServer) -> None:
    c = client(live)
    conv = c.conversations.create()
    results: list[int] = []

    def turn(i: int) -> None:
        r = c.responses.create(model="slow", input=f"parallel {i}", conversation=conv.id)
        results.append(r.usage.input_tokens_details.model_dump()["turns_remembered"])  # type: ignore[union-attr]

    threads = [threading.Thread(target=turn, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [0, 1, 2, 3]  # serialised: each saw every earlier turn
    assert len(list(c.conversations.items.list(conv.id))) == 8


def test_summary_memory_folds_older_turns_with_a_logged_call(live: LiveServer) -> None:
    c = client(live)
    conv = c.conversations.create()
    for i in range(3):
        r = c.responses.create(
            model="summed", input=f"fact number {i} is {i * 7}", conversation=conv.id
        )
    d = r.usage.input_tokens_details.model_dump()  # type: ignore[union-attr]
    assert d["memory_policy"] == "summary:30"
    assert d["turns_kept"] == 1 and d["turns_summarised"] == 1
    assert 0 < d["summary_tokens"] <= 30
    rows = [x for x in live.services().calllog.recent(50) if x.endpoint == "conversations.summary"]
    assert len(rows) == 1  # the first turn folded once, not again on later requests
    r = c.responses.create(
        model="summed", input="and?", conversation=conv.id, extra_body={"memory": {"none": True}}
    )
    d = r.usage.input_tokens_details.model_dump()  # type: ignore[union-attr]
    assert d["turns_kept"] == 0 and d["history_tokens"] == 0 and d["turns_remembered"] == 3
