"""A pool of llama.cpp's own servers (xllamacpp, the bundled SmolLM2) behind a remote model:
one is killed outright mid-run and no client request fails; it comes back on its port and
the probe returns it to the pool."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from hearth.hub import bundled
from tests.conftest import make_settings, serve

pytestmark = pytest.mark.slow

SMOL = "smollm2-135m-instruct"

SERVER = """
import sys, time, xllamacpp
p = xllamacpp.CommonParams()
p.model.path = sys.argv[1]
p.n_parallel = 2
p.n_ctx = 4096
p.cpuparams.n_threads = p.cpuparams_batch.n_threads = 1
p.port = int(sys.argv[2])
p.verbosity = -1
server = xllamacpp.Server(p)
print(server.listening_address, flush=True)
while True:
    time.sleep(3600)
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LlamaServer:
    def __init__(self, script: Path, model: Path, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}/v1"
        self.proc = subprocess.Popen(
            [sys.executable, str(script), str(model), str(port)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(self.url + "/models", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            assert self.proc.poll() is None, "llama.cpp's server exited"
            assert time.monotonic() < deadline, "llama.cpp's server did not start"
            time.sleep(0.2)

    def kill(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)


@pytest.fixture
def llama(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    script = tmp_path / "llama_server.py"
    script.write_text(SERVER, encoding="utf-8")
    yield script, bundled.ensure(SMOL, tmp_path / "models")


def test_a_pool_of_llamacpp_servers_survives_one_killed(
    llama: tuple[Path, Path], tmp_path: Path
) -> None:
    script, model = llama
    port = _free_port()
    a = LlamaServer(script, model, _free_port())
    b = LlamaServer(script, model, port)
    servers = [a, b]
    try:
        config = f"""
[models.pool]
engine = "remote"
urls = ["{a.url}", "{b.url}"]
upstream_model = "smol"
"""
        with serve(make_settings(tmp_path / "proxy", config).with_served(["pool"])) as proxy:
            client = openai.OpenAI(base_url=proxy.base_url, api_key="x", max_retries=0)

            def ask(stream: bool = False) -> str:
                messages = [{"role": "user", "content": "Count from one to twenty."}]
                if not stream:
                    done = client.chat.completions.create(
                        model="pool", messages=messages, max_tokens=24, temperature=0
                    )
                    assert done.usage is not None and done.usage.completion_tokens > 0
                    return done.choices[0].message.content or ""
                parts = client.chat.completions.create(
                    model="pool", messages=messages, max_tokens=8, stream=True
                )
                return "".join(c.choices[0].delta.content or "" for c in parts if c.choices)

            errors: list[Exception] = []
            answers: list[str] = []
            stop = threading.Event()

            def hammer() -> None:
                while not stop.is_set():
                    try:
                        answers.append(ask())
                    except Exception as e:  # noqa: BLE001 - collected and asserted on below
                        errors.append(e)

            workers = [threading.Thread(target=hammer) for _ in range(3)]
            for w in workers:
                w.start()
            time.sleep(3.0)
            b.kill()  # outright, with answers half generated on it
            time.sleep(3.0)
            stop.set()
            for w in workers:
                w.join()
            assert not errors, errors[:3]
            assert len(answers) > 6 and all(answers), answers[:3]
            upstreams = httpx.get(proxy.url + "/health").json()["models"][0]["upstreams"]
            assert upstreams[0]["healthy"] and not upstreams[1]["healthy"], upstreams
            assert ask(stream=True)  # streamed answers go to the one left

            # b comes back on its port: the probe returns it, and it serves again
            servers.append(LlamaServer(script, model, port))
            deadline = time.monotonic() + 20
            while True:
                upstreams = httpx.get(proxy.url + "/health").json()["models"][0]["upstreams"]
                if upstreams[1]["healthy"]:
                    break
                assert time.monotonic() < deadline, "the restarted server was not probed back"
                time.sleep(0.2)
            before = upstreams[1]["served"]
            for _ in range(4):
                assert ask(stream=True)
            after = httpx.get(proxy.url + "/health").json()["models"][0]["upstreams"][1]
            assert after["served"] > before, after
    finally:
        for s in servers:
            if s.proc.poll() is None:
                s.kill()
