"""Serving benchmark, same prompt, decode only: hearth against its own engine in-process
and against llama-cpp-python.

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
The prompt is the same every time, so llama.cpp answers it from its prompt cache once a
slot has seen it: each server gets a warm-up request and an unmeasured concurrent round
first, and TTFT then measures serving and queueing, not prefill. Other processes' CPU time
is watched during each phase; llama.cpp uses every core, so a busy neighbour slows it
several-fold, and the run then warns that its figures cannot be trusted.
These are decode-only figures, the ceiling of what the servers can stream; for distinct
prompts of mixed lengths arriving at set rates, prefill included, run
``bench/serve_workload.py``.
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
from pathlib import Path
from typing import Any

from openai import AsyncOpenAI
from openai.types.chat import ChatCompletionMessageParam
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from _common import (
    CpuWatch,
    Launch,
    Sample,
    hearth_launch,
    machine_info,
    peer_launch,
    python_package_version,
    rounded,
    sample_json,
    see_chunk,
    stream_chat,
    summarise_rounds,
    summarise_single,
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
MESSAGES: list[ChatCompletionMessageParam] = [{"role": "user", "content": PROMPT}]
GOALS = {
    "single_ratio": 0.95,  # hearth / in-process decode tokens/s, at least
    "ttft_overhead_ms": 15.0,  # hearth TTFT p50 minus in-process, below
    "concurrency_gain": 1.3,  # aggregate with N clients / single stream, at least
    "peer_ratio": 1.3,  # hearth / peer aggregate tokens/s, at least
    "peer_ttft_p95_ratio": 0.2,  # hearth / peer TTFT p95, at most
}
BUSY_SHARE = 0.05  # other processes' share of all cores above which figures are suspect
FULL = {"max_tokens": 64, "repeats": 5, "rounds": 3}
QUICK = {"max_tokens": 16, "repeats": 2, "rounds": 1}
# Piped output would otherwise be cut to 80 columns.
console = Console(width=None if sys.stdout.isatty() else 120)


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


def run_hearth(args: argparse.Namespace, sampling: dict[str, Any]) -> dict[str, Any]:
    return run_server(hearth_launch(args.model, args.home), args, sampling, single=True)


def run_peer(args: argparse.Namespace, spec: ModelSpec, sampling: dict[str, Any]) -> dict[str, Any]:
    threads = spec.threads or os.cpu_count() or 1  # what hearth's engine uses
    launch = peer_launch(args.peer_python, args.model, str(spec.path), spec.context, threads)
    return run_server(launch, args, sampling, single=False)


def run_server(
    launch: Launch,
    args: argparse.Namespace,
    sampling: dict[str, Any],
    *,
    single: bool,
) -> dict[str, Any]:
    """Start the server, wait until it is ready, measure it, and stop it whatever happens."""
    server, base = launch.server, launch.base
    console.print(f"[bold]{server.name}[/]: {' '.join(server.cmd)}")
    with server:
        load_s = server.wait_ready(base + launch.ready_path, launch.ready, args.timeout)
        console.print(f"  ready in {load_s:.1f}s")
        rss: dict[str, Any] = {}
        with CpuWatch([os.getpid(), server.pid]) as watch:
            figures = asyncio.run(
                measure(
                    args,
                    f"{base}/v1",
                    sampling,
                    single=single,
                    after_warmup=lambda: rss.update(after_warmup=server.rss_mib()),
                )
            )
        rss["after_concurrent"] = server.rss_mib()
    return {"ready_s": round(load_s, 2), **figures, "rss_mib": rss, "neighbours": watch.report()}


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
        await stream_chat(client, args.model, MESSAGES, sampling, args.max_tokens)  # warm-up
        after_warmup()
        if single:
            console.print(f"  single stream x{args.repeats}")
            samples = [
                await stream_chat(client, args.model, MESSAGES, sampling, args.max_tokens)
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
        *(
            stream_chat(client, args.model, MESSAGES, sampling, args.max_tokens)
            for _ in range(args.clients)
        )
    )
    lasts = [s.last for s in samples if s.last is not None]
    wall = max(lasts) - start if lasts else None
    tokens = sum(s.tokens(args.max_tokens) for s in samples)
    return {
        "wall_s": rounded(wall, 3),
        "tokens": tokens,
        "aggregate_tok_s": rounded(tokens / wall if wall else None),
        "clients": [sample_json(s, args.max_tokens) for s in samples],
    }


# -- goals and the table ------------------------------------------------------------------
def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b


def _delta(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


CHECKS = {">=": float.__ge__, ">": float.__gt__, "<": float.__lt__, "<=": float.__le__}


def goals(
    inproc: dict[str, Any], hearth: dict[str, Any], peer: dict[str, Any] | None
) -> dict[str, dict[str, Any]]:
    """Each goal: its value, the bound it must meet, and PASS, FAIL or SKIP (no figure)."""
    single, conc = hearth["single"], hearth["concurrent"]
    pc = peer["concurrent"] if peer else {}
    slowest = conc["client_tok_s_min"] if conc["starved_clients"] == 0 else 0.0
    table: dict[str, tuple[float | None, str, float, str, str]] = {
        "single_stream_ratio": (
            _ratio(single["decode_tok_s"], inproc["decode_tok_s"]),
            *(">=", GOALS["single_ratio"], "x"),
            "hearth / in-process single-stream decode tok/s",
        ),
        "ttft_overhead_ms_p50": (
            _delta(single["ttft_ms_p50"], inproc["ttft_ms_p50"]),
            *("<", GOALS["ttft_overhead_ms"], " ms"),
            "hearth minus in-process single-stream TTFT p50",
        ),
        "concurrency_gain": (
            _ratio(conc["aggregate_tok_s"], single["e2e_tok_s"]),
            *(">=", GOALS["concurrency_gain"], "x"),
            # Both count from request sent to last token.
            "hearth aggregate tok/s with N clients / hearth single-stream e2e tok/s",
        ),
        "no_client_starves": (
            slowest,
            *(">", 0.0, " tok/s"),
            "slowest client's tok/s (0 when any client got no token)",
        ),
        "peer_aggregate_ratio": (
            _ratio(conc["aggregate_tok_s"], pc.get("aggregate_tok_s")),
            *(">=", GOALS["peer_ratio"], "x"),
            "hearth / peer aggregate tok/s with N clients",
        ),
        "peer_ttft_p95_ratio": (
            _ratio(conc["ttft_ms_p95"], pc.get("ttft_ms_p95")),
            *("<=", GOALS["peer_ttft_p95_ratio"], "x"),
            "hearth / peer TTFT p95 with N clients",
        ),
    }
    out = {}
    for name, (value, op, limit, unit, what) in table.items():
        status = "SKIP" if value is None else ("PASS" if CHECKS[op](value, limit) else "FAIL")
        out[name] = {
            "value": rounded(value, 3),
            "unit": unit.strip(),
            "goal": f"{op} {limit:g}{unit}",
            "status": status,
            "what": what,
        }
    return out


def _fmt(value: float | None, spec: str = ".1f") -> str:
    return "—" if value is None else format(value, spec)


def render(result: dict[str, Any]) -> Table:
    p, g, inproc, hearth = (
        result["parameters"],
        result["goals"],
        result["inprocess"],
        result["hearth"],
    )
    single, conc = hearth["single"], hearth["concurrent"]
    peer = result["peer"] if "concurrent" in result["peer"] else {}
    pc = peer.get("concurrent", {})
    n = p["clients"]
    table = Table(
        title="hearth serve benchmark, same prompt, decode only (prompt-cache hits): "
        f"{p['model']}, {p['max_tokens']} tokens per answer, "
        f"{result['machine']['cpu_count']} CPUs",
        caption="Every request sends the same prompt, so llama.cpp answers it from its prompt "
        "cache: these rows measure decoding and serving, not prefill; bench/serve_workload.py "
        "measures distinct prompts arriving over time. Single stream: median of "
        f"{p['repeats']} requests; {n} clients: median of "
        f"{p['rounds']} rounds. Reference: the in-process engine for single-stream rows, "
        "llama-cpp-python's server below them.",
    )
    for col in ("figure", "hearth", "reference", "ratio / delta", "goal", ""):
        table.add_column(col, justify="left" if col in ("figure", "goal") else "right")

    def row(
        label: str, key: str, ours: dict[str, Any], theirs: dict[str, Any], goal: str = ""
    ) -> None:
        extra = ["", "", ""]
        if goal:
            item = g[goal]
            colour = {"PASS": "green", "FAIL": "red"}.get(item["status"], "yellow")
            unit = item["unit"]
            shown = _fmt(item["value"], "+.1f" if unit == "ms" else ".2f")
            shown += "" if item["value"] is None else ("x" if unit == "x" else f" {unit}")
            bound = item["goal"].replace(">=", "≥").replace("<=", "≤")
            extra = [shown, bound, f"[{colour}]{item['status']}[/]"]
        table.add_row(label, _fmt(ours.get(key)), _fmt(theirs.get(key)), *extra)

    row("single: decode tok/s", "decode_tok_s", single, inproc, "single_stream_ratio")
    row("single: end-to-end tok/s", "e2e_tok_s", single, inproc)
    row("single: TTFT p50 ms", "ttft_ms_p50", single, inproc, "ttft_overhead_ms_p50")
    table.add_section()
    row(f"{n} clients: aggregate tok/s", "aggregate_tok_s", conc, pc, "peer_aggregate_ratio")
    alone = {"aggregate_tok_s": single["e2e_tok_s"]}  # hearth's own single stream
    row(f"{n} clients vs hearth single e2e", "aggregate_tok_s", conc, alone, "concurrency_gain")
    row("slowest client tok/s", "client_tok_s_min", conc, pc, "no_client_starves")
    row("fastest client tok/s", "client_tok_s_max", conc, pc)
    row(f"{n} clients: TTFT p50 ms", "ttft_ms_p50", conc, pc)
    row(f"{n} clients: TTFT p95 ms", "ttft_ms_p95", conc, pc, "peer_ttft_p95_ratio")
    table.add_section()
    ours, theirs = hearth["rss_mib"], peer.get("rss_mib", {})
    for when, label in (("after_warmup", "warm-up"), ("after_concurrent", f"{n} clients")):
        row(f"RSS MiB after {label}", "VmRSS", ours[when], theirs.get(when, {}))
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
    with CpuWatch([os.getpid()]) as watch:
        samples = inprocess_single(spec, payload, args.repeats)
    inproc = summarise_single(samples, args.max_tokens) | {"neighbours": watch.report()}
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
        console.print(f"[yellow]peer skipped: {escape(peer['skipped'])}[/]")

    result = {
        "benchmark": "serve",
        "workload": "same prompt, decode only (prompt-cache hits)",
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
        "method": {
            "ttft": "request sent to first chunk with content",
            "decode_tok_s": "(completion tokens - 1) / (last content chunk - first content chunk)",
            "e2e_tok_s": "completion tokens / (last content chunk - request sent)",
            "aggregate_tok_s": "all clients' completion tokens / (last token - round start)",
            "concurrency_gain": "hearth aggregate / hearth single-stream e2e_tok_s",
            "tokens": "usage if reported, else max_tokens when finish_reason is length, "
            "else content chunks",
            "warm_up": "one request per server, then one unmeasured concurrent round, so "
            "every slot holds the (identical) prompt in llama.cpp's prompt cache",
        },
        "inprocess": inproc,
        "hearth": hearth,
        "peer": peer,
    }
    result["goals"] = goals(inproc, hearth, peer if "concurrent" in peer else None)
    console.print(render(result))
    busy = {
        name: part["neighbours"]["other_cpu_share"]
        for name, part in (("in-process", inproc), ("hearth", hearth), ("peer", peer))
        if "neighbours" in part and part["neighbours"]["other_cpu_share"] > BUSY_SHARE
    }
    if busy:
        shares = ", ".join(f"{name} {share:.0%}" for name, share in busy.items())
        console.print(
            f"[yellow]other processes used CPU during the run ({shares} of all cores): "
            "llama.cpp is very sensitive to that, so rerun on a quiet machine before "
            "trusting these figures[/]"
        )
    path = write_json(args.out, result)
    console.print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
