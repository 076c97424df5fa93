"""Serving benchmark, realistic workload: distinct prompts of mixed lengths arriving over time.

    .venv/bin/python bench/serve_workload.py            # full run: about 12 min on 2 cores
    .venv/bin/python bench/serve_workload.py --quick    # smoke run: 2 rates x 6 requests

``bench/serve.py`` sends one prompt again and again, so llama.cpp answers from its prompt
cache and only decoding is measured. Here every request is a different prompt, Chinese or
English, 20 to 1,000 tokens before the chat template (log-uniform, counted by the model's
own tokenizer): short ones are
questions from the sample knowledge base, longer ones an instruction over an excerpt of the
sample corpus and documents, each excerpt starting at a different sentence, so prompts share
no more than the chat template and an instruction, as real traffic does. max_tokens is
drawn from 32-128; temperature 0.8 with the model's top_p and repeat penalty, a seed per
request. Requests arrive as a Poisson process at each rate (``inf``: all at once), as in
vLLM's benchmarks/benchmark_serving.py, each rate with its own requests. All of it comes
from ``--seed``, so ``hearth serve`` and llama-cpp-python's OpenAI server (the peer, see
bench/serve.py) get the same requests at the same moments, one server at a time. Each
rate runs on a freshly started server, hearth then the peer, and runs again (``--tries``)
while other processes take more than 5% of the CPUs.

Prints a table and writes bench/results/serve_workload.json: per rate, request and output
throughput, TTFT, TPOT, ITL, end-to-end latency and failures (METHOD below). The peer
streams no usage, so its answers count as max_tokens when cut for length, else as content
chunks; every answer's text is also counted by the model's tokenizer, as a check.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import re
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import httpx
import openai
from openai import AsyncOpenAI
from rich.console import Console
from rich.table import Table

from _common import (
    CpuWatch,
    Launch,
    hearth_launch,
    machine_info,
    peer_launch,
    percentile,
    python_package_version,
    rounded,
    version_of,
    write_json,
)
from hearth.config import DEFAULT_MODEL, load_settings
from hearth.engines.registry import resolve
from hearth.rag.parse import parse
from hearth.tokens.corpus import CHINESE, ENGLISH, detect
from hearth.tokens.model import ModelTokenizer, open_model
from hearth.types import Message

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(str(resources.files("hearth") / "data"))
SHORT = 48  # prompts shorter than this are bare questions
SENTENCE = re.compile(r"(?:[。！？!?]|\.(?=\s)|\n)\s*")
INSTRUCTIONS = {
    CHINESE: [
        "请用三句话概括下面这段文字。",
        "根据下面的材料，列出三个要点，并逐条解释。",
        "把下面这段话翻译成英文。",
        "读完下面的内容，写一段简短的评论。",
        "下面这段文字讲了什么？请详细回答。",
    ],
    ENGLISH: [
        "Summarise the text below in three sentences.",
        "List the three most important points in the text below and explain each.",
        "Translate the text below into Chinese.",
        "Write a short comment on the text below.",
        "What is the text below about? Answer in detail.",
    ],
}
FULL = {"rates": "0.25,0.5,1,inf", "requests": 24, "max_tokens": "32,128"}
QUICK = {"rates": "1,inf", "requests": 6, "max_tokens": "16,48"}
METRICS = [  # key, label, higher is better
    ("request_throughput", "req/s", True),
    ("output_tok_s", "out tok/s", True),
    ("ttft_ms_p50", "TTFT p50", False),
    ("ttft_ms_p99", "TTFT p99", False),
    ("tpot_ms_p50", "TPOT p50", False),
    ("tpot_ms_p99", "TPOT p99", False),
    ("itl_ms_p50", "ITL p50", False),
    ("itl_ms_p99", "ITL p99", False),
    ("e2e_ms_p50", "E2E p50", False),
    ("e2e_ms_p99", "E2E p99", False),
]
METHOD = {
    "arrivals": "Poisson: exponential gaps of mean 1/rate drawn from the seed, the first at 0; "
    "inf sends every request at once",
    "duration": "first arrival to the end of the last answer",
    "ttft": "request sent to first chunk with content",
    "tpot": "per request: (last content chunk - first) / (output tokens - 1)",
    "itl": "every gap between consecutive content chunks, all requests pooled",
    "e2e": "request sent to end of stream",
    "output_tokens": "usage when reported (hearth), else max_tokens when finish_reason is "
    "length, else content chunks (llama-cpp-python streams no usage); retokenized: the "
    "answers' text counted by the model's tokenizer, as a check",
    "failed": "requests that raised an error (HTTP status or transport)",
}
BUSY_SHARE = 0.05  # other processes' share of all cores above which figures are suspect
console = Console(width=None if sys.stdout.isatty() else 160)


# -- the workload -------------------------------------------------------------------------
@dataclass(frozen=True)
class Request:
    prompt: str
    lang: str
    prompt_tokens: int  # with the chat template, by the model's own tokenizer
    max_tokens: int
    at: float  # seconds after the rate's start
    seed: int


def pools() -> tuple[dict[str, str], dict[str, list[str]]]:
    """Text to cut excerpts from, and questions, by language."""
    docs = sorted((DATA / "corpus").glob("*.txt")) + sorted((DATA / "kb_sample" / "docs").iterdir())
    blocks: dict[str, list[str]] = {CHINESE: [], ENGLISH: []}
    for block in (b.text for path in docs for b in parse(path).blocks):
        lang = detect(block)
        if lang in blocks:
            blocks[lang].append(block)
    questions: dict[str, list[str]] = {CHINESE: [], ENGLISH: []}
    for name in ("qa.jsonl", "qa_crosslingual.jsonl"):
        for line in (DATA / "kb_sample" / name).read_text(encoding="utf-8").splitlines():
            if line.strip():
                q = json.loads(line)["question"]
                questions[detect(q)].append(q)
    return {lang: "\n\n".join(b) for lang, b in blocks.items()}, questions


def arrivals(rng: random.Random, rate: float, n: int) -> list[float]:
    """Poisson arrivals: exponential gaps of mean 1/rate, the first at 0; all at 0 for inf."""
    if math.isinf(rate):
        return [0.0] * n
    at, out = 0.0, []
    for _ in range(n):
        out.append(at)
        at += rng.expovariate(rate)
    return out


def build_workload(tok: ModelTokenizer, args: argparse.Namespace) -> dict[float, list[Request]]:
    """Each rate's requests, all drawn from ``args.seed``; no prompt comes twice."""
    rng = random.Random(args.seed)
    (low, high), out = args.prompt_range, args.max_range
    texts, questions = pools()
    # Excerpts start at the start of a sentence, each at a different one.
    starts = {lang: [m.end() for m in SENTENCE.finditer(text)] for lang, text in texts.items()}
    seen: set[str] = set()
    workload = {}
    for rate in args.rate_list:
        requests = []
        for at in arrivals(rng, rate, args.requests):
            lang = rng.choice([CHINESE, ENGLISH])
            target = round(math.exp(rng.uniform(math.log(low), math.log(high))))
            if target < SHORT and questions[lang]:
                prompt = questions[lang].pop(rng.randrange(len(questions[lang])))
            else:
                instruction = rng.choice(INSTRUCTIONS[lang])
                size = max(target - tok.count(instruction) - 1, 8)
                start = starts[lang].pop(rng.randrange(len(starts[lang])))
                text = texts[lang] + "\n\n" + texts[lang]  # an excerpt may wrap around
                ids = tok.encode(text[start : start + 8 * size])[:size]
                excerpt = tok.decode(ids).strip(chr(0xFFFD)).strip()
                prompt = f"{instruction}\n\n{excerpt}"
            assert prompt not in seen, "a prompt came twice"
            seen.add(prompt)
            tokens = tok.count_chat([Message(role="user", content=prompt)])
            requests.append(
                Request(prompt, lang, tokens, rng.randint(*out), at, rng.randrange(2**31))
            )
        workload[rate] = requests
    return workload


# -- sending ------------------------------------------------------------------------------
@dataclass
class Reply:
    sent: float
    done: float = 0.0
    times: list[float] = field(default_factory=list)  # each chunk carrying content
    parts: list[str] = field(default_factory=list)
    usage_tokens: int | None = None
    finish_reason: str | None = None
    error: str | None = None

    def tokens(self, max_tokens: int) -> tuple[int, str]:
        if self.usage_tokens is not None:
            return self.usage_tokens, "usage"
        if self.finish_reason == "length":
            return max_tokens, "finish_reason=length"
        return len(self.times), "chunks"


async def send(
    client: AsyncOpenAI, model: str, req: Request, sampling: dict[str, Any], start: float
) -> Reply:
    await asyncio.sleep(max(0.0, start + req.at - time.perf_counter()))
    reply = Reply(sent=time.perf_counter())
    try:
        stream = await client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": req.prompt}],
            max_tokens=req.max_tokens,
            seed=req.seed,
            stream=True,
            stream_options={"include_usage": True},
            extra_body=sampling,
        )
        async for chunk in stream:
            now = time.perf_counter()
            for choice in chunk.choices:
                if choice.delta.content:
                    reply.times.append(now)
                    reply.parts.append(choice.delta.content)
                if choice.finish_reason:
                    reply.finish_reason = choice.finish_reason
            if chunk.usage is not None:
                reply.usage_tokens = chunk.usage.completion_tokens
    except (openai.APIError, httpx.HTTPError) as e:
        reply.error = f"{type(e).__name__}: {e}"[:300]
    reply.done = time.perf_counter()
    return reply


async def run_rate(
    base_url: str, model: str, requests: list[Request], sampling: dict[str, Any], timeout: float
) -> tuple[list[Reply], float]:
    client = AsyncOpenAI(base_url=base_url, api_key="bench", max_retries=0, timeout=timeout)
    try:
        start = time.perf_counter()
        replies = await asyncio.gather(*(send(client, model, r, sampling, start) for r in requests))
    finally:
        await client.close()
    return list(replies), max(r.done for r in replies) - start


# -- summaries ----------------------------------------------------------------------------
def _ms(values: list[float]) -> list[float]:
    return [v * 1000 for v in values]


def summarise(
    requests: list[Request], replies: list[Reply], duration: float, count: Callable[[str], int]
) -> dict[str, Any]:
    rows, ttft, tpot, itl, e2e = [], [], [], [], []
    tokens_out = prompt_in = retokenized = 0
    counted: Counter[str] = Counter()
    for req, rep in zip(requests, replies, strict=True):
        n, how = rep.tokens(req.max_tokens)
        row: dict[str, Any] = {"lang": req.lang, "at_s": round(req.at, 3), "seed": req.seed}
        row |= {"prompt_tokens": req.prompt_tokens, "max_tokens": req.max_tokens}
        row |= {"tokens": n, "counted_from": how, "finish_reason": rep.finish_reason}
        text = "".join(rep.parts)
        row |= {"chunks": len(rep.times), "retokenized": count(text) if text else 0}
        row["error"] = rep.error
        row["e2e_ms"] = round((rep.done - rep.sent) * 1000, 1)
        if rep.error is None:
            tokens_out += n
            prompt_in += req.prompt_tokens
            retokenized += row["retokenized"]
            counted[how] += 1
            e2e.append(rep.done - rep.sent)
        if rep.error is None and rep.times:
            ttft.append(rep.times[0] - rep.sent)
            row["ttft_ms"] = round(ttft[-1] * 1000, 1)
            itl += [b - a for a, b in zip(rep.times, rep.times[1:], strict=False)]
            if n > 1:
                tpot.append((rep.times[-1] - rep.times[0]) / (n - 1))
                row["tpot_ms"] = round(tpot[-1] * 1000, 2)
        rows.append(row)
    done = len(e2e)
    out: dict[str, Any] = {
        "completed": done,
        "failed": len(replies) - done,
        "empty_answers": sum(1 for r in rows if r["error"] is None and not r["chunks"]),
        "duration_s": round(duration, 2),
        "request_throughput": round(done / duration, 3),
        "input_tok_s": round(prompt_in / duration, 1),
        "output_tok_s": round(tokens_out / duration, 2),
        "output_tokens": tokens_out,
        "output_tokens_retokenized": retokenized,
        "counted_from": dict(counted),
    }
    for name, values in (("ttft", ttft), ("tpot", tpot), ("itl", itl), ("e2e", e2e)):
        ms = _ms(values)
        out[f"{name}_ms_mean"] = rounded(sum(ms) / len(ms) if ms else None, 1)
        for q in (50, 99):
            out[f"{name}_ms_p{q}"] = rounded(percentile(ms, q), 1)
    out["ttft_ms_max"] = rounded(max(_ms(ttft)) if ttft else None, 1)
    out["requests"] = rows
    return out


# -- one rate on one server --------------------------------------------------------------
def run_fresh(
    make: Callable[[], Launch],
    args: argparse.Namespace,
    requests: list[Request],
    sampling: dict[str, Any],
    count: Callable[[str], int],
) -> dict[str, Any]:
    """One rate's requests on a freshly started server, so no rate inherits another's
    cached prompts; run again (same requests, new server) while other processes took
    more than BUSY_SHARE of the CPUs, keeping the least disturbed try."""
    best: dict[str, Any] | None = None
    for attempt in range(1, args.tries + 1):
        launch = make()
        server, url = launch.server, f"{launch.base}/v1"
        with server:
            load_s = server.wait_ready(launch.base + launch.ready_path, launch.ready, args.timeout)
            warm = Request("Say hello.", ENGLISH, 0, 8, 0.0, 0)  # not measured
            asyncio.run(run_rate(url, args.model, [warm], sampling, args.timeout))
            pids = [os.getpid(), server.pid]
            waited = wait_quiet(pids)
            with CpuWatch(pids) as watch:
                replies, wall = asyncio.run(
                    run_rate(url, args.model, requests, sampling, args.timeout)
                )
            rss = server.rss_mib()
        figures = summarise(requests, replies, wall, count) | {
            "neighbours": watch.report(),
            "waited_for_quiet_s": round(waited, 1),
            "try": attempt,
            "ready_s": round(load_s, 2),
            "rss_mib": rss,
        }
        console.print(
            f"    try {attempt}: {figures['completed']} done in {wall:.0f}s, other processes "
            f"{watch.share:.0%} of the CPUs"
        )
        if best is None or watch.share < best["neighbours"]["other_cpu_share"]:
            best = figures
        if watch.share <= BUSY_SHARE:
            break
    assert best is not None
    return best


def wait_quiet(pids: list[int], limit_s: float = 300.0) -> float:
    """Wait, up to ``limit_s``, for 5 s in which other processes leave the CPUs alone.

    llama.cpp runs a thread per core and synchronises them every step, so a neighbour
    taking part of one core slows it several-fold; the time waited is returned."""
    start = time.perf_counter()
    while time.perf_counter() - start < limit_s:
        with CpuWatch(pids) as watch:
            time.sleep(5)
        if watch.share < BUSY_SHARE:
            break
    return time.perf_counter() - start


def label(rate: float) -> str:
    return "inf" if math.isinf(rate) else f"{rate:g}"


def ratios(hearth: dict[str, Any], peer: dict[str, Any]) -> dict[str, dict[str, float | None]]:
    """hearth / peer for every figure of the table, per rate."""
    out = {}
    for rate, ours in hearth["rates"].items():
        theirs = peer["rates"][rate]
        out[rate] = {
            k: rounded(ours[k] / theirs[k] if ours[k] and theirs[k] else None, 3)
            for k, _, _ in METRICS
        }
    return out


def describe(requests: list[Request]) -> dict[str, Any]:
    lengths = [r.prompt_tokens for r in requests]
    return {
        "languages": dict(Counter(r.lang for r in requests)),
        "prompt_tokens": {"min": min(lengths), "p50": percentile(lengths, 50)}
        | {"max": max(lengths), "total": sum(lengths)},
        "max_tokens_total": sum(r.max_tokens for r in requests),
        "last_arrival_s": round(max(r.at for r in requests), 2),
    }


# -- the table ----------------------------------------------------------------------------
def _fmt(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:,.0f}" if value >= 100 else f"{value:.2f}" if value < 10 else f"{value:.1f}"


def render(result: dict[str, Any]) -> Table:
    p = result["parameters"]
    peer = result["peer"].get("rates", {})
    low = min(w["prompt_tokens"]["min"] for w in result["workload"].values())
    high = max(w["prompt_tokens"]["max"] for w in result["workload"].values())
    table = Table(
        title=f"hearth serve, realistic workload: {p['model']}, {p['requests_per_rate']} "
        f"distinct prompts per rate (zh/en, {low}-{high} tokens with the chat template), "
        f"max_tokens {p['max_tokens'][0]}-{p['max_tokens'][1]}, "
        f"{result['machine']['cpu_count']} CPUs",
        caption="Times in ms. ×: hearth / llama-cpp-python (green where hearth is better: "
        "higher throughput, lower latency). TPOT: per request, after the first token; "
        "ITL: gaps between streamed chunks.",
    )
    table.add_column("rate", justify="right")
    table.add_column("server")
    for _, name, _ in METRICS:
        table.add_column(name, justify="right")
    table.add_column("failed", justify="right")
    for rate, ours in result["hearth"]["rates"].items():
        theirs = peer.get(rate)
        table.add_row(rate, "hearth", *(_fmt(ours[k]) for k, _, _ in METRICS), str(ours["failed"]))
        if theirs is None:
            continue
        table.add_row(
            "", "llama-cpp-python", *(_fmt(theirs[k]) for k, _, _ in METRICS), str(theirs["failed"])
        )
        cells = []
        for key, _, higher in METRICS:
            ratio = result["ratios"][rate][key]
            better = ratio is not None and (ratio > 1 if higher else ratio < 1)
            cells.append(
                "—" if ratio is None else f"[{'green' if better else 'red'}]{ratio:.2f}x[/]"
            )
        table.add_row("", "×", *cells, "")
        table.add_section()
    return table


# -- entry point --------------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    default_peer = ROOT / ".cache" / "peer" / "bin" / "python"
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--model", default=DEFAULT_MODEL, help="a bundled llama.cpp model")
    ap.add_argument(
        "--rates", help="request rates per second, inf for all at once (0.25,0.5,1,inf)"
    )
    ap.add_argument("--requests", type=int, help="requests per rate (24; quick: 6)")
    ap.add_argument("--seed", type=int, default=0, help="draws prompts, lengths and arrivals (0)")
    ap.add_argument("--prompt-tokens", default="20,1000", help="prompt length range (20,1000)")
    ap.add_argument("--max-tokens", help="max_tokens range (32,128; quick: 16,48)")
    ap.add_argument("--temperature", type=float, default=0.8, help="sampling temperature (0.8)")
    ap.add_argument("--quick", action="store_true", help="smoke run: the quick defaults above")
    ap.add_argument(
        "--peer-python",
        type=Path,
        default=default_peer if default_peer.exists() else None,
        help="python with llama-cpp-python[server] (default: .cache/peer/bin/python)",
    )
    ap.add_argument("--no-peer", action="store_true", help="skip llama-cpp-python")
    ap.add_argument("--home", type=Path, default=Path.home() / ".hearth-bench", help="HEARTH_HOME")
    ap.add_argument("--tries", type=int, default=3, help="runs per rate while the CPUs are busy")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds per load or request")
    ap.add_argument("--out", default="serve_workload.json", help="file name under bench/results/")
    args = ap.parse_args(argv)
    for key, value in (QUICK if args.quick else FULL).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.rate_list = [float(r) for r in args.rates.split(",")]
    args.prompt_range = [int(x) for x in args.prompt_tokens.split(",")]
    args.max_range = [int(x) for x in args.max_tokens.split(",")]
    args.home = args.home.expanduser().resolve()
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings = load_settings(home=args.home, env={})
    if args.model not in settings.models or settings.models[args.model].engine != "llamacpp":
        console.print("[red]--model must be a bundled llama.cpp model[/]")
        return 2
    started, t0 = time.strftime("%Y-%m-%dT%H:%M:%S%z"), time.perf_counter()
    machine = machine_info()
    spec = resolve(settings.models[args.model], settings)
    sampling = {**spec.sampling, "temperature": args.temperature}
    console.print(f"drawing the workload with {args.model}'s tokenizer (seed {args.seed}) ...")
    # The tokenizer stays loaded to count the answers' text between rates; idle, it uses
    # no CPU while the servers are measured.
    tok = open_model(args.model, settings)
    try:
        workload = build_workload(tok, args)
        servers: dict[str, Callable[[], Launch]] = {
            "hearth": lambda: hearth_launch(args.model, args.home)
        }
        peer: dict[str, Any] = {"skipped": "--no-peer"}
        if not args.no_peer and args.peer_python is None:
            peer = {"skipped": "no llama-cpp-python venv (see bench/serve.py)"}
        elif not args.no_peer:
            threads = spec.threads or os.cpu_count() or 1
            servers["peer"] = lambda: peer_launch(
                args.peer_python, args.model, str(spec.path), spec.context, threads
            )
        for name, make in servers.items():
            shown = make().server  # never started
            console.print(f"[bold]{name}[/]: {' '.join(shown.cmd)}")
            shown.log_path.unlink()
        runs: dict[str, dict[str, Any]] = {name: {} for name in servers}
        # Rate by rate, the servers in turn: both see the machine in the same state.
        for rate, requests in workload.items():
            for name, make in servers.items():
                console.print(f"  {name}, {label(rate)} req/s: {len(requests)} requests")
                runs[name][label(rate)] = run_fresh(make, args, requests, sampling, tok.count)
        hearth = {"rates": runs["hearth"]}
        if "peer" in runs:
            peer = {"rates": runs["peer"]}
    finally:
        tok.close()
    versions = {dist: version_of(dist) for dist in ("hearth", "xllamacpp", "openai")}
    if "rates" in peer:
        versions["llama_cpp_python_peer"] = python_package_version(
            str(args.peer_python), "llama_cpp"
        )
    result = {
        "benchmark": "serve_workload",
        "started_at": started,
        "duration_s": round(time.perf_counter() - t0, 1),
        "machine": machine | versions,
        "parameters": {
            "model": args.model,
            "gguf": spec.path,
            "seed": args.seed,
            "rates": [label(r) for r in args.rate_list],
            "requests_per_rate": args.requests,
            "prompt_tokens": args.prompt_range,
            "max_tokens": args.max_range,
            "sampling": sampling,
            "quick": args.quick,
            "threads": spec.threads or os.cpu_count(),
            "n_parallel": spec.parallel,
            "context_per_slot": spec.context,
            "peer_python": str(args.peer_python) if args.peer_python else None,
        },
        "method": METHOD,
        "workload": {label(rate): describe(reqs) for rate, reqs in workload.items()},
        "hearth": hearth,
        "peer": peer,
        "ratios": ratios(hearth, peer) if "rates" in peer else {},
    }
    console.print(render(result))
    for name, part in (("hearth", hearth), ("peer", peer)):
        for key, figures in part.get("rates", {}).items():
            share = figures["neighbours"]["other_cpu_share"]
            if share > BUSY_SHARE:
                console.print(
                    f"[yellow]other processes used {share:.0%} of all cores during {name}'s "
                    f"{key} req/s run: rerun on a quiet machine before trusting it[/]"
                )
    path = write_json(args.out, result)
    console.print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
