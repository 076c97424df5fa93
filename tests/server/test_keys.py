"""API keys on a real server: who may call, what they may use, how much and how fast."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import openai
import pytest
from langchain_openai import ChatOpenAI

from hearth.server.auth import exposure_warning
from hearth.storage.calllog import open_calllog
from hearth.storage.keys import KeyStore
from tests.conftest import LiveServer, serve
from tests.server.helpers import REPLY, assert_openai_error, chat_body, sse_events, wait_until


@dataclass
class Keyed:
    live: LiveServer

    def create(self, name: str = "k", **kw: Any) -> tuple[str, str]:
        """A key made straight in the server's database (as the CLI does): (id, secret)."""
        log = open_calllog(self.live.settings.db_url)
        try:
            key, secret = KeyStore(log.db).create(name, **kw)
        finally:
            log.close()
        self.live.services().keys.changed()  # not wait the second a CLI change may take
        return key.id, secret

    def post(self, path: str, key: str | None, **kw: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.post(self.live.base_url + path, headers=headers, timeout=30, **kw)

    def get(self, path: str, key: str | None, **kw: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.get(self.live.base_url + path, headers=headers, timeout=30, **kw)


@pytest.fixture
def keyed(server_factory: Callable[..., LiveServer]) -> Keyed:
    return Keyed(server_factory(served=["fake", "fake-slow", "fake-embed"]))


@pytest.fixture
def admin(keyed: Keyed) -> str:
    return keyed.create("root", admin=True)[1]


def burst(keyed: Keyed, key: str, bodies: list[dict[str, Any]]) -> list[httpx.Response]:
    """Send every body at once and wait for all the answers."""

    async def run() -> list[httpx.Response]:
        headers = {"Authorization": f"Bearer {key}"}
        async with httpx.AsyncClient(base_url=keyed.live.base_url, timeout=60) as client:
            calls = [client.post("/chat/completions", json=b, headers=headers) for b in bodies]
            return list(await asyncio.gather(*calls))

    return asyncio.run(run())


# -- who may call -------------------------------------------------------------------------


def test_no_key_configured_changes_nothing(keyed: Keyed) -> None:
    assert keyed.post("/chat/completions", None, json=chat_body()).status_code == 200
    assert exposure_warning("127.0.0.1", keys_in_use=False) is None
    assert exposure_warning("::1", keys_in_use=False) is None
    assert exposure_warning("0.0.0.0", keys_in_use=True) is None
    warning = exposure_warning("0.0.0.0", keys_in_use=False)
    assert warning and "hearth keys create" in warning


def test_once_a_key_exists_every_endpoint_but_health_needs_one(keyed: Keyed, admin: str) -> None:
    wait_until(
        lambda: keyed.post("/chat/completions", None, json=chat_body()).status_code == 401,
        timeout=1.0,
        what="auth switched on",
    )
    assert_openai_error(keyed.post("/chat/completions", None, json=chat_body()), 401)
    for path in ("/models", "/knowledge_bases", "/usage", "/keys"):
        assert_openai_error(keyed.get(path, None), 401, "invalid_api_key")
    assert_openai_error(httpx.get(keyed.live.url + "/metrics"), 401, "invalid_api_key")
    assert httpx.get(keyed.live.url + "/health").status_code == 200
    wrong = keyed.post("/chat/completions", "hk-not-a-real-key", json=chat_body())
    assert "Incorrect API key" in assert_openai_error(wrong, 401, "invalid_api_key")["message"]
    ok = keyed.post("/chat/completions", admin, json=chat_body())
    assert ok.status_code == 200 and ok.json()["choices"][0]["message"]["content"] == REPLY
    azure = httpx.post(
        keyed.live.base_url + "/chat/completions", json=chat_body(), headers={"api-key": admin}
    )
    assert azure.status_code == 200


def test_every_operation_but_health_declares_the_key(keyed: Keyed) -> None:
    document = httpx.get(keyed.live.url + "/openapi.json").json()
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            if path == "/health":
                assert "security" not in operation
                continue
            assert operation.get("security"), (method, path)
            assert {"401", "429"} <= set(operation["responses"]), (method, path)


def _cli(live: LiveServer, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HEARTH_HOME": str(live.settings.home), "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "hearth", *args], capture_output=True, text=True, env=env
    )


def test_keys_from_the_cli_reach_a_running_server_within_a_second(keyed: Keyed) -> None:
    made = _cli(keyed.live, "keys", "create", "ci-bot", "--json")
    assert made.returncode == 0, made.stderr
    created = json.loads(made.stdout)
    key = created["key"]
    assert key.startswith("hk-") and created["hint"].endswith(key[-4:])
    start = time.monotonic()
    wait_until(
        lambda: keyed.post("/chat/completions", None, json=chat_body()).status_code == 401,
        timeout=1.0,
        what="a key created by the CLI switching auth on",
    )
    assert keyed.post("/chat/completions", key, json=chat_body()).status_code == 200

    revoked = _cli(keyed.live, "keys", "revoke", created["id"])
    assert revoked.returncode == 0, revoked.stderr
    start = time.monotonic()
    wait_until(
        lambda: keyed.post("/chat/completions", key, json=chat_body()).status_code == 401,
        timeout=1.0,
        what="a key revoked by the CLI being refused",
    )
    assert time.monotonic() - start < 1.0
    error = assert_openai_error(keyed.post("/chat/completions", key, json=chat_body()), 401)
    assert "revoked" in error["message"]
    # revoking the only key does not open the server again
    assert keyed.post("/chat/completions", None, json=chat_body()).status_code == 401

    listed = json.loads(_cli(keyed.live, "keys", "list", "--json").stdout)
    assert [(k["name"], k["state"]) for k in listed] == [("ci-bot", "revoked")]
    assert key not in json.dumps(listed)  # the secret is shown once, never listed


def test_keys_are_stored_only_as_a_hash(keyed: Keyed) -> None:
    _, secret = keyed.create("alice")
    raw = (keyed.live.settings.home / "hearth.db").read_bytes()
    wal = keyed.live.settings.home / "hearth.db-wal"
    raw += wal.read_bytes() if wal.exists() else b""
    assert secret.encode() not in raw and secret[3:].encode() not in raw


def test_expired_key_is_refused(keyed: Keyed) -> None:
    _, old = keyed.create("old", expires=time.time() - 1)
    error = assert_openai_error(keyed.post("/chat/completions", old, json=chat_body()), 401)
    assert "expired" in error["message"]


# -- what a key may use ---------------------------------------------------------------------


def test_models_outside_the_scope_do_not_exist_for_the_key(keyed: Keyed) -> None:
    _, key = keyed.create("narrow", models=["fake"])
    assert [m["id"] for m in keyed.get("/models", key).json()["data"]] == ["fake"]
    assert keyed.post("/chat/completions", key, json=chat_body("fake")).status_code == 200
    hidden = keyed.post("/chat/completions", key, json=chat_body("fake-slow"))
    error = assert_openai_error(hidden, 404, "model_not_found")
    assert "fake-slow" not in error["message"].split("Served models:")[1]
    assert keyed.get("/models/fake-slow", key).status_code == 404
    embed = keyed.post("/embeddings", key, json={"model": "fake-embed", "input": "x"})
    assert_openai_error(embed, 404, "model_not_found")
    tokens = httpx.post(
        keyed.live.url + "/tokenize",
        json={"model": "fake-slow", "content": "x"},
        headers=_auth(key),
    )
    assert_openai_error(tokens, 404, "model_not_found")


def test_admin_only_operations(keyed: Keyed, admin: str) -> None:
    _, user = keyed.create("user", kbs=["docs"])
    made = keyed.post("/knowledge_bases", user, json={"name": "docs"})
    assert_openai_error(made, 403, "permission_denied")
    assert keyed.post("/knowledge_bases", admin, json={"name": "docs"}).status_code == 201
    assert keyed.post("/knowledge_bases", admin, json={"name": "secret"}).status_code == 201
    names = [kb["name"] for kb in keyed.get("/knowledge_bases", user).json()["data"]]
    assert names == ["docs"]
    search = {"query": "年假有几天"}
    assert keyed.post("/knowledge_bases/docs/search", user, json=search).status_code == 200
    outside = keyed.post("/knowledge_bases/secret/search", user, json=search)
    assert_openai_error(outside, 404, "knowledge_base_not_found")
    assert_openai_error(keyed.get("/keys", user), 403, "permission_denied")
    assert_openai_error(keyed.post("/keys", user, json={"name": "x"}), 403)
    assert_openai_error(httpx.get(keyed.live.url + "/metrics", headers=_auth(user)), 403)
    assert httpx.get(keyed.live.url + "/metrics", headers=_auth(admin)).status_code == 200


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_keys_over_http(keyed: Keyed, admin: str) -> None:
    made = keyed.post("/keys", admin, json={"name": "svc", "models": ["fake"], "rpm": 10})
    assert made.status_code == 201, made.text
    key = made.json()["key"]
    assert keyed.post("/chat/completions", key, json=chat_body()).status_code == 200
    listed = keyed.get("/keys", admin).json()["data"]
    assert {k["name"] for k in listed} == {"root", "svc"} and "key" not in listed[0]
    gone = httpx.delete(keyed.live.base_url + f"/keys/{made.json()['id']}", headers=_auth(admin))
    assert gone.json()["state"] == "revoked"
    assert keyed.post("/chat/completions", key, json=chat_body()).status_code == 401
    missing = httpx.delete(keyed.live.base_url + "/keys/key_nope", headers=_auth(admin))
    assert_openai_error(missing, 404, "key_not_found")


# -- how much and how fast ------------------------------------------------------------------


def test_requests_per_minute_hold_under_concurrency(keyed: Keyed) -> None:
    _, key = keyed.create("burst", rpm=5)
    answers = burst(keyed, key, [chat_body() for _ in range(20)])
    assert sorted(r.status_code for r in answers) == [200] * 5 + [429] * 15
    refused = next(r for r in answers if r.status_code == 429)
    assert_openai_error(refused, 429, "rate_limit_exceeded")
    assert 1 <= int(refused.headers["Retry-After"]) <= 60


def _prompt_tokens(keyed: Keyed, key: str) -> int:
    body = {"model": "fake", "messages": chat_body()["messages"]}
    return int(keyed.post("/tokens/count", key, json=body).json()["count"])


def test_tokens_per_minute_hold_under_concurrency(keyed: Keyed, admin: str) -> None:
    per_call = _prompt_tokens(keyed, admin) + 2  # max_tokens=2 and the reply is longer
    _, key = keyed.create("tpm", tpm=5 * per_call)
    answers = burst(keyed, key, [chat_body(max_tokens=2) for _ in range(20)])
    assert sorted(r.status_code for r in answers) == [200] * 5 + [429] * 15
    assert all(r.json()["usage"]["total_tokens"] == per_call for r in answers if r.is_success)
    too_big = keyed.post("/chat/completions", key, json=chat_body(max_tokens=10_000))
    assert "more than" in assert_openai_error(too_big, 429, "rate_limit_exceeded")["message"]


def test_budget_holds_under_concurrency(keyed: Keyed, admin: str) -> None:
    prompt = _prompt_tokens(keyed, admin)
    cost = (prompt * 0.5 + 2 * 1.5) / 1000  # the price of model "fake" per 1K tokens
    key_id, key = keyed.create("budget", budget=5 * cost + cost / 10)
    answers = burst(keyed, key, [chat_body(max_tokens=2) for _ in range(20)])
    assert sorted(r.status_code for r in answers) == [200] * 5 + [429] * 15
    refused = next(r for r in answers if r.status_code == 429)
    error = assert_openai_error(refused, 429, "insufficient_quota")
    assert error["type"] == "insufficient_quota" and refused.headers["x-should-retry"] == "false"
    later = keyed.post("/chat/completions", key, json=chat_body(max_tokens=1))
    assert_openai_error(later, 429, "insufficient_quota")
    usage = keyed.get("/usage", admin, params={"by": "key"}).json()["data"]
    spent = next(row for row in usage if row["key"] == key_id)
    assert spent["calls"] == 5 and spent["cost"] == pytest.approx(5 * cost)


def test_without_max_tokens_a_call_gets_what_still_fits(keyed: Keyed, admin: str) -> None:
    """Not refused for the whole context it could fill in theory: generation stops where
    the key's budget or tokens per minute would."""
    prompt = _prompt_tokens(keyed, admin)
    _, small = keyed.create("small", budget=(prompt * 0.5 + 3 * 1.5) / 1000)  # prompt + 3
    first = keyed.post("/chat/completions", small, json=chat_body())
    assert first.status_code == 200, first.text
    assert first.json()["choices"][0]["finish_reason"] == "length"
    assert first.json()["usage"]["completion_tokens"] == 3
    spent = keyed.post("/chat/completions", small, json=chat_body())
    assert_openai_error(spent, 429, "insufficient_quota")

    _, narrow = keyed.create("narrow", tpm=prompt + 4)
    streamed = keyed.post("/chat/completions", narrow, json=chat_body(stream=True))
    assert streamed.status_code == 200
    assert [
        e["choices"][0]["finish_reason"]
        for e in sse_events(streamed.text.splitlines())
        if e["choices"]
    ][-1] == "length"
    assert_openai_error(keyed.post("/chat/completions", narrow, json=chat_body()), 429)


def test_budget_is_remembered_by_a_new_server(keyed: Keyed, admin: str) -> None:
    """Spend comes from the call log, so another server on the same database (a restart, a
    second process) refuses a key whose budget the first one used up."""
    cost = (_prompt_tokens(keyed, admin) * 0.5 + 1 * 1.5) / 1000
    _, used = keyed.create("used", budget=2.5 * cost)
    _, fresh = keyed.create("fresh", budget=2.5 * cost)
    for _ in range(2):
        assert keyed.post("/chat/completions", used, json=chat_body(max_tokens=1)).is_success
    with serve(keyed.live.settings) as second:
        other = Keyed(second)
        again = other.post("/chat/completions", used, json=chat_body(max_tokens=1))
        assert_openai_error(again, 429, "insufficient_quota")
        assert other.post("/chat/completions", fresh, json=chat_body(max_tokens=1)).is_success


def test_usage_by_key(keyed: Keyed, admin: str) -> None:
    alice_id, alice = keyed.create("alice")
    bob_id, bob = keyed.create("bob")
    for key in (alice, alice, bob):
        assert keyed.post("/chat/completions", key, json=chat_body()).status_code == 200
    rows = keyed.get("/usage", admin, params={"by": "key"}).json()["data"]
    calls = {r["key_name"]: r["calls"] for r in rows}
    assert calls == {"alice": 2, "bob": 1}
    own = keyed.get("/usage", bob, params={"by": "key"}).json()["data"]
    assert [(r["key"], r["calls"]) for r in own] == [(bob_id, 1)]
    bad = keyed.get("/usage", admin, params={"by": "colour"})
    assert_openai_error(bad, 400, "invalid_request", "by")
    printed = _cli(keyed.live, "usage", "--by", "key", "--json")
    assert {r["key_name"]: r["calls"] for r in json.loads(printed.stdout)} == calls
    per_key = json.loads(_cli(keyed.live, "keys", "usage", "alice", "--json").stdout)
    assert [(r["key"], r["calls"]) for r in per_key] == [(alice_id, 2)]
    row = keyed.live.services().calllog.recent(1)[0]
    assert row.key_id == bob_id


# -- clients -------------------------------------------------------------------------------


def test_openai_sdk_and_langchain_send_the_key(keyed: Keyed) -> None:
    _, key = keyed.create("sdk")
    client = openai.OpenAI(base_url=keyed.live.base_url, api_key=key)
    reply = client.chat.completions.create(
        model="fake", messages=[{"role": "user", "content": "hi"}]
    )
    assert reply.choices[0].message.content == REPLY
    wrong = openai.OpenAI(base_url=keyed.live.base_url, api_key="hk-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        wrong.chat.completions.create(model="fake", messages=[{"role": "user", "content": "hi"}])
    chat = ChatOpenAI(base_url=keyed.live.base_url, api_key=key, model="fake")  # type: ignore[arg-type]
    assert chat.invoke("hello").content == REPLY
