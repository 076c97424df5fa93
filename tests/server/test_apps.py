"""Apps over HTTP with the real ``openai`` client: an app is a model id, its variables come
in ``extra_body``, its files are managed over /v1/apps and re-read when they change, its
output schema holds or the call fails, and every call is one call-log row with its app."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import httpx
import openai
import pytest

from tests.conftest import LiveServer
from tests.server.helpers import assert_openai_error, sse_events, wait_until

CONFIG = """
[models.echo]
engine = "fake"
context = 4096
parallel = 2

[models.other]
engine = "fake"
script = ["I am the other model."]

[models.json]
engine = "fake"
script = ["great noodles"]
"""

GREETER = """\
app: greeter
description: 打招呼
inputs:
  shop: {type: string, required: true}
  tone: {type: string, default: polite}
variants:
  default:
    model: echo
    system: You answer for {{ shop }} in a {{ tone }} tone.
    user: "Customer says: {{ input }}"
    sampling: {max_tokens: 64}
  other:
    system: Other model, {{ shop }}.
"""

REVIEW = """\
app: review
inputs: {shop: {type: string, required: true}}
variants:
  default:
    model: json
    system: 你是{{ shop }}的客服。
output:
  schema:
    type: object
    properties: {reply: {type: string}}
    required: [reply]
"""


@pytest.fixture
def live(server_factory: Callable[..., LiveServer]) -> LiveServer:
    server = server_factory(CONFIG, served=["echo", "other", "json"])
    apps = server.settings.home / "apps"
    apps.mkdir()
    (apps / "greeter.yaml").write_text(GREETER, encoding="utf-8")
    (apps / "review.yaml").write_text(REVIEW, encoding="utf-8")
    return server


def client(live: LiveServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=live.base_url, api_key="none", max_retries=0)


def test_an_app_is_a_model_for_the_openai_client(live: LiveServer) -> None:
    c = client(live)
    ids = {m.id: m for m in c.models.list().data}
    assert ids["greeter"].owned_by == "app" and ids["echo"].owned_by == "hearth"
    r = c.chat.completions.create(
        model="greeter",
        messages=[{"role": "user", "content": "hello there"}],
        extra_body={"variables": {"shop": "Noodle Bar"}},
    )
    # the echo model repeats the last user message: the app's user template shaped it
    assert r.choices[0].message.content == "You said: Customer says: hello there"
    assert r.model == "greeter" and r.usage is not None and r.usage.prompt_tokens > 0
    extra = r.model_extra or {}
    assert extra["app"]["name"] == "greeter" and extra["app"]["variant"] == "default"
    row = live.services().calllog.get(r.id)
    assert row.app == "greeter" and row.variant == "default" and row.model == "echo"
    assert row.prompt_version == extra["app"]["prompt_version"]
    split = (row.tokens_system, row.tokens_knowledge, row.tokens_history, row.tokens_input)
    assert all(t is not None for t in split) and sum(split) == row.prompt_tokens  # type: ignore[arg-type]
    assert row.tokens_input == len(["Customer", "says:", "hello", "there"]) + 1  # fake tokens


def test_streaming_an_app_matches_the_whole_answer(live: LiveServer) -> None:
    c = client(live)
    stream = c.chat.completions.create(
        model="greeter",
        messages=[{"role": "user", "content": "hi"}],
        extra_body={"variables": {"shop": "Noodle Bar"}},
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text == "You said: Customer says: hi"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    assert (chunks[-1].model_extra or {})["app"]["name"] == "greeter"


def test_app_at_model_runs_that_models_variant(live: LiveServer) -> None:
    c = client(live)
    r = c.chat.completions.create(
        model="greeter@other",
        messages=[{"role": "user", "content": "hi"}],
        extra_body={"variables": {"shop": "Noodle Bar"}},
    )
    assert r.choices[0].message.content == "I am the other model."
    row = live.services().calllog.get(r.id)
    assert (row.model, row.variant) == ("other", "other")
    # a model without its own variant runs the default prompt
    r = c.chat.completions.create(
        model="greeter@json",
        messages=[{"role": "user", "content": "hi"}],
        extra_body={"variables": {"shop": "x"}},
    )
    assert live.services().calllog.get(r.id).variant == "default"


def test_app_errors_are_openai_errors(live: LiveServer) -> None:
    url = live.base_url + "/chat/completions"
    msgs = [{"role": "user", "content": "hi"}]
    missing = httpx.post(url, json={"model": "greeter", "messages": msgs})
    assert_openai_error(missing, 400, param="variables.shop")
    assert "shop" in missing.json()["error"]["message"]
    wrong = httpx.post(url, json={"model": "greeter", "messages": msgs, "variables": {"shop": 3}})
    assert_openai_error(wrong, 400, param="variables.shop")
    unknown = httpx.post(url, json={"model": "nope@echo", "messages": msgs})
    assert_openai_error(unknown, 404, code="app_not_found")
    no_model = httpx.post(
        url, json={"model": "greeter@gpt-9", "messages": msgs, "variables": {"shop": "x"}}
    )
    assert_openai_error(no_model, 404, code="model_not_found")
    plain = httpx.post(url, json={"model": "echo", "messages": msgs, "variables": {"a": 1}})
    assert_openai_error(plain, 400, param="variables")
    listed = httpx.post(url, json={"model": "gpt-9", "messages": msgs})
    assert "greeter" in assert_openai_error(listed, 404)["message"]


def test_output_schema_gives_the_parsed_object_or_an_error(live: LiveServer) -> None:
    run = httpx.post(
        live.base_url + "/apps/review/run", json={"inputs": {"shop": "面馆"}, "input": "好吃"}
    )
    assert run.status_code == 200, run.text
    body = run.json()
    assert body["output"] == {"reply": "great noodles"} and body["retries"] == 0
    assert body["variant"] == "default" and body["model"] == "json"
    assert body["usage"]["total_tokens"] > 0 and body["sources"] == [] and body["moderation"] == []
    # a schema the fake model's answers never meet: re-asked twice, then a 502, logged
    strict = REVIEW.replace("required: [reply]", "required: [reply, sentiment]").replace(
        "properties: {reply: {type: string}}",
        "properties: {reply: {type: string}, sentiment: {enum: [正面, 负面]}}",
    )
    put = httpx.put(live.base_url + "/apps/review", content=strict)
    assert put.status_code == 200 and put.json()["created"] is False
    failed = httpx.post(
        live.base_url + "/chat/completions",
        json={
            "model": "review",
            "messages": [{"role": "user", "content": "好吃"}],
            "variables": {"shop": "面馆"},
        },
    )
    assert_openai_error(failed, 502, code="output_invalid")
    row = live.services().calllog.recent(1)[0]
    assert row.app == "review" and row.status == "error" and row.retries == 2
    assert row.completion_tokens > 0  # the failed attempts are still counted


def test_plain_json_schema_answers_are_validated_too(live: LiveServer) -> None:
    fmt = {
        "type": "json_schema",
        "json_schema": {"name": "r", "schema": {"type": "object", "required": ["reply"]}},
    }
    body = {"model": "json", "messages": [{"role": "user", "content": "x"}], "response_format": fmt}
    ok = httpx.post(live.base_url + "/chat/completions", json=body)
    assert json.loads(ok.json()["choices"][0]["message"]["content"]) == {"reply": "great noodles"}
    fmt["json_schema"]["schema"]["required"] = ["score"]  # type: ignore[index]
    bad = httpx.post(live.base_url + "/chat/completions", json=body)
    assert_openai_error(bad, 502, code="output_invalid")
    stream = httpx.post(live.base_url + "/chat/completions", json=body | {"stream": True})
    assert stream.status_code == 502  # refused before any event, never invalid JSON


def test_apps_are_managed_over_http_and_reread_from_disk(live: LiveServer) -> None:
    base = live.base_url + "/apps"
    listed = httpx.get(base).json()
    assert {a["id"] for a in listed["data"]} == {"greeter", "review"}
    got = httpx.get(base + "/greeter").json()
    assert got["text"] == GREETER and got["spec"]["inputs"]["shop"]["required"] is True
    # JSON body, stored as YAML
    spec = {"app": "new", "variants": {"default": {"model": "other", "system": "hi"}}}
    created = httpx.put(base + "/new", json=spec)
    assert created.status_code == 200 and created.json()["created"] is True
    assert (live.settings.home / "apps" / "new.yaml").exists()
    r = client(live).chat.completions.create(
        model="new", messages=[{"role": "user", "content": "x"}]
    )
    assert r.choices[0].message.content == "I am the other model."
    bad = httpx.put(base + "/bad", content="app: bad\nvariants:\n  default: {system: '{{ x }'}\n")
    err = assert_openai_error(bad, 400, code="invalid_app")
    assert "line 3" in err["message"]
    mismatch = httpx.put(base + "/other-name", content=GREETER)
    assert_openai_error(mismatch, 400)
    checked = httpx.post(
        base + "/validate", content="app: v\nvariants: {default: {system: '{{ y }}'}}\n"
    )
    assert checked.json()["valid"] is False
    assert checked.json()["problems"][0]["line"] == 2
    # an edit on disk is live on the next request, with a new prompt version
    before = httpx.get(base + "/greeter").json()["versions"]["default"]
    path = live.settings.home / "apps" / "greeter.yaml"
    path.write_text(GREETER.replace("tone.", "tone, briefly."), encoding="utf-8")
    after = httpx.get(base + "/greeter").json()["versions"]["default"]
    assert after != before
    assert httpx.delete(base + "/new").json()["deleted"] is True
    assert httpx.get(base + "/new").status_code == 404
    gone = httpx.post(
        live.base_url + "/chat/completions",
        json={"model": "new", "messages": [{"role": "user", "content": "x"}]},
    )
    assert gone.status_code == 404


def test_usage_by_app_groups_app_and_model(live: LiveServer) -> None:
    c = client(live)
    for model in ("greeter", "greeter@other"):
        c.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": "x"}],
            extra_body={"variables": {"shop": "s"}},
        )
    rows = httpx.get(live.base_url + "/usage", params={"by": "app"}).json()["data"]
    apps = {(r["app"], r["model"]): r["calls"] for r in rows}
    assert apps[("greeter", "echo")] == 1 and apps[("greeter", "other")] == 1


def test_a_key_scoped_to_an_app_reaches_it_and_nothing_else(
    live: LiveServer, tmp_path: Path
) -> None:
    admin = httpx.post(live.base_url + "/keys", json={"name": "root", "admin": True}).json()
    head = {"Authorization": f"Bearer {admin['key']}"}
    scoped = httpx.post(
        live.base_url + "/keys", json={"name": "app", "models": ["greeter"]}, headers=head
    ).json()
    c = openai.OpenAI(base_url=live.base_url, api_key=scoped["key"], max_retries=0)
    assert [m.id for m in c.models.list().data] == ["greeter"]
    c.chat.completions.create(
        model="greeter",
        messages=[{"role": "user", "content": "x"}],
        extra_body={"variables": {"shop": "s"}},
    )
    with pytest.raises(openai.NotFoundError):
        c.chat.completions.create(model="echo", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.PermissionDeniedError):
        c.with_options().put("/apps/x", body="app: x\nvariants: {default: {}}\n", cast_to=object)


def test_every_call_reaches_the_webhook_and_the_otlp_collector(tmp_path: Path) -> None:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    from tests.apps.test_hooks import receiver
    from tests.conftest import make_settings, serve

    with receiver() as hook, receiver() as collector:
        config = CONFIG + f'\n[hooks]\nwebhook = "{hook.url}/events"\n'
        config += f'otlp_endpoint = "{collector.url}"\n'
        settings = make_settings(tmp_path / "home", config).with_served(["echo", "other"])
        (settings.home / "apps").mkdir()
        (settings.home / "apps" / "greeter.yaml").write_text(GREETER, encoding="utf-8")
        with serve(settings) as live:
            r = client(live).chat.completions.create(
                model="greeter",
                messages=[{"role": "user", "content": "hi"}],
                extra_body={"variables": {"shop": "s"}},
            )
            plain = client(live).chat.completions.create(
                model="other", messages=[{"role": "user", "content": "hi"}]
            )
            wait_until(lambda: len(hook.posts) >= 2, timeout=10, what="two webhook events")
        # the server's shutdown flushed the batched spans
        wait_until(lambda: bool(collector.posts), timeout=10, what="spans at the collector")
    events = {e["id"]: e for e in hook.json()}
    app_event = events[r.id]
    assert app_event["type"] == "call" and app_event["app"] == "greeter"
    assert app_event["variant"] == "default" and app_event["model"] == "echo"
    parts = ("system", "knowledge", "history", "input")
    assert sum(app_event["tokens"][k] for k in parts) == app_event["prompt_tokens"]
    assert events[plain.id]["app"] is None and events[plain.id]["status"] == "ok"
    spans = [
        span
        for post in collector.posts
        for rs in ExportTraceServiceRequest.FromString(post.body).resource_spans
        for ss in rs.scope_spans
        for span in ss.spans
    ]
    assert {"chat echo", "chat other"} <= {s.name for s in spans}
    app_span = next(s for s in spans if s.name == "chat echo")
    attrs = {a.key: a.value for a in app_span.attributes}
    assert attrs["gen_ai.request.model"].string_value == "echo"
    assert attrs["hearth.app"].string_value == "greeter"
    assert attrs["gen_ai.usage.input_tokens"].int_value == app_event["prompt_tokens"]


GUARDED = """\
app: guarded
variants:
  default: {model: echo}
moderation:
  lists: [ads]
  words: [{word: 秘密项目, category: 机密, action: block}, 内部价]
  input: review
  output: mask
"""


def _post_app(live: LiveServer, app: str, text: str, **extra: object) -> httpx.Response:
    body = {"model": app, "messages": [{"role": "user", "content": text}], **extra}
    return httpx.post(live.base_url + "/chat/completions", json=body, timeout=30)


def test_blocked_input_is_a_content_filter_error_naming_the_category(live: LiveServer) -> None:
    (live.settings.home / "apps" / "guarded.yaml").write_text(GUARDED, encoding="utf-8")
    refused = _post_app(live, "guarded", "说说 秘 密 项 目 的进展")
    error = assert_openai_error(refused, 400, code="content_filter", param="messages")
    assert "机密" in error["message"] and "秘密项目" not in error["message"]
    row = live.services().calllog.recent(1)[0]
    assert row.app == "guarded" and row.status == "error" and row.moderation_hits == 1
    (hit,) = live.services().calllog.hits(row.id)
    assert (hit.list, hit.category, hit.action, hit.direction) == (
        "inline",
        "机密",
        "block",
        "input",
    )
    assert hit.matched == "秘 密 项 目"
    # with a canned reply the caller gets that answer instead, and the model is not called
    canned = GUARDED.replace("  output: mask", "  output: mask\n  reply: 抱歉，这个问题无法回答。")
    (live.settings.home / "apps" / "guarded.yaml").write_text(canned, encoding="utf-8")
    answered = _post_app(live, "guarded", "秘密项目呢？")
    assert answered.status_code == 200
    assert answered.json()["choices"][0]["message"]["content"] == "抱歉，这个问题无法回答。"
    assert answered.json()["usage"]["total_tokens"] == 0


def test_listed_words_in_the_output_are_masked_in_every_stream_chunk(live: LiveServer) -> None:
    (live.settings.home / "apps" / "guarded.yaml").write_text(GUARDED, encoding="utf-8")
    # input "review" lets the words through to the echo model, whose output repeats them
    text = "这是内部价，加微 信领取，还有 ＩＮＴＥＲＮＡＬ 没有"
    whole = _post_app(live, "guarded", text).json()
    content = whole["choices"][0]["message"]["content"]
    assert "内部价" not in content and "加微 信" not in content and "***" in content
    assert content.startswith("You said: 这是") and content.endswith("没有")
    stream = httpx.post(
        live.base_url + "/chat/completions",
        json={"model": "guarded", "stream": True, "messages": [{"role": "user", "content": text}]},
    )
    pieces = [
        e["choices"][0]["delta"].get("content", "")
        for e in sse_events(stream.iter_lines())
        if e.get("choices")
    ]
    assert "".join(pieces) == content
    shown = ""
    for piece in pieces:  # no prefix of the stream ever held a listed word unmasked
        shown += piece
        assert "内部价" not in shown and "加微" not in shown.replace(" ", "")
    row = live.services().calllog.recent(1)[0]
    hits = live.services().calllog.hits(row.id)
    assert {(h.direction, h.action) for h in hits} == {("input", "review"), ("output", "mask")}


def test_blocked_output_stops_with_finish_reason_content_filter(live: LiveServer) -> None:
    app = GUARDED.replace("  output: mask", "  output: block")
    (live.settings.home / "apps" / "guarded.yaml").write_text(app, encoding="utf-8")
    stream = httpx.post(
        live.base_url + "/chat/completions",
        json={
            "model": "guarded",
            "stream": True,
            "messages": [{"role": "user", "content": "价格是内部价八折，别外传"}],
        },
    )
    events = [e for e in sse_events(stream.iter_lines()) if e.get("choices")]
    text = "".join(e["choices"][0]["delta"].get("content", "") for e in events)
    assert text == "You said: 价格是"
    assert events[-1]["choices"][0]["finish_reason"] == "content_filter"


def test_usage_moderation_summarises_the_hits(live: LiveServer) -> None:
    from typer.testing import CliRunner

    from hearth.cli.main import _register, app

    (live.settings.home / "apps" / "guarded.yaml").write_text(GUARDED, encoding="utf-8")
    _post_app(live, "guarded", "内部价多少")
    _register()
    out = CliRunner().invoke(
        app, ["usage", "--moderation", "--json"], env={"HEARTH_HOME": str(live.settings.home)}
    )
    assert out.exit_code == 0, out.output
    rows = json.loads(out.output)
    assert {(r["app"], r["direction"], r["action"]) for r in rows} >= {
        ("guarded", "input", "review"),
        ("guarded", "output", "mask"),
    }


KNOWING = """\
app: knowing
inputs: {shop: {type: string, default: 小面馆}}
variants:
  default:
    model: echo
    system: 你是{{ shop }}的客服。
    user: "资料：{% for s in sources %}[{{ s.n }}] {{ s.document }} {% endfor %}问题：{{ input }}"
knowledge: {kb: faq, k: 2, max_tokens: 300}
"""


def test_knowledge_reaches_templates_and_the_response(live: LiveServer) -> None:
    root = Path(__file__).resolve().parents[2] / "examples" / "kb" / "shop-faq"
    base = live.base_url + "/knowledge_bases"
    assert httpx.post(base, json={"name": "faq"}).status_code == 201
    files = [("files", (p.name, p.read_bytes())) for p in sorted(root.iterdir())]
    assert httpx.post(f"{base}/faq/documents", files=files, timeout=300).status_code == 200
    (live.settings.home / "apps" / "knowing.yaml").write_text(KNOWING, encoding="utf-8")
    r = client(live).chat.completions.create(
        model="knowing", messages=[{"role": "user", "content": "周一营业吗？"}]
    )
    sources = (r.model_extra or {})["sources"]
    assert [s["n"] for s in sources] == list(range(1, len(sources) + 1))
    assert sources[0]["document"] == "营业与预约.md" and sources[0]["text"]
    # the template saw the same numbered sources the response carries
    assert f"[1] {sources[0]['document']}" in (r.choices[0].message.content or "")
    row = live.services().calllog.get(r.id)
    assert row.tokens_knowledge is not None and 0 < row.tokens_knowledge <= 300
    stream = httpx.post(
        live.base_url + "/chat/completions",
        json={
            "model": "knowing",
            "stream": True,
            "messages": [{"role": "user", "content": "Can I get a refund?"}],
        },
    )
    events = list(sse_events(stream.iter_lines()))
    final = [e for e in events if e.get("choices")][-1]
    assert final["choices"][0]["finish_reason"] and final["sources"]
    assert final["sources"][0]["document"] == "refunds-and-delivery.md"


def test_a_remote_model_without_json_schema_is_asked_again_until_valid(
    server_factory: Callable[..., LiveServer],
) -> None:
    upstream = server_factory(
        '[models.sloppy]\nengine = "fake"\n'
        'script = ["Sure! Here it is.", "{\\"reply\\": \\"ok\\"}"]\n',
        served=["sloppy"],
    )
    config = f"""
[models.far]
engine = "remote"
url = "{upstream.base_url}"
upstream_model = "sloppy"
json_schema = false
"""
    live = server_factory(config, served=["far"])
    app = REVIEW.replace("model: json", "model: far")
    (live.settings.home / "apps").mkdir()
    (live.settings.home / "apps" / "review.yaml").write_text(app, encoding="utf-8")
    run = httpx.post(
        live.base_url + "/apps/review/run", json={"inputs": {"shop": "s"}, "input": "x"}
    )
    assert run.status_code == 200, run.text
    assert run.json()["output"] == {"reply": "ok"} and run.json()["retries"] == 1
    # a forwarded response_format would have made the fake upstream wrap its first answer
    # in valid JSON: one re-ask shows the schema was asked for in the prompt and checked
    asks = [r for r in upstream.services().calllog.recent(5) if r.model == "sloppy"]
    assert len(asks) == 2


TESTED = (
    GREETER
    + """\
tests:
  - name: greets
    vars: {shop: Noodle Bar}
    input: hello
    assert: [{type: contains, value: "Customer says: hello"}, {type: max-length, value: 500}]
  - name: no link
    vars: {shop: 面馆}
    input: 你好
    assert: [{type: not-contains, value: http}]
"""
)


def test_an_apps_tests_run_over_http_as_a_matrix(live: LiveServer) -> None:
    base = live.base_url + "/apps"
    no_tests = httpx.post(base + "/greeter/test")
    assert_openai_error(no_tests, 400)
    assert "tests" in no_tests.json()["error"]["message"]
    assert_openai_error(httpx.post(base + "/nobody/test"), 404)
    assert httpx.put(base + "/greeter", content=TESTED).status_code == 200
    report = httpx.post(base + "/greeter/test", timeout=60).json()
    assert report["object"] == "app.test" and report["models"] == ["echo", "other"]
    cells = {(r["case"], r["model"]): r for r in report["results"]}
    assert set(cells) == {(c, m) for c in ("greets", "no link") for m in ("echo", "other")}
    # the echo model repeats the prompt; the other model's scripted answer lacks it
    assert cells["greets", "echo"]["passed"] is True
    assert cells["greets", "other"]["passed"] is False
    assert cells["greets", "other"]["variant"] == "other"
    failed = [a for a in cells["greets", "other"]["assertions"] if not a["passed"]]
    assert [a["assertion"] for a in failed] == ['contains "Customer says: hello"']
    assert cells["no link", "other"]["passed"] is True
    assert (report["passed"], report["total"]) == (3, 4)
    only = httpx.post(base + "/greeter/test", json={"models": ["other"]}).json()
    assert {r["model"] for r in only["results"]} == {"other"}
    # an unknown model is that cell's failure, not the request's
    missing = httpx.post(base + "/greeter/test", json={"models": ["ghost"]}).json()
    assert missing["passed"] == 0 and "ghost" in missing["results"][0]["error"]
    unknown_field = httpx.post(base + "/greeter/test", json={"model": "echo"})
    assert_openai_error(unknown_field, 400)
    rows = live.services().calllog.recent(limit=50)
    assert sum(r.endpoint == "apps.test" for r in rows) >= 4
