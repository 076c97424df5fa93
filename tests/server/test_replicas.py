"""Two ``hearth serve`` processes on one PostgreSQL behave as one service.

The topology of ``deploy/README.md`` as plain commands: each replica has its own
``HEARTH_HOME`` (config only) and the same ``HEARTH_DATABASE_URL``; requests alternate
between them as a load balancer would send them.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.cli.test_cli import free_port
from tests.conftest import FAKE_MODELS

APP = """\
app: helper
variants:
  default:
    model: fake
    system: "{version}"
"""


def _start(home: Path, url: str) -> tuple[str, subprocess.Popen[str]]:
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.toml").write_text(FAKE_MODELS, encoding="utf-8")
    port = free_port()
    env = {**os.environ, "HEARTH_HOME": str(home), "HEARTH_DATABASE_URL": url}
    proc = subprocess.Popen(
        [sys.executable, "-m", "hearth", "serve", "--port", str(port), "--model", "fake"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    return f"http://127.0.0.1:{port}", proc


def _wait(url: str, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            out = proc.stdout.read() if proc.stdout else ""
            raise RuntimeError(f"replica did not start:\n{out}")
        time.sleep(0.1)


@pytest.fixture
def replicas(pg_url: str, tmp_path: Path) -> Iterator[tuple[str, str]]:
    started = [_start(tmp_path / f"replica{i}", pg_url) for i in range(2)]
    try:
        for url, proc in started:
            _wait(url, proc)
        yield started[0][0], started[1][0]
    finally:
        for _, proc in started:
            proc.send_signal(signal.SIGINT)
        for _, proc in started:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()


def _admin(pg_url: str, home: Path) -> str:
    env = {**os.environ, "HEARTH_HOME": str(home), "HEARTH_DATABASE_URL": pg_url}
    done = subprocess.run(
        [sys.executable, "-m", "hearth", "keys", "create", "root", "--admin", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return str(json.loads(done.stdout)["key"])


def _until(check: object, seconds: float) -> float:
    """Seconds until ``check()`` is true; fails after ``seconds``."""
    start = time.monotonic()
    while not check():  # type: ignore[operator]
        assert time.monotonic() - start < seconds, f"not within {seconds} s"
        time.sleep(0.05)
    return time.monotonic() - start


def test_two_replicas_behave_as_one_service(
    replicas: tuple[str, str], pg_url: str, tmp_path: Path
) -> None:
    a, b = replicas
    root = _admin(pg_url, tmp_path / "cli")
    admin = {"Authorization": f"Bearer {root}"}
    clients = [openai.OpenAI(base_url=u + "/v1", api_key=root, max_retries=0) for u in (a, b)]
    sent = 0

    # A conversation continued on the other replica remembers.
    conv = clients[0].conversations.create()
    for turn in range(4):
        clients[turn % 2].responses.create(model="fake", input=f"turn {turn}", conversation=conv.id)
        sent += 1
    items = clients[1].conversations.items.list(conv.id, order="asc").data
    said = [c.text for i in items if i.type == "message" and i.role == "user" for c in i.content]
    assert said == [f"turn {t}" for t in range(4)]
    first = clients[0].responses.create(model="fake", input="remember 42")
    follow = clients[1].responses.create(model="fake", input="?", previous_response_id=first.id)
    sent += 2
    assert follow.usage is not None and first.usage is not None
    assert follow.usage.input_tokens > first.usage.input_tokens  # the history came along

    # A key revoked on one replica is refused by the other within a second.
    made = httpx.post(a + "/v1/keys", json={"name": "temp"}, headers=admin).json()
    temp = {"Authorization": f"Bearer {made['key']}"}
    body = {"model": "fake", "messages": [{"role": "user", "content": "hi"}]}
    assert httpx.post(b + "/v1/chat/completions", json=body, headers=temp).status_code == 200
    sent += 1
    assert httpx.delete(f"{a}/v1/keys/{made['id']}", headers=admin).status_code == 200
    answered: list[int] = []

    def refused() -> bool:
        code = httpx.post(b + "/v1/chat/completions", json=body, headers=temp).status_code
        answered.extend([1] if code == 200 else [])
        return code == 401

    assert _until(refused, 1.0) < 1.0
    sent += len(answered)

    # Rate limits hold across replicas: 5 requests a minute, alternating, 5 pass.
    limited = httpx.post(a + "/v1/keys", json={"name": "rpm", "rpm": 5}, headers=admin).json()
    headers = {"Authorization": f"Bearer {limited['key']}"}
    codes = [
        httpx.post(u + "/v1/chat/completions", json=body, headers=headers).status_code
        for u in [a, b] * 4
    ]
    assert codes == [200] * 5 + [429] * 3, codes
    sent += 5

    # An app file changed through the API on one replica reaches the other.
    put = httpx.put(a + "/v1/apps/helper", content=APP.format(version="v1"), headers=admin)
    assert put.status_code == 200, put.text
    _until(lambda: httpx.get(b + "/v1/apps/helper", headers=admin).status_code == 200, 2)
    httpx.put(a + "/v1/apps/helper", content=APP.format(version="v2"), headers=admin)
    _until(lambda: "v2" in httpx.get(b + "/v1/apps/helper", headers=admin).json()["text"], 2)
    assert httpx.delete(a + "/v1/apps/helper", headers=admin).status_code in (200, 204)
    _until(lambda: httpx.get(b + "/v1/apps/helper", headers=admin).status_code == 404, 2)

    # The call log has every call once, whichever replica served it (rate-limited requests
    # are refused before they become calls).
    for url in (a, b):
        usage = httpx.get(url + "/v1/usage?by=model", headers=admin).json()
        fake = [r for r in usage["data"] if r["model"] == "fake"]
        assert sum(r["calls"] for r in fake) == sent, usage
