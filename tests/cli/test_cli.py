"""The `hearth` command, run as a user runs it: a subprocess with its own HEARTH_HOME."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.conftest import FAKE_MODELS

HEARTH = [sys.executable, "-m", "hearth"]


def run(home: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HEARTH_HOME": str(home), "COLUMNS": "200"}
    return subprocess.run(
        [*HEARTH, *args], input=stdin, capture_output=True, text=True, env=env, timeout=120
    )


@pytest.fixture
def home(tmp_path: Path) -> Path:
    (tmp_path / "config.toml").write_text(FAKE_MODELS, encoding="utf-8")
    return tmp_path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def hearth_serve(home: Path, *args: str) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    port = free_port()
    env = {**os.environ, "HEARTH_HOME": str(home)}
    proc = subprocess.Popen(
        [*HEARTH, "serve", "--port", str(port), *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    "server did not start:\n" + (proc.stdout.read() if proc.stdout else "")
                )
            time.sleep(0.1)
        yield url, proc
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_help_teaches_the_commands(home: Path) -> None:
    out = run(home, "--help")
    assert out.returncode == 0
    for command in ("serve", "chat", "usage", "models"):
        assert command in out.stdout
    serve_help = run(home, "serve", "--help").stdout
    assert "--model" in serve_help and "--port" in serve_help


def test_models_list_json_includes_builtin_and_configured(home: Path) -> None:
    out = run(home, "models", "list", "--json")
    assert out.returncode == 0, out.stderr
    rows = {r["name"]: r for r in json.loads(out.stdout)}
    assert rows["qwen2.5-0.5b-instruct"]["default"] is True
    assert rows["fake"]["engine"] == "fake"
    assert rows["fake"]["price_output_per_1k"] == 1.5


def test_bad_config_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text('[models.x]\nengine = "warp"\n', encoding="utf-8")
    out = run(tmp_path, "models", "list")
    assert out.returncode == 2
    assert "engine must be one of" in out.stderr
    assert "Traceback" not in out.stderr


def test_serve_prints_address_and_answers(home: Path) -> None:
    with hearth_serve(home, "--model", "fake", "--model", "fake-embed") as (url, _):
        models = httpx.get(url + "/v1/models").json()
        assert [m["id"] for m in models["data"]] == ["fake", "fake-embed"]
        r = httpx.post(
            url + "/v1/chat/completions",
            json={"model": "fake", "messages": [{"role": "user", "content": "hi"}]},
        )
        assert r.status_code == 200
    # after the server stops, the call is in the log and `hearth usage` shows it
    out = run(home, "usage", "--json")
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    assert rows and rows[0]["model"] == "fake" and rows[0]["calls"] == 1
    assert rows[0]["total_tokens"] == r.json()["usage"]["total_tokens"]


def test_serve_unknown_model_fails_fast(home: Path) -> None:
    out = run(home, "serve", "--model", "nope")
    assert out.returncode == 2
    assert "Unknown model 'nope'" in out.stderr


def test_usage_since_filters_and_rejects_bad_dates(home: Path) -> None:
    out = run(home, "usage", "--since", "yesterday")
    assert out.returncode == 2 and "--since" in out.stderr and "Traceback" not in out.stderr
    assert run(home, "usage").stdout.startswith("No calls logged yet")
    out = run(home, "usage", "--since", "2999-01-01", "--json")
    assert json.loads(out.stdout) == []


def test_chat_streams_keeps_history_and_resets(home: Path) -> None:
    out = run(home, "chat", "--model", "fake", stdin="hello\n/reset\nagain\n/exit\n")
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("Hello from hearth!") == 2
    assert "history cleared" in out.stdout
    assert "prompt +" in out.stdout  # usage after each answer


@pytest.mark.slow
def test_make_serve_quickstart_on_default_model(tmp_path: Path) -> None:
    """What `make serve` runs: the default model answers the README's curl quickstart."""
    with hearth_serve(tmp_path) as (url, _proc):
        body = {
            "model": "qwen2.5-0.5b-instruct",
            "messages": [{"role": "user", "content": "中国的首都是哪里?"}],
            "max_tokens": 30,
            "temperature": 0,
        }
        r = httpx.post(url + "/v1/chat/completions", json=body, timeout=120)
        assert r.status_code == 200
        assert "北京" in r.json()["choices"][0]["message"]["content"]


def test_serving_beyond_this_machine_without_a_key_warns(home: Path) -> None:
    with hearth_serve(home, "--host", "0.0.0.0", "--model", "fake", "--no-preload") as (_, proc):
        pass
    printed = proc.stdout.read() if proc.stdout else ""
    assert "warning" in printed and "no API key" in printed, printed
    made = run(home, "keys", "create", "admin", "--admin")
    assert made.returncode == 0 and "hk-" in made.stdout, made.stderr
    with hearth_serve(home, "--host", "0.0.0.0", "--model", "fake", "--no-preload") as (url, proc):
        assert httpx.get(url + "/v1/models").status_code == 401
    printed = proc.stdout.read() if proc.stdout else ""
    assert "no API key" not in printed, printed
