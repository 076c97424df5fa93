"""Serving benchmark: hearth against its own engine in-process and against llama-cpp-python.

    .venv/bin/python bench/serve.py            # full run: a few minutes on 2 cores
    .venv/bin/python bench/serve.py --quick    # smoke run: fewer tokens and repeats

Prints a table and writes bench/results/serve.json. One model, one prompt, one max_tokens
and one sampling setup (greedy, plus the model's own repeat penalty) for every server, and
the servers run one at a time, never two at once:

1. single stream: ``hearth serve`` (subprocess, real ``openai`` client, streaming) against
   the same ``xllamacpp.Server`` built by hearth's own ``LlamaCppEngine._load`` and called
   in this process; tokens/s, TTFT and the overhead hearth adds;
2. concurrency: N streaming clients at once through hearth; aggregate tokens/s and whether
   any client starves;
3. the peer: the same N clients against llama-cpp-python's OpenAI server;
4. hearth's resident memory with the model loaded.

The peer needs llama-cpp-python in its own venv, built from source (~11 min on 2 cores):

    python3 -m venv .cache/peer && .cache/peer/bin/pip install 'llama-cpp-python[server]'

Then it is found at .cache/peer/bin/python, or pass ``--peer-python``.

Tokens are counted from usage where the server reports it, else as max_tokens when the
answer stopped for length, else as content chunks (llama-cpp-python streams no usage).
The bundled model is assembled once into ``--home`` (default ~/.hearth-bench) and reused.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
from _common import (
    ServerProcess,
    free_port,
    machine_info,
    median,
    percentile,
    python_package_version,
    version_of,
    write_json,
)
from openai import AsyncOpenAI
from rich.console import Console
from rich.table import Table

from hearth.config import DEFAULT_MODEL, ModelSpec, load_settings
from hearth.engines.llamacpp import LlamaCppEngine
from hearth.engines.registry import resolve

ROOT = Path(__file__).resolve().parent.parent
PROMPT = (
    "Write a long, detailed, step-by-step guide to baking sourdough bread at home: the "
    "starter, the flour, mixing, folding, shaping, proofing and baking. Be thorough."
)
MESSAGES = [{"role": "user", "content": PROMPT}]
GOALS = {
    "single_ratio": 0.95,  # hearth / in-process decode tokens/s, at least
    "ttft_overhead_ms": 15.0,  # hearth TTFT p50 minus in-process, below
    "concurrency_gain": 1.3,  # aggregate with N clients / single stream, at least
    "peer_ratio": 1.3,  # hearth / peer aggregate tokens/s, at least
    "peer_ttft_p95_ratio": 0.2,  # hearth / peer TTFT p95, at most
}
console = Console()


# -- one request --------------------------------------------------------------------------
@dataclass
class Sample:
    """Timings of one streamed request, all from ``time.perf_counter``."""

    sent: float
    first: float | None = None  # first chunk carrying content
    last: float | None = None  # last chunk carrying content
    chunks: int = 0
    usage_tokens: int | None = None
    finish_reason: str | None = None

    def saw_content(self, now: float) -> None:
        self.first = self.first if self.first is not None else now
        self.last = now
        self.chunks += 1

    def tokens(self, max_tokens: int) -> int:
        if self.usage_tokens is not None:
            return self.usage_tokens
        if self.finish_reason == "length":
            return max_tokens
        return self.chunks

    def ttft(self) -> float | None:
        return None if self.first is None else self.first - self.sent

    def decode_rate(self, max_tokens: int) -> float | None:
        # The first token closes the prefill, so n tokens span n - 1 decode steps.
        n = self.tokens(max_tokens)
        if self.first is None or self.last is None or n < 2 or self.last <= self.first:
            return None
        return (n - 1) / (self.last - self.first)

    def e2e_rate(self, max_tokens: int) -> float | None:
        if self.last is None or self.last <= self.sent:
            return None
        return self.tokens(max_tokens) / (self.last - self.sent)


def see_chunk(sample: Sample, chunk: dict[str, Any], now: float) -> None:
    """Record one OpenAI-shaped chunk (a dict) into ``sample``."""
    for choice in chunk.get("choices") or []:
        if (choice.get("delta") or {}).get("content"):
            sample.saw_content(now)
        if choice.get("finish_reason"):
            sample.finish_reason = choice["finish_reason"]
    if chunk.get("usage"):
        sample.usage_tokens = int(chunk["usage"]["completion_tokens"])


async def stream_chat(
    client: AsyncOpenAI, model: str, sampling: dict[str, Any], max_tokens: int
) -> Sample:
    sample = Sample(sent=time.perf_counter())
    stream = await client.chat.completions.create(
        model=model,
        messages=MESSAGES,  # type: ignore[arg-type]
        max_tokens=max_tokens,
        stream=True,
        stream_options={"include_usage": True},
        extra_body=sampling,
    )
    async for chunk in stream:
        see_chunk(sample, chunk.model_dump(), time.perf_counter())
    return sample


# -- the three ways to serve --------------------------------------------------------------
def inprocess_single(spec: ModelSpec, payload: dict[str, Any], repeats: int) -> list[Sample]:
    """The engine hearth wraps, called directly: the ceiling hearth is measured against."""
    engine = LlamaCppEngine(spec)
    # Built by hearth's own loader so n_parallel, n_ctx and threads match the server exactly.
    server = engine._load()
    try:

        def once() -> Sample:
            sample = Sample(sent=time.perf_counter())

            def on_chunk(chunk: dict[str, Any]) -> bool:
                see_chunk(sample, chunk, time.perf_counter())
                return False  # keep going

            server.handle_chat_completions(payload, on_chunk)
            return sample

        once()  # warm-up
        return [once() for _ in range(repeats)]
    finally:
        del server
        engine._pool.shutdown(wait=False)
        gc.collect()


def hearth_command(args: argparse.Namespace, port: int) -> tuple[list[str], dict[str, str]]:
    exe = Path(sys.executable).with_name("hearth")
    cmd = [str(exe), "serve", "--model", args.model, "--port", str(port)]
    cmd += ["--log-level", "warning"]
    # Only HEARTH_HOME from us: a stray HEARTH_MODEL or HEARTH_PORT must not change the run.
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEARTH_")}
    env["HEARTH_HOME"] = str(args.home)
    return cmd, env


def run_hearth(args: argparse.Namespace, sampling: dict[str, Any]) -> dict[str, Any]:
    port = free_port()
    cmd, env = hearth_command(args, port)
    base = f"http://127.0.0.1:{port}"
    with ServerProcess("hearth", cmd, env) as server:
        console.print(f"[bold]hearth[/]: starting {' '.join(cmd)}")
        load_s = server.wait_ready(f"{base}/health", _hearth_loaded(args.model), args.timeout)
        single, rounds = asyncio.run(_client_runs(args, f"{base}/v1", sampling, single=True))
        rss_warm = rounds.pop("rss_after_warmup")
        return {
            "load_s": round(load_s, 2),
            "single": single,
            "concurrent": rounds["concurrent"],
            "rss_mib": {"after_warmup": rss_warm, "after_concurrent": server.rss_mib()},
        } | _rss_hook(server)


def _rss_hook(server: ServerProcess) -> dict[str, Any]:
    return {}


def _hearth_loaded(model: str) -> Any:
    def ready(resp: httpx.Response) -> bool:
        models = resp.json().get("models", [])
        return any(m.get("id") == model and m.get("loaded") for m in models)

    return ready


def run_peer(args: argparse.Namespace, spec: ModelSpec, sampling: dict[str, Any]) -> dict[str, Any]:
    port = free_port()
    threads = str(spec.threads or os.cpu_count() or 1)  # what hearth's engine uses
    cmd = [str(args.peer_python), "-m", "llama_cpp.server", "--model", str(spec.path)]
    cmd += ["--model_alias", args.model, "--host", "127.0.0.1", "--port", str(port)]
    cmd += ["--n_ctx", str(spec.context), "--n_threads", threads, "--n_threads_batch", threads]
    # By default a queued request cuts the running stream short with [DONE]; every client
    # here must get its whole answer, as it does from hearth.
    cmd += ["--interrupt_requests", "False"]
    base = f"http://127.0.0.1:{port}"
    with ServerProcess("peer", cmd) as server:
        console.print(f"[bold]peer[/]: starting {' '.join(cmd)}")
        load_s = server.wait_ready(f"{base}/v1/models", lambda r: True, args.timeout)
        _, rounds = asyncio.run(_client_runs(args, f"{base}/v1", sampling, single=False))
        rounds.pop("rss_after_warmup")
        return {
            "load_s": round(load_s, 2),
            "concurrent": rounds["concurrent"],
            "rss_mib": server.rss_mib(),
        }
