"""Chains: an app's steps run in dependency order (independent ones at once), each a logged
call tied to one run id; /run returns or streams every step; as a model the last step is
the answer; a failed step names itself."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import openai
import pytest

from tests.conftest import LiveServer

CONFIG = """
[models.echo]
engine = "fake"
context = 4096
parallel = 4

[models.tiny]
engine = "fake"
context = 40
"""

BLOG = """\
app: blog
inputs: {brief: {type: string, required: true}}
variants: {default: {model: echo}}
steps:
  - id: opening
    prompt: "opening for {{ brief }}"
  - id: facts
    prompt: "facts for {{ inputs.brief }}"
  - id: middle
    prompt: "middle after [{{ steps.opening }}] and [{{ steps.facts }}]"
  - id: ending
    prompt: "ending after [{{ steps.middle }}]"
  - id: blog
    render: "{{ steps.opening }} | {{ steps.middle }} | {{ steps.ending }}"
"""

BROKEN = """\
app: broken
variants: {default: {model: echo}}
steps:
  - id: first
    prompt: "hello"
  - id: long
    model: tiny
    prompt: "{{ steps.first }} {% for i in range(50) %}word {% endfor %}"
  - id: last
    prompt: "{{ steps.long }}"
"""


@pytest.fixture
def live(server_factory: Callable[..., LiveServer]) -> LiveServer:
    server = server_factory(CONFIG, served=["echo", "tiny"])
    apps = server.settings.home / "apps"
    apps.mkdir()
    (apps / "blog.yaml").write_text(BLOG, encoding="utf-8")
    (apps / "broken.yaml").write_text(BROKEN, encoding="utf-8")
    return server


def test_run_returns_every_step_and_logs_one_run(live: LiveServer) -> None:
    r = httpx.post(live.base_url + "/apps/blog/run", json={"inputs": {"brief": "SUV"}}, timeout=30)
    assert r.status_code == 200, r.text
    out = r.json()
    steps = {s["id"]: s for s in out["steps"]}
    assert list(steps) == ["opening", "facts", "middle", "ending", "blog"]
    assert steps["opening"]["text"] == "You said: opening for SUV"
    assert steps["middle"]["text"] == (
        "You said: middle after [You said: opening for SUV] and [You said: facts for SUV]"
    )
    assert out["output"] == " | ".join(
        [steps["opening"]["text"], steps["middle"]["text"], steps["ending"]["text"]]
    )
    assert out["usage"]["total_tokens"] == sum(s["usage"]["total_tokens"] for s in out["steps"])
    rows = [c for c in live.services().calllog.recent(50) if c.run_id == out["id"]]
    assert sorted(c.step for c in rows) == ["ending", "facts", "middle", "opening"]
    assert all(c.app == "blog" and c.status == "ok" for c in rows)


def test_run_streams_progress_then_the_answer(live: LiveServer) -> None:
    with httpx.stream(
        "POST",
        live.base_url + "/apps/blog/run",
        timeout=30,
        json={"inputs": {"brief": "EV"}, "stream": True},
    ) as r:
        events = [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: ")]
    kinds = [e["type"] for e in events]
    assert kinds[0] == "run.created" and kinds[-1] == "run.completed"
    done = [e["step"] for e in events if e["type"] == "step.completed"]
    assert set(done[:2]) == {"opening", "facts"} and done[2:] == ["middle", "ending", "blog"]
    assert (
        "".join(e["delta"] for e in events if e["type"] == "output.delta") == events[-1]["output"]
    )


def test_a_chain_is_a_model_whose_answer_is_the_last_step(live: LiveServer) -> None:
    c = openai.OpenAI(base_url=live.base_url, api_key="none", max_retries=0)
    r = c.chat.completions.create(
        model="blog",
        messages=[{"role": "user", "content": "go"}],
        extra_body={"variables": {"brief": "van"}},
    )
    assert r.choices[0].message.content.startswith("You said: opening for van | ")  # type: ignore[union-attr]
    stream = c.chat.completions.create(
        model="blog",
        stream=True,
        messages=[{"role": "user", "content": "go"}],
        extra_body={"variables": {"brief": "van"}},
    )
    text = "".join(ch.choices[0].delta.content or "" for ch in stream if ch.choices)
    assert text == r.choices[0].message.content
    resp = c.responses.create(model="blog", input="go", extra_body={"variables": {"brief": "van"}})
    assert resp.output_text == text


def test_a_failed_step_stops_the_run_and_names_itself(live: LiveServer) -> None:
    r = httpx.post(live.base_url + "/apps/broken/run", json={}, timeout=30)
    assert r.status_code == 400, r.text
    assert "step 'long' failed" in r.json()["error"]["message"]
    with httpx.stream(
        "POST", live.base_url + "/apps/broken/run", timeout=30, json={"stream": True}
    ) as s:
        lines = [json.loads(x[6:]) for x in s.iter_lines() if x.startswith("data: ")]
    assert lines[-1]["type"] == "error" and "step 'long'" in lines[-1]["error"]["message"]


def test_cli_shows_runs_and_conversations(live: LiveServer) -> None:
    import os
    import subprocess
    import sys

    out = httpx.post(live.base_url + "/apps/blog/run", json={"inputs": {"brief": "x"}}).json()
    c = openai.OpenAI(base_url=live.base_url, api_key="none", max_retries=0)
    conv = c.conversations.create(items=[{"role": "user", "content": "记住我"}])
    env = {**os.environ, "HEARTH_HOME": str(live.settings.home)}

    def cli(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "hearth", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    runs = json.loads(cli("apps", "runs", "blog", "--json"))
    assert runs[0]["run_id"] == out["id"] and len(runs[0]["steps"]) == 4
    listed = json.loads(cli("conversations", "list", "--json"))
    assert conv.id in [x["id"] for x in listed]
    shown = json.loads(cli("conversations", "show", conv.id, "--json"))
    assert shown["items"][0]["content"] == "记住我"
    cli("conversations", "rm", conv.id)
    with pytest.raises(openai.NotFoundError):
        c.conversations.retrieve(conv.id)
