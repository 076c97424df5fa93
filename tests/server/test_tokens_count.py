from __future__ import annotations

import httpx
import openai

from tests.conftest import LiveServer


def test_chat_count_equals_usage(fake_server: LiveServer) -> None:
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi there"}]
    client = openai.OpenAI(base_url=fake_server.base_url, api_key="x")
    r = client.chat.completions.create(model="fake", messages=messages)  # type: ignore[arg-type]
    resp = httpx.post(
        fake_server.base_url + "/tokens/count", json={"model": "fake", "messages": messages}
    )
    assert resp.status_code == 200
    assert r.usage is not None and resp.json()["count"] == r.usage.prompt_tokens


def test_text_count_and_bad_bodies(fake_server: LiveServer) -> None:
    url = fake_server.base_url + "/tokens/count"
    ok = httpx.post(url, json={"model": "fake", "input": "one two three"})
    assert ok.json()["count"] == 3 and ok.json()["kind"] == "text"
    both = {"model": "fake", "input": "a", "messages": [{"role": "user", "content": "b"}]}
    for body in ({"model": "fake"}, both):
        bad = httpx.post(url, json=body)
        assert bad.status_code == 400
        assert "exactly one of" in bad.json()["error"]["message"]
    empty = httpx.post(url, json={"model": "fake", "messages": []})
    assert empty.status_code == 400 and empty.json()["error"]["param"] == "messages"
    missing = httpx.post(url, json={"model": "nope", "input": "a"})
    assert missing.status_code == 404
