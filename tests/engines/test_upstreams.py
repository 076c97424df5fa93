"""Remote models over real local upstreams: protocol breaks are 502s that name the upstream,
pools spread load and survive a killed upstream, fallbacks answer when a model cannot.

The misbehaving upstream is a small Starlette app that answers according to the ``model``
it is asked for; the well-behaved ones are hearth servers with the fake engine.
"""

from __future__ import annotations

import asyncio
import json
import socket
import socketserver
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import openai
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.conftest import FAKE_MODELS, LiveServer, make_settings, serve, serve_asgi

SSE = "text/event-stream"


def _chunk(content: str | None = None, finish: str | None = None) -> str:
    delta = {"content": content} if content is not None else {}
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    return "data: " + json.dumps({"id": "c", "object": "chat.completion.chunk",
                                  "choices": [choice]}) + "\n\n"  # fmt: skip


GOOD = [_chunk("fine"), _chunk(finish="stop"), "data: [DONE]\n\n"]

# model name -> what the upstream answers to a stream request
SCRIPTS: dict[str, Callable[[], Response]] = {
    "plain-json": lambda: JSONResponse(
        {"id": "x", "object": "chat.completion", "choices": [], "model": "plain-json"}
    ),
    "html": lambda: HTMLResponse("<html><body>502 Bad Gateway (nginx)</body></html>"),
    "not-json": lambda: Response("data: {oops\n\n", media_type=SSE),
    "list-event": lambda: Response("data: [1, 2]\n\n", media_type=SSE),
    "no-choices": lambda: Response('data: {"id": "x"}\n\ndata: [DONE]\n\n', media_type=SSE),
    "bad-usage": lambda: Response(
        'data: {"choices": [], "usage": {"completion_tokens": 1}}\n\n', media_type=SSE
    ),
    "only-done": lambda: Response("data: [DONE]\n\n", media_type=SSE),
    "cut-short": lambda: Response(_chunk("half an ans"), media_type=SSE),
    "bad-utf8": lambda: Response(
        b'data: {"choices": [{"index": 0, "delta": {"content": "\xff\xfe"}}]}\n\n',
        media_type=SSE,
    ),
    "error-event": lambda: Response(
        'data: {"error": {"message": "out of memory", "code": 500}}\n\n', media_type=SSE
    ),
    "unavailable": lambda: JSONResponse({"error": {"message": "warming up"}}, status_code=503),
    "good": lambda: Response("".join(GOOD), media_type=SSE),
    # the same events a few bytes per write, lines split anywhere, CRLF line ends, and the
    # last line without its newline: each is still read as one line
    "trickled": lambda: StreamingResponse(_trickle(), media_type=SSE),
}
WELL_FORMED = ["good", "trickled"]
BROKEN = [m for m in SCRIPTS if m not in WELL_FORMED]


async def _trickle() -> AsyncIterator[bytes]:
    text = "".join(GOOD).replace("\n", "\r\n").removesuffix("\r\n\r\n").encode()
    for i in range(0, len(text), 7):
        yield text[i : i + 7]
        await asyncio.sleep(0.002)  # separate reads on the other side


HITS: dict[str, int] = {}


async def _chat(request: Request) -> Response:
    # /v1/...: the script the model names; /<script>/v1/...: that script for every model
    script = request.path_params.get("script") or (await request.json())["model"]
    HITS[script] = HITS.get(script, 0) + 1
    return SCRIPTS[script]()


async def _models(request: Request) -> Response:
    return JSONResponse({"object": "list", "data": [{"id": m} for m in SCRIPTS]})


IN_FLIGHT = {"now": 0, "most": 0}


async def _slow(request: Request) -> Response:
    """A good answer after a while, counting how many are in flight at once."""
    IN_FLIGHT["now"] += 1
    IN_FLIGHT["most"] = max(IN_FLIGHT["most"], IN_FLIGHT["now"])
    try:
        await asyncio.sleep(0.5)
    finally:
        IN_FLIGHT["now"] -= 1
    return Response("".join(GOOD), media_type=SSE)


SCRIPTED = Starlette(
    routes=[
        Route("/slow/v1/chat/completions", _slow, methods=["POST"]),
        Route("/v1/chat/completions", _chat, methods=["POST"]),
        Route("/{script}/v1/chat/completions", _chat, methods=["POST"]),
        Route("/{script}/v1/models", lambda r: JSONResponse({"object": "list", "data": []})),
        Route("/v1/models", _models),
    ]
)


@pytest.fixture(scope="module")
def scripted() -> Iterator[str]:
    with serve_asgi(SCRIPTED) as (url, _):
        yield url + "/v1"


def _remote(name: str, url: str, upstream: str, extra: str = "") -> str:
    return f"""
[models.{name}]
engine = "remote"
url = "{url}"
upstream_model = "{upstream}"
{extra}
"""


@pytest.fixture(scope="module")
def proxy(scripted: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    config = FAKE_MODELS + "".join(_remote(m, scripted, m) for m in SCRIPTS)
    settings = make_settings(tmp_path_factory.mktemp("proxy"), config)
    with serve(settings.with_served([*SCRIPTS, "fake"])) as live:
        yield live


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("mode", BROKEN)
def test_a_broken_upstream_is_a_502_naming_it(
    proxy: LiveServer, scripted: str, mode: str, stream: bool
) -> None:
    if mode == "cut-short" and stream:
        pytest.skip("a token already reached the client; covered by the next test")
    body = {"model": mode, "messages": [{"role": "user", "content": "hi"}], "stream": stream}
    resp = httpx.post(proxy.base_url + "/chat/completions", json=body, timeout=30)
    assert resp.status_code == 502, resp.text
    error = resp.json()["error"]
    assert error["code"] == "upstream_error"
    if mode != "unavailable":
        assert scripted in error["message"] and mode in error["message"], error
    call = proxy.services().calllog.recent(1)[0]
    assert call.model == mode and call.status == "error"


def test_a_stream_cut_short_after_tokens_ends_with_an_error_event(proxy: LiveServer) -> None:
    client = openai.OpenAI(base_url=proxy.base_url, api_key="x", max_retries=0)
    stream = client.chat.completions.create(
        model="cut-short", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    got = []
    with pytest.raises(openai.APIError) as caught:
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                got.append(chunk.choices[0].delta.content)
    assert got == ["half an ans"]
    assert "before the answer finished" in str(caught.value)


@pytest.mark.parametrize("model", WELL_FORMED)
def test_well_formed_streams_pass(proxy: LiveServer, model: str) -> None:
    client = openai.OpenAI(base_url=proxy.base_url, api_key="x", max_retries=0)
    done = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}])
    assert done.choices[0].message.content == "fine"
    stream = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "hi"}], stream=True
    )
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "fine"


# -- pools and fallbacks ------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _health(live: LiveServer, model: str) -> list[dict[str, int]]:
    models = httpx.get(live.url + "/health").json()["models"]
    return next(m for m in models if m["id"] == model)["upstreams"]


def test_a_pool_spreads_requests_over_its_upstreams(tmp_path: Path) -> None:
    with (
        serve(make_settings(tmp_path / "a", FAKE_MODELS)) as a,
        serve(make_settings(tmp_path / "b", FAKE_MODELS)) as b,
    ):
        extra = f'urls = ["{b.base_url}", {{ url = "{a.base_url}", weight = 2 }}]'
        config = FAKE_MODELS + _remote("pool", a.base_url, "fake-slow", extra)
        with serve(make_settings(tmp_path / "proxy", config).with_served(["pool"])) as proxy:
            client = openai.OpenAI(base_url=proxy.base_url, api_key="x", max_retries=0)

            def ask(_: int) -> str:
                done = client.chat.completions.create(
                    model="pool", messages=[{"role": "user", "content": "hi"}]
                )
                return done.choices[0].message.content or ""

            with ThreadPoolExecutor(6) as pool:
                answers = list(pool.map(ask, range(18)))
            assert all(a.startswith("one two") for a in answers)
            served = [u["served"] for u in _health(proxy, "pool")]
            # least in flight: concurrent requests land on every upstream
            assert sum(served) == 18 and all(n > 0 for n in served), served


@pytest.mark.parametrize("script", ["error-event", "bad-utf8", "unavailable", "cut-short"])
def test_a_failure_the_client_has_not_seen_is_retried_on_another_upstream(
    scripted: str, script: str, tmp_path: Path
) -> None:
    bad = scripted.removesuffix("/v1") + f"/{script}/v1"
    with serve(make_settings(tmp_path / "good", FAKE_MODELS)) as good:
        config = FAKE_MODELS + _remote("pool", bad, "fake", f'urls = ["{good.base_url}"]')
        with serve(make_settings(tmp_path / "proxy", config).with_served(["pool"])) as proxy:
            client = openai.OpenAI(base_url=proxy.base_url, api_key="x", max_retries=0)
            before = HITS.get(script, 0)
            # an answer cut short after its first tokens can start over only if the client
            # was not streaming it; a streamed one is an error event (the test above)
            streams = (False,) * 4 if script == "cut-short" else (False, True, False, True)
            for stream in streams:
                body = {"model": "pool", "messages": [{"role": "user", "content": "hi"}]}
                if stream:
                    text = "".join(
                        c.choices[0].delta.content or ""
                        for c in client.chat.completions.create(**body, stream=True)
                        if c.choices
                    )
                else:
                    text = client.chat.completions.create(**body).choices[0].message.content
                assert text and text.startswith("Hello from hearth"), text
            # the bad upstream was asked (and its failure hidden), not skipped throughout
            assert HITS.get(script, 0) > before


def test_killing_an_upstream_mid_run_fails_no_request_and_it_comes_back(tmp_path: Path) -> None:
    port = _free_port()
    with serve(make_settings(tmp_path / "a", FAKE_MODELS)) as a:
        b_cm = serve(make_settings(tmp_path / "b", FAKE_MODELS), port=port)
        b_cm.__enter__()
        b_url = f"http://127.0.0.1:{port}/v1"
        config = FAKE_MODELS + _remote("pool", a.base_url, "fake", f'urls = ["{b_url}"]')
        with serve(make_settings(tmp_path / "proxy", config).with_served(["pool"])) as proxy:
            client = openai.OpenAI(base_url=proxy.base_url, api_key="x", max_retries=0)
            errors: list[Exception] = []
            answered = 0
            stop = threading.Event()

            def hammer() -> None:
                nonlocal answered
                while not stop.is_set():
                    try:
                        client.chat.completions.create(
                            model="pool", messages=[{"role": "user", "content": "hi"}]
                        )
                        answered += 1
                    except Exception as e:  # noqa: BLE001 - collected and asserted on below
                        errors.append(e)

            workers = [threading.Thread(target=hammer) for _ in range(4)]
            for w in workers:
                w.start()
            time.sleep(1.0)
            b_cm.__exit__(None, None, None)  # upstream b dies with requests in flight
            time.sleep(1.5)
            stop.set()
            for w in workers:
                w.join()
            assert not errors, errors[:3]
            assert answered > 20
            state = _health(proxy, "pool")
            assert state[1]["healthy"] is False and state[0]["healthy"] is True, state
            # b comes back on the same port: the probe puts it back in the pool
            with serve(make_settings(tmp_path / "b2", FAKE_MODELS), port=port):
                deadline = time.monotonic() + 15
                while not _health(proxy, "pool")[1]["healthy"]:
                    assert time.monotonic() < deadline, "upstream b was not probed back"
                    time.sleep(0.2)
                before = _health(proxy, "pool")[1]["served"]
                for _ in range(6):
                    client.chat.completions.create(
                        model="pool", messages=[{"role": "user", "content": "hi"}]
                    )
                assert _health(proxy, "pool")[1]["served"] > before


def test_a_model_whose_upstreams_all_fail_falls_back(tmp_path: Path) -> None:
    dead = [f"http://127.0.0.1:{_free_port()}/v1" for _ in range(2)]
    config = (
        FAKE_MODELS
        + _remote("down", dead[0], "fake", f'urls = ["{dead[1]}"]\nfallbacks = ["fake"]')
        + _remote("down-alone", dead[0], "fake")
    )
    with serve(make_settings(tmp_path / "p", config).with_served(["down", "down-alone"])) as p:
        client = openai.OpenAI(base_url=p.base_url, api_key="x", max_retries=0)
        done = client.chat.completions.create(
            model="down", messages=[{"role": "user", "content": "hi"}]
        )
        assert done.model == "fake" and done.choices[0].message.content
        assert p.services().calllog.get(done.id).model == "fake"
        stream = client.chat.completions.create(
            model="down", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        assert {c.model for c in stream} == {"fake"}
        with pytest.raises(openai.APIStatusError) as caught:
            client.chat.completions.create(
                model="down-alone", messages=[{"role": "user", "content": "hi"}]
            )
        assert caught.value.status_code == 502
        assert dead[0] in caught.value.message and "unreachable" in caught.value.message


def test_pool_and_fallback_config_errors_say_what_is_wrong(tmp_path: Path) -> None:
    from hearth.config import load_settings
    from hearth.errors import ConfigError

    cases = {
        'urls = "http://x/v1"': "must be a list",
        'urls = ["ftp://x"]': "http(s)://",
        'urls = [{ url = "http://x/v1", weight = 0 }]': "weight must be a number > 0",
        'fallbacks = ["nope"]': "unregistered",
        'fallbacks = "fake"': "list of model names",
    }
    for line, expected in cases.items():
        home = tmp_path / str(abs(hash(line)))
        home.mkdir()
        text = FAKE_MODELS + _remote("m", "http://127.0.0.1:9/v1", "fake", line)
        (home / "config.toml").write_text(text, encoding="utf-8")
        with pytest.raises(ConfigError) as caught:
            load_settings(home=home, env={})
        assert expected in str(caught.value), (line, caught.value)


def test_an_app_run_on_a_failing_model_falls_back(tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{_free_port()}/v1"
    config = FAKE_MODELS + _remote("down", dead, "fake", 'fallbacks = ["fake"]')
    home = tmp_path / "p"
    (home / "apps").mkdir(parents=True)
    (home / "apps" / "helper.yaml").write_text(
        "app: helper\nvariants:\n  default:\n    model: down\n    system: be brief\n",
        encoding="utf-8",
    )
    with serve(make_settings(home, config).with_served(["down", "fake"])) as p:
        done = httpx.post(p.base_url + "/apps/helper/run", json={"input": "hi"}, timeout=30)
        assert done.status_code == 200, done.text
        assert done.json()["text"]
        assert p.services().calllog.get(done.json()["id"]).model == "fake"


class _ClosesIdleConnections(socketserver.BaseRequestHandler):
    """An upstream that answers the first request on each connection with keep-alive and
    drops the connection when another request comes on it: what a server's idle timeout
    firing just as a pooled connection is reused looks like to the client."""

    answered = 0
    dropped = 0

    def handle(self) -> None:
        sock: socket.socket = self.request
        data = b""
        first = True
        while True:
            while b"\r\n\r\n" not in data:
                more = sock.recv(65536)
                if not more:
                    return
                data += more
            head, _, data = data.partition(b"\r\n\r\n")
            if not first:
                type(self).dropped += 1
                return  # closed unanswered
            first = False
            length = next(
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            while len(data) < length:
                data += sock.recv(65536)
            data = data[length:]
            body = "".join(GOOD).encode()
            type(self).answered += 1  # before the answer leaves: the test reads it after
            sock.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                + f"Content-Length: {len(body)}\r\nConnection: keep-alive\r\n\r\n".encode()
                + body
            )


def test_a_kept_alive_connection_the_upstream_closed_is_sent_again(tmp_path: Path) -> None:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _ClosesIdleConnections)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/v1"
        config = FAKE_MODELS + _remote("lone", url, "m")
        with serve(make_settings(tmp_path / "proxy", config).with_served(["lone"])) as proxy:
            client = openai.OpenAI(base_url=proxy.base_url, api_key="x", max_retries=0)
            body = {"model": "lone", "messages": [{"role": "user", "content": "hi"}]}
            for stream in (False, False, True, False, True):
                if stream:
                    parts = client.chat.completions.create(**body, stream=True)
                    text = "".join(c.choices[0].delta.content or "" for c in parts if c.choices)
                else:
                    text = client.chat.completions.create(**body).choices[0].message.content
                assert text == "fine"
            # each request after the first met a dropped connection and was sent again
            assert _ClosesIdleConnections.answered == 5
            assert _ClosesIdleConnections.dropped >= 4
            assert _health(proxy, "lone")[0]["healthy"]
    finally:
        server.shutdown()
        server.server_close()


def test_a_remote_model_sends_its_callers_on_at_once_unless_capped(
    scripted: str, tmp_path: Path
) -> None:
    # the upstream queues and batches on its own: a remote model's default slots do not
    # hold sixteen callers to a few at a time; parallel = N still caps what is in flight
    slow = scripted.removesuffix("/v1") + "/slow/v1"
    config = FAKE_MODELS + _remote("wide", slow, "m") + _remote("capped", slow, "m", "parallel = 2")
    with serve(make_settings(tmp_path, config).with_served(["wide", "capped"])) as proxy:
        client = openai.OpenAI(base_url=proxy.base_url, api_key="x", max_retries=0)
        for model, most in (("wide", 12), ("capped", 2)):
            IN_FLIGHT["most"] = 0

            def ask(_: int, model: str = model) -> str:
                done = client.chat.completions.create(
                    model=model, messages=[{"role": "user", "content": "hi"}]
                )
                return done.choices[0].message.content or ""

            with ThreadPoolExecutor(16) as pool:
                assert list(pool.map(ask, range(16))) == ["fine"] * 16
            # all sixteen at once when uncapped (twelve: slack for a slow machine's threads)
            assert IN_FLIGHT["most"] >= most if model == "wide" else IN_FLIGHT["most"] == most
