"""Agent apps through the real server (fake engine, scripted calls): the server runs the
app's tools between model turns, streams the answer, records every tool call under the
run's id, and hands the caller's own functions back as ``tool_calls``."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import LiveServer

HERE = Path(__file__).resolve().parent


def call(name: str, **arguments: Any) -> str:
    return f"<tool_call>{json.dumps({'name': name, 'arguments': arguments})}</tool_call>"


SCRIPTS = {
    "calc": [call("calculator", expression="(17 + 25) * 3"), "答案是 126。"],
    "coder": [call("python", code="print(sum(i * i for i in range(1, 11)))"), "It is 385."],
    "escape": [call("python", code="print(open('/etc/shadow').read())"), "I could not read it."],
    "looper": [call("calculator", expression=f"{n} + {n}") for n in range(1, 4)],
    "repeater": [call("calculator", expression="1 + 1")],
    "asker": [call("get_weather", city="北京")],
    "fetcher": [call("http_get", url="URL"), "Fetched."],
    "mcp": [call("weather_get_weather", city="北京"), "北京今天晴。"],
}


def config(**more: str) -> str:
    models = "".join(
        f'\n[models.{name}]\nengine = "fake"\nscript = {json.dumps(script)}\n'
        for name, script in SCRIPTS.items()
        if name not in more
    )
    for name, script in more.items():
        models += f'\n[models.{name}]\nengine = "fake"\nscript = {script}\n'
    return models


def app(name: str, model: str, tools: str, extra: str = "") -> str:
    return (
        f"app: {name}\nvariants:\n  default:\n    model: {model}\n"
        f"    system: You may use tools.\ntools: {tools}\n{extra}"
    )


@pytest.fixture
def live(server_factory: Callable[..., LiveServer]) -> LiveServer:
    server = server_factory(config(), served=list(SCRIPTS))
    apps = server.settings.home / "apps"
    apps.mkdir(exist_ok=True)
    (apps / "calc.yaml").write_text(app("calc-app", "calc", "[calculator]"))
    (apps / "coder.yaml").write_text(app("pal-app", "coder", "[python]"))
    (apps / "escape.yaml").write_text(app("escape-app", "escape", "[python]"))
    (apps / "looper.yaml").write_text(app("loop-app", "looper", "[calculator]", "max_steps: 3\n"))
    (apps / "repeater.yaml").write_text(app("repeat-app", "repeater", "[calculator]"))
    (apps / "asker.yaml").write_text(app("ask-app", "asker", "[calculator]"))
    return server


def client(live: LiveServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=live.base_url, api_key="none", max_retries=0)


def test_the_server_runs_the_tool_and_answers(live: LiveServer) -> None:
    r = client(live).chat.completions.create(
        model="calc-app", messages=[{"role": "user", "content": "(17+25)*3 是多少？"}]
    )
    assert r.choices[0].message.content == "答案是 126。"
    assert r.choices[0].finish_reason == "stop"
    run = (r.model_extra or {})["run"]
    (step,) = run["tools"]
    assert step["tool"] == "calculator" and step["ok"] and step["step"] == 1
    assert json.loads(step["arguments"]) == {"expression": "(17 + 25) * 3"}
    log = live.services().calllog
    (row,) = log.tools(run["id"])
    assert row.result == "126" and row.result_chars == 3 and row.latency_ms >= 0
    model_row = log.get(r.id)
    assert model_row is not None and model_row.run_id == run["id"]
    assert model_row.app == "calc-app"
    # Both model turns are in the usage.
    assert r.usage is not None and r.usage.completion_tokens > len("答案是 126。") // 4


def test_the_answer_streams(live: LiveServer) -> None:
    stream = client(live).chat.completions.create(
        model="calc-app", messages=[{"role": "user", "content": "(17+25)*3?"}], stream=True
    )
    pieces, finish = [], None
    for chunk in stream:
        if chunk.choices:
            pieces.append(chunk.choices[0].delta.content or "")
            finish = chunk.choices[0].finish_reason or finish
    assert "".join(pieces) == "答案是 126。" and finish == "stop"
    assert len([p for p in pieces if p]) > 1


def test_program_aided_answer_runs_in_the_sandbox(live: LiveServer) -> None:
    r = client(live).chat.completions.create(
        model="pal-app", messages=[{"role": "user", "content": "Sum of squares 1..10?"}]
    )
    (step,) = (r.model_extra or {})["run"]["tools"]
    assert step["tool"] == "python" and step["ok"]
    (row,) = live.services().calllog.tools((r.model_extra or {})["run"]["id"])
    assert row.result == "385"


def test_an_escape_is_a_tool_error_and_the_server_carries_on(live: LiveServer) -> None:
    r = client(live).chat.completions.create(
        model="escape-app", messages=[{"role": "user", "content": "read the shadow file"}]
    )
    assert r.choices[0].message.content == "I could not read it."
    run = (r.model_extra or {})["run"]
    (row,) = live.services().calllog.tools(run["id"])
    assert not row.ok or "root:" not in row.result
    assert "error:" in row.result and "Permission denied" in row.result
    assert httpx.get(live.url + "/health").status_code == 200


def test_max_steps_ends_with_an_answer(live: LiveServer) -> None:
    r = client(live).chat.completions.create(
        model="loop-app", messages=[{"role": "user", "content": "keep adding"}]
    )
    run = (r.model_extra or {})["run"]
    assert [s["step"] for s in run["tools"]] == [1, 2]  # the third turn may not call
    assert r.choices[0].finish_reason == "stop" and not r.choices[0].message.tool_calls


def test_a_repeated_call_is_not_run_again(live: LiveServer) -> None:
    r = client(live).chat.completions.create(
        model="repeat-app", messages=[{"role": "user", "content": "1+1"}]
    )
    run = (r.model_extra or {})["run"]
    assert [s["step"] for s in run["tools"]] == [1]
    assert r.choices[0].finish_reason == "stop"


def test_caller_functions_come_back_as_tool_calls(live: LiveServer) -> None:
    weather = {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
    r = client(live).chat.completions.create(
        model="ask-app",
        messages=[{"role": "user", "content": "北京天气？"}],
        tools=[weather],  # type: ignore[list-item]
    )
    assert r.choices[0].finish_reason == "tool_calls"
    (c,) = r.choices[0].message.tool_calls or []
    assert c.function.name == "get_weather"  # type: ignore[union-attr]
    assert json.loads(c.function.arguments) == {"city": "北京"}  # type: ignore[union-attr]
    assert (r.model_extra or {})["run"]["tools"] == []
    # A function named like one of the app's tools is a 400.
    clash = {"type": "function", "function": {"name": "calculator"}}
    resp = httpx.post(
        live.base_url + "/chat/completions",
        json={"model": "ask-app", "messages": [{"role": "user", "content": "x"}], "tools": [clash]},
    )
    assert resp.status_code == 400 and resp.json()["error"]["param"] == "tools"


def test_http_get_only_reaches_allowed_hosts(server_factory: Callable[..., LiveServer]) -> None:
    target = server_factory(config(), served=["calc"])
    allowed = f"{target.url}/health"
    blocked = "http://example.com/"
    scripts = {
        "fetch-ok": json.dumps([call("http_get", url=allowed), "Fetched."]),
        "fetch-no": json.dumps([call("http_get", url=blocked), "Not allowed."]),
    }
    live = server_factory(config(**scripts), served=list(scripts))
    apps = live.settings.home / "apps"
    apps.mkdir(exist_ok=True)
    host = target.url.split("//")[1]
    tools = f"[{{http_get: {{allow: ['{host}']}}}}]"
    (apps / "ok.yaml").write_text(app("fetch-ok-app", "fetch-ok", tools))
    (apps / "no.yaml").write_text(app("fetch-no-app", "fetch-no", tools))
    log = live.services().calllog
    r = client(live).chat.completions.create(
        model="fetch-ok-app", messages=[{"role": "user", "content": "health?"}]
    )
    (row,) = log.tools((r.model_extra or {})["run"]["id"])
    assert row.ok and row.result.startswith("HTTP 200")
    r = client(live).chat.completions.create(
        model="fetch-no-app", messages=[{"role": "user", "content": "example?"}]
    )
    (row,) = log.tools((r.model_extra or {})["run"]["id"])
    assert not row.ok and "not allowed" in row.result


@pytest.mark.parametrize("transport", ["stdio", "http"])
def test_mcp_server_tools(
    server_factory: Callable[..., LiveServer], transport: str, tmp_path: Path
) -> None:
    import socket
    import subprocess
    import time

    script = str(HERE / "mcp_weather.py")
    proc = None
    if transport == "stdio":
        table = f"[mcp.weather]\ncommand = {json.dumps([sys.executable, script])}\n"
    else:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        proc = subprocess.Popen(
            [sys.executable, script, str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        table = f'[mcp.weather]\nurl = "http://127.0.0.1:{port}/mcp"\n'
    try:
        live = server_factory(config() + "\n" + table, served=["mcp"])
        apps = live.settings.home / "apps"
        apps.mkdir(exist_ok=True)
        (apps / "w.yaml").write_text(app("weather-app", "mcp", "[{mcp: weather}]"))
        r = client(live).chat.completions.create(
            model="weather-app", messages=[{"role": "user", "content": "北京天气？"}]
        )
        assert r.choices[0].message.content == "北京今天晴。"
        (row,) = live.services().calllog.tools((r.model_extra or {})["run"]["id"])
        assert row.tool == "weather_get_weather" and row.ok and "25°C" in row.result
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait()


def test_bad_tools_sections_are_explained() -> None:
    from hearth.apps.spec import AppInvalid, parse_app

    bad = {
        "tools: [kb_search]": "add 'knowledge:'",
        "tools: [http_get]": "allow-list",
        "tools: [calculator, calculator]": "listed twice",
        "tools: [nope]": "'nope' is not a tool; use calculator",
        "tools: [{python: {cpu: 1}}]": "'cpu' was unexpected",
        "max_steps: 3": "add 'tools:'",
        "tool_choice: required": "add 'tools:'",
    }
    for text, why in bad.items():
        with pytest.raises(AppInvalid) as e:
            parse_app(f"app: a\nvariants: {{default: {{system: hi}}}}\n{text}\n")
        assert why in str(e.value), text


def test_an_unknown_mcp_server_is_a_clear_error(live: LiveServer) -> None:
    apps = live.settings.home / "apps"
    (apps / "m.yaml").write_text(app("nomcp-app", "calc", "[{mcp: nowhere}]"))
    resp = httpx.post(
        live.base_url + "/chat/completions",
        json={"model": "nomcp-app", "messages": [{"role": "user", "content": "x"}]},
    )
    assert resp.status_code == 400
    assert "[mcp.nowhere]" in resp.json()["error"]["message"]


def test_the_run_endpoint_runs_the_agent_loop_too(live: LiveServer) -> None:
    r = httpx.post(live.base_url + "/apps/calc-app/run", json={"input": "(17+25)*3 是多少？"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["output"] == "答案是 126。"
    (step,) = body["run"]["tools"]
    assert step["tool"] == "calculator" and step["ok"]
    (row,) = live.services().calllog.tools(body["run"]["id"])
    assert row.result == "126"
