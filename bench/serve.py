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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from openai import AsyncOpenAI
from rich.console import Console
from rich.table import Table

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
FULL = {"max_tokens": 64, "repeats": 5, "rounds": 3}
QUICK = {"max_tokens": 16, "repeats": 2, "rounds": 1}
# Piped output would otherwise be cut to 80 columns.
console = Console(width=None if sys.stdout.isatty() else 120)


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
        inprocess_once(server, payload)  # warm-up
        return [inprocess_once(server, payload) for _ in range(repeats)]
    finally:
        # Free the model before the next server starts: one at a time.
        del server
        engine._pool.shutdown(wait=False)
        gc.collect()


def inprocess_once(server: Any, payload: dict[str, Any]) -> Sample:
    sample = Sample(sent=time.perf_counter())

    def on_chunk(chunk: dict[str, Any]) -> bool:
        see_chunk(sample, chunk, time.perf_counter())
        return False  # keep generating

    server.handle_chat_completions(payload, on_chunk)
    return sample


def hearth_command(args: argparse.Namespace, port: int) -> tuple[list[str], dict[str, str]]:
    exe = Path(sys.executable).with_name("hearth")
    cmd = [str(exe), "serve", "--model", args.model, "--port", str(port), "--log-level", "warning"]
    # HEARTH_HOME from us and nothing else: a stray HEARTH_MODEL or HEARTH_PORT must not
    # change what is measured.
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEARTH_")}
    env["HEARTH_HOME"] = str(args.home)
    return cmd, env


def run_hearth(args: argparse.Namespace, sampling: dict[str, Any]) -> dict[str, Any]:
    port = free_port()
    cmd, env = hearth_command(args, port)
    base = f"http://127.0.0.1:{port}"
    console.print(f"[bold]hearth[/]: {' '.join(cmd)}")
    with ServerProcess("hearth", cmd, env) as server:
        load_s = server.wait_ready(f"{base}/health", _loaded(args.model), args.timeout)
        rss: dict[str, Any] = {}
        figures = asyncio.run(
            measure(
                args,
                f"{base}/v1",
                sampling,
                single=True,
                after_warmup=lambda: rss.update(after_warmup=server.rss_mib()),
            )
        )
        rss["after_concurrent"] = server.rss_mib()
    return {"load_s": round(load_s, 2), **figures, "rss_mib": rss}


def _loaded(model: str) -> Callable[[httpx.Response], bool]:
    def ready(resp: httpx.Response) -> bool:
        return any(m.get("id") == model and m.get("loaded") for m in resp.json()["models"])

    return ready


def run_peer(args: argparse.Namespace, spec: ModelSpec, sampling: dict[str, Any]) -> dict[str, Any]:
    port = free_port()
    threads = str(spec.threads or os.cpu_count() or 1)  # what hearth's engine uses
    cmd = [str(args.peer_python), "-m", "llama_cpp.server", "--model", str(spec.path)]
    cmd += ["--model_alias", args.model, "--host", "127.0.0.1", "--port", str(port)]
    # One context as long as each of hearth's slots.
    cmd += ["--n_ctx", str(spec.context), "--n_threads", threads, "--n_threads_batch", threads]
    # By default a queued request cuts the running stream short with [DONE]; here every
    # client must get its whole answer, as it does from hearth.
    cmd += ["--interrupt_requests", "False"]
    base = f"http://127.0.0.1:{port}"
    console.print(f"[bold]peer[/]: {' '.join(cmd)}")
    with ServerProcess("peer", cmd) as server:
        load_s = server.wait_ready(f"{base}/v1/models", lambda _: True, args.timeout)
        rss: dict[str, Any] = {}
        figures = asyncio.run(
            measure(
                args,
                f"{base}/v1",
                sampling,
                single=False,
                after_warmup=lambda: rss.update(after_warmup=server.rss_mib()),
            )
        )
        rss["after_concurrent"] = server.rss_mib()
    return {"load_s": round(load_s, 2), **figures, "rss_mib": rss}


# -- measuring a server over HTTP ---------------------------------------------------------
async def measure(
    args: argparse.Namespace,
    base_url: str,
    sampling: dict[str, Any],
    *,
    single: bool,
    after_warmup: Callable[[], None],
) -> dict[str, Any]:
    client = AsyncOpenAI(base_url=base_url, api_key="bench", max_retries=0, timeout=args.timeout)
    out: dict[str, Any] = {}
    try:
        await stream_chat(client, args.model, sampling, args.max_tokens)  # warm-up
        after_warmup()
        if single:
            console.print(f"  single stream x{args.repeats}")
            samples = [
                await stream_chat(client, args.model, sampling, args.max_tokens)
                for _ in range(args.repeats)
            ]
            out["single"] = summarise_single(samples, args.max_tokens)
        # The same prompt comes again and again, so llama.cpp serves it from its prompt
        # cache, but only in a slot that has seen it. One unmeasured round of full-length
        # answers fills every slot (a short round would not: finished requests free their
        # slot for the next), so the rounds below measure a server in its steady state.
        await concurrent_round(client, args, sampling)
        rounds = []
        for n in range(args.rounds):
            console.print(f"  {args.clients} concurrent clients, round {n + 1}/{args.rounds}")
            rounds.append(await concurrent_round(client, args, sampling))
        out["concurrent"] = summarise_rounds(rounds)
    finally:
        await client.close()
    return out


async def concurrent_round(
    client: AsyncOpenAI, args: argparse.Namespace, sampling: dict[str, Any]
) -> dict[str, Any]:
    start = time.perf_counter()
    samples = await asyncio.gather(
        *(stream_chat(client, args.model, sampling, args.max_tokens) for _ in range(args.clients))
    )
    lasts = [s.last for s in samples if s.last is not None]
    wall = max(lasts) - start if lasts else None
    tokens = sum(s.tokens(args.max_tokens) for s in samples)
    return {
        "wall_s": _round(wall, 3),
        "tokens": tokens,
        "aggregate_tok_s": _round(tokens / wall if wall else None),
        "clients": [_sample_json(s, args.max_tokens) for s in samples],
    }


# -- summaries ----------------------------------------------------------------------------
def _round(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000


def _sample_json(sample: Sample, max_tokens: int) -> dict[str, Any]:
    return {
        "tokens": sample.tokens(max_tokens),
        "counted_from": "usage"
        if sample.usage_tokens is not None
        else ("finish_reason=length" if sample.finish_reason == "length" else "chunks"),
        "finish_reason": sample.finish_reason,
        "ttft_ms": _round(_ms(sample.ttft())),
        "decode_tok_s": _round(sample.decode_rate(max_tokens)),
        "e2e_tok_s": _round(sample.e2e_rate(max_tokens)),
    }


def _present(values: list[Any]) -> list[float]:
    return [v for v in values if v is not None]


def summarise_single(samples: list[Sample], max_tokens: int) -> dict[str, Any]:
    rows = [_sample_json(s, max_tokens) for s in samples]
    return {
        "decode_tok_s": _round(median(_present([r["decode_tok_s"] for r in rows]))),
        "e2e_tok_s": _round(median(_present([r["e2e_tok_s"] for r in rows]))),
        "ttft_ms_p50": _round(median(_present([r["ttft_ms"] for r in rows]))),
        "requests": rows,
    }


def summarise_rounds(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    clients = [c for r in rounds for c in r["clients"]]
    ttfts = _present([c["ttft_ms"] for c in clients])
    rates = [c["e2e_tok_s"] or 0.0 for c in clients]
    return {
        "aggregate_tok_s": _round(median(_present([r["aggregate_tok_s"] for r in rounds]))),
        "client_tok_s_min": _round(min(rates)),
        "client_tok_s_max": _round(max(rates)),
        "ttft_ms_p50": _round(percentile(ttfts, 50)),
        "ttft_ms_p95": _round(percentile(ttfts, 95)),
        "ttft_ms_max": _round(max(ttfts) if ttfts else None),
        "starved_clients": sum(1 for c in clients if not c["tokens"] or c["ttft_ms"] is None),
        "rounds": rounds,
    }


# -- goals and the table ------------------------------------------------------------------
def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b


def _status(ok: bool | None) -> str:
    return "SKIP" if ok is None else ("PASS" if ok else "FAIL")


def goals(
    inproc: dict[str, Any], hearth: dict[str, Any], peer: dict[str, Any] | None
) -> dict[str, Any]:
    single, conc = hearth["single"], hearth["concurrent"]
    peer_conc = peer["concurrent"] if peer else {}
    single_ratio = _ratio(single["decode_tok_s"], inproc["decode_tok_s"])
    overhead = (
        single["ttft_ms_p50"] - inproc["ttft_ms_p50"]
        if single["ttft_ms_p50"] is not None and inproc["ttft_ms_p50"] is not None
        else None
    )
    # Both sides of the gain count from request sent to last token.
    gain = _ratio(conc["aggregate_tok_s"], single["e2e_tok_s"])
    peer_ratio = _ratio(conc["aggregate_tok_s"], peer_conc.get("aggregate_tok_s"))
    p95_ratio = _ratio(conc["ttft_ms_p95"], peer_conc.get("ttft_ms_p95"))
    fed = conc["starved_clients"] == 0 and conc["client_tok_s_min"] > 0

    def row(value: float | None, ok: bool | None, goal: str) -> dict[str, Any]:
        return {"value": _round(value, 3), "goal": goal, "status": _status(ok)}

    return {
        "single_stream_ratio": row(
            single_ratio,
            None if single_ratio is None else single_ratio >= GOALS["single_ratio"],
            f">= {GOALS['single_ratio']}x in-process decode tok/s",
        ),
        "ttft_overhead_ms_p50": row(
            overhead,
            None if overhead is None else overhead < GOALS["ttft_overhead_ms"],
            f"< {GOALS['ttft_overhead_ms']:g} ms over in-process",
        ),
        "concurrency_gain": row(
            gain,
            None if gain is None else gain >= GOALS["concurrency_gain"],
            f">= {GOALS['concurrency_gain']}x single-stream e2e tok/s",
        ),
        "no_client_starves": row(
            conc["client_tok_s_min"], fed, "every client gets tokens (min tok/s > 0)"
        ),
        "peer_aggregate_ratio": row(
            peer_ratio,
            None if peer_ratio is None else peer_ratio >= GOALS["peer_ratio"],
            f">= {GOALS['peer_ratio']}x peer aggregate tok/s",
        ),
        "peer_ttft_p95_ratio": row(
            p95_ratio,
            None if p95_ratio is None else p95_ratio <= GOALS["peer_ttft_p95_ratio"],
            f"<= {GOALS['peer_ttft_p95_ratio']}x peer TTFT p95",
        ),
    }


def _fmt(value: float | None, spec: str = ".1f") -> str:
    return "—" if value is None else format(value, spec)


def render(result: dict[str, Any]) -> Table:
    p, inproc, hearth = result["parameters"], result["inprocess"], result["hearth"]
    peer = result["peer"] if "concurrent" in result["peer"] else None
    g = result["goals"]
    single, conc = hearth["single"], hearth["concurrent"]
    pc = peer["concurrent"] if peer else {}

    def mark(name: str) -> str:
        status = g[name]["status"]
        colour = {"PASS": "green", "FAIL": "red"}.get(status, "yellow")
        return f"[{colour}]{status}[/]"

    def ratio(name: str) -> str:
        return _fmt(g[name]["value"], ".2f") + "x"

    table = Table(
        title=f"hearth serve benchmark — {p['model']}, {p['max_tokens']} tokens, "
        f"{result['machine']['cpu_count']} CPUs",
        caption="single stream: median of "
        f"{p['repeats']} requests; concurrency: {p['clients']} clients, median of "
        f"{p['rounds']} rounds",
    )
    for col in ("figure", "hearth", "in-process / peer", "ratio / delta", "goal", ""):
        table.add_column(col, justify="left" if col in ("figure", "goal") else "right")
    table.add_section()
    table.add_row(
        "single: decode tok/s",
        _fmt(single["decode_tok_s"]),
        _fmt(inproc["decode_tok_s"]),
        ratio("single_stream_ratio"),
        "≥ 0.95x",
        mark("single_stream_ratio"),
    )
    table.add_row(
        "single: end-to-end tok/s",
        _fmt(single["e2e_tok_s"]),
        _fmt(inproc["e2e_tok_s"]),
        _fmt(_ratio(single["e2e_tok_s"], inproc["e2e_tok_s"]), ".2f") + "x",
        "",
        "",
    )
    table.add_row(
        "single: TTFT p50 ms",
        _fmt(single["ttft_ms_p50"]),
        _fmt(inproc["ttft_ms_p50"]),
        "+" + _fmt(g["ttft_overhead_ms_p50"]["value"]) + " ms",
        "< 15 ms",
        mark("ttft_overhead_ms_p50"),
    )
    table.add_section()
    table.add_row(
        f"{p['clients']} clients: aggregate tok/s",
        _fmt(conc["aggregate_tok_s"]),
        _fmt(pc.get("aggregate_tok_s")),
        ratio("peer_aggregate_ratio"),
        "≥ 1.3x peer",
        mark("peer_aggregate_ratio"),
    )
    table.add_row(
        "aggregate / single e2e",
        _fmt(conc["aggregate_tok_s"]),
        _fmt(single["e2e_tok_s"]) + " (hearth)",
        ratio("concurrency_gain"),
        "≥ 1.3x",
        mark("concurrency_gain"),
    )
    table.add_row(
        "per-client tok/s min–max",
        f"{_fmt(conc['client_tok_s_min'])}–{_fmt(conc['client_tok_s_max'])}",
        f"{_fmt(pc.get('client_tok_s_min'))}–{_fmt(pc.get('client_tok_s_max'))}",
        "",
        "all > 0",
        mark("no_client_starves"),
    )
    table.add_row(
        "TTFT p50 ms",
        _fmt(conc["ttft_ms_p50"]),
        _fmt(pc.get("ttft_ms_p50")),
        _fmt(_ratio(conc["ttft_ms_p50"], pc.get("ttft_ms_p50")), ".2f") + "x",
        "",
        "",
    )
    table.add_row(
        "TTFT p95 ms",
        _fmt(conc["ttft_ms_p95"]),
        _fmt(pc.get("ttft_ms_p95")),
        ratio("peer_ttft_p95_ratio"),
        "≤ 0.2x peer",
        mark("peer_ttft_p95_ratio"),
    )
    table.add_section()
    for when in ("after_warmup", "after_concurrent"):
        table.add_row(
            f"RSS MiB {when.replace('_', ' ')}",
            _fmt(hearth["rss_mib"][when]["VmRSS"], ".0f"),
            _fmt(peer["rss_mib"][when]["VmRSS"], ".0f") + " (peer)" if peer else "—",
            "",
            "",
            "",
        )
    return table


# -- entry point --------------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    default_peer = ROOT / ".cache" / "peer" / "bin" / "python"
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--model", default=DEFAULT_MODEL, help="a bundled llama.cpp model")
    ap.add_argument("--max-tokens", type=int, help="tokens per answer (64; quick: 16)")
    ap.add_argument("--repeats", type=int, help="single-stream requests per engine (5; quick: 2)")
    ap.add_argument("--clients", type=int, default=8, help="concurrent streaming clients (8)")
    ap.add_argument("--rounds", type=int, help="concurrent rounds per server (3; quick: 1)")
    ap.add_argument("--quick", action="store_true", help="smoke run: the quick defaults above")
    ap.add_argument(
        "--peer-python",
        type=Path,
        default=default_peer if default_peer.exists() else None,
        help="python with llama-cpp-python[server] (default: .cache/peer/bin/python)",
    )
    ap.add_argument("--no-peer", action="store_true", help="skip llama-cpp-python")
    ap.add_argument(
        "--home",
        type=Path,
        default=Path.home() / ".hearth-bench",
        help="HEARTH_HOME for the run; the model is assembled here once and reused",
    )
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds per load or request")
    ap.add_argument("--out", default="serve.json", help="file name under bench/results/")
    args = ap.parse_args(argv)
    defaults = QUICK if args.quick else FULL
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.home = args.home.expanduser().resolve()
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings = load_settings(home=args.home, env={})
    if args.model not in settings.models or settings.models[args.model].engine != "llamacpp":
        llama = [n for n, m in settings.models.items() if m.engine == "llamacpp"]
        console.print(f"[red]--model must be a llama.cpp model: {', '.join(llama)}[/]")
        return 2
    console.print(f"assembling {args.model} in {settings.models_dir} (once) ...")
    spec = resolve(settings.models[args.model], settings)
    sampling = {**spec.sampling, "temperature": 0.0}
    payload = {
        "messages": MESSAGES,
        **sampling,
        "max_tokens": args.max_tokens,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    started, t0 = time.strftime("%Y-%m-%dT%H:%M:%S%z"), time.perf_counter()
    machine = machine_info()

    console.print(f"[bold]in-process[/]: xllamacpp.Server, single stream x{args.repeats}")
    inproc = summarise_single(inprocess_single(spec, payload, args.repeats), args.max_tokens)
    hearth = run_hearth(args, sampling)
    peer: dict[str, Any]
    if args.no_peer:
        peer = {"skipped": "--no-peer"}
    elif args.peer_python is None or not Path(args.peer_python).exists():
        peer = {
            "skipped": "no llama-cpp-python venv; build one with: python3 -m venv .cache/peer "
            "&& .cache/peer/bin/pip install 'llama-cpp-python[server]' (or pass --peer-python)"
        }
    else:
        peer = run_peer(args, spec, sampling)
    if "skipped" in peer:
        console.print(f"[yellow]peer skipped: {peer['skipped']}[/]")

    result = {
        "benchmark": "serve",
        "started_at": started,
        "duration_s": round(time.perf_counter() - t0, 1),
        "machine": machine
        | {
            "hearth": version_of("hearth"),
            "xllamacpp": version_of("xllamacpp"),
            "openai": version_of("openai"),
            "llama_cpp_python_peer": python_package_version(str(args.peer_python), "llama_cpp")
            if "skipped" not in peer
            else None,
        },
        "parameters": {
            "model": args.model,
            "gguf": spec.path,
            "prompt": PROMPT,
            "sampling": sampling,
            "max_tokens": args.max_tokens,
            "repeats": args.repeats,
            "clients": args.clients,
            "rounds": args.rounds,
            "quick": args.quick,
            "threads": spec.threads or os.cpu_count(),
            "n_parallel": spec.parallel,
            "context_per_slot": spec.context,
            "peer_python": str(args.peer_python) if args.peer_python else None,
        },
        "inprocess": inproc,
        "hearth": hearth,
        "peer": peer,
    }
    result["goals"] = goals(inproc, hearth, peer if "concurrent" in peer else None)
    console.print(render(result))
    path = write_json(args.out, result)
    console.print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
