"""Soak test: many streaming clients for minutes on a real model, a share of them hanging up
mid-stream, then the books are checked.

    .venv/bin/python bench/soak.py                          # 32 clients x 10 minutes
    .venv/bin/python bench/soak.py --clients 8 --minutes 1  # a smoke run

Starts `hearth serve` on the bundled default model in a fresh HEARTH_HOME. Every client sends
streaming chat requests back to back, each with a different prompt (Chinese and English);
one client in four (--drop) closes its connection after a few tokens. Measured: requests,
answers by HTTP status and the 5xx among them, streams completed and dropped; then the call
log is read back and compared with what the clients saw: every request must be logged
exactly once, as `ok` when it completed and `cancelled` when it was dropped. The server's
resident memory is read every 30 s; the slope after warm-up (the first third) says whether it
grows. Prints a table and writes bench/results/soak.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sqlite3
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from rich.console import Console
from rich.table import Table

from _common import ServerProcess, free_port, machine_info, write_json
from hearth.config import DEFAULT_MODEL
from hearth.hub import bundled

TOPICS_ZH = ["年假", "报销", "密码", "会议室", "温控器", "净化器", "入职", "出差", "预算", "网络"]
TOPICS_EN = ["remote work", "caching", "SQLite", "git branches", "incidents", "Lisbon", "bread"]


def prompt(rng: random.Random) -> str:
    """A different question each time, so no two requests share a cached answer."""
    n = rng.randint(2, 999)
    if rng.random() < 0.5:
        return f"请用{n % 5 + 1}句话介绍一下关于{rng.choice(TOPICS_ZH)}的第{n}条建议。"
    return f"Give tip number {n} about {rng.choice(TOPICS_EN)} in {n % 4 + 1} sentences."


@dataclass
class Books:
    """What the clients saw."""

    statuses: Counter[int] = field(default_factory=Counter)
    completed: set[str] = field(default_factory=set)  # ids of streams read to [DONE]
    dropped: set[str] = field(default_factory=set)  # ids of streams we hung up on
    transport_errors: Counter[str] = field(default_factory=Counter)
    unlabelled_drops: int = 0  # hung up before any chunk told us the id


async def client(
    number: int, url: str, model: str, args: argparse.Namespace, books: Books, stop: float
) -> None:
    rng = random.Random(number)
    drops = number % round(1 / args.drop) == 0 if args.drop > 0 else False
    async with httpx.AsyncClient(base_url=url, timeout=httpx.Timeout(600, connect=10)) as http:
        while time.monotonic() < stop:
            body = {
                "model": model,
                "messages": [{"role": "user", "content": prompt(rng)}],
                "max_tokens": rng.randint(args.max_tokens // 2, args.max_tokens),
                "stream": True,
            }
            cut_after = rng.randint(2, 6) if drops else None
            try:
                await one_request(http, body, cut_after, books)
            except httpx.HTTPError as e:
                books.transport_errors[type(e).__name__] += 1


async def one_request(
    http: httpx.AsyncClient, body: dict[str, Any], cut_after: int | None, books: Books
) -> None:
    async with http.stream("POST", "/v1/chat/completions", json=body) as resp:
        books.statuses[resp.status_code] += 1
        if resp.status_code != 200:
            await resp.aread()
            return
        seen, call_id = 0, None
        async for line in resp.aiter_lines():
            if not line.startswith("data: "):
                continue
            data = line[6:]
            if data == "[DONE]":
                if call_id:
                    books.completed.add(call_id)
                return
            chunk = json.loads(data)
            call_id = call_id or chunk.get("id")
            seen += 1
            if cut_after is not None and seen >= cut_after:
                break  # leaving the block closes the connection mid-stream
        if call_id:
            books.dropped.add(call_id)
        else:
            books.unlabelled_drops += 1


async def watch_memory(server: ServerProcess, every: float, stop: float, out: list[Any]) -> None:
    started = time.monotonic()
    while True:
        out.append({"t_s": round(time.monotonic() - started, 1), **server.rss_mib()})
        if time.monotonic() + every > stop:
            return
        await asyncio.sleep(every)


async def drive(url: str, model: str, args: argparse.Namespace, server: ServerProcess) -> Any:
    books = Books()
    memory: list[dict[str, float]] = []
    stop = time.monotonic() + args.minutes * 60
    clients = [client(i, url, model, args, books, stop) for i in range(args.clients)]
    await asyncio.gather(watch_memory(server, 30.0, stop, memory), *clients)
    memory.append({"t_s": round(args.minutes * 60 + 0.0, 1), **server.rss_mib()})
    return books, memory


def read_log(db: Path) -> dict[str, str]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT id, status FROM calls WHERE endpoint = 'chat.completions'")
        return dict(rows.fetchall())


def slope_mib_per_min(memory: list[dict[str, float]]) -> float | None:
    """Least-squares slope of resident memory over time, after the first third (warm-up)."""
    after = [m for m in memory if m["t_s"] >= memory[-1]["t_s"] / 3]
    if len(after) < 3:
        return None
    t = np.array([m["t_s"] / 60 for m in after])
    rss = np.array([m["VmRSS"] for m in after])
    return float(np.polyfit(t, rss, 1)[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--drop", type=float, default=0.25, help="share of clients that hang up")
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--prompt-cache-mib", type=int, help="the model's prompt_cache_mib")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="hearth-soak-"))
    if args.prompt_cache_mib is not None:
        config = f'[models."{args.model}"]\nprompt_cache_mib = {args.prompt_cache_mib}\n'
        (home / "config.toml").write_text(config, encoding="utf-8")
    bundled.ensure(args.model, home / "models")
    port = free_port()
    cmd = [str(Path(sys.executable).with_name("hearth")), "serve", "--model", args.model]
    cmd += ["--port", str(port), "--log-level", "warning"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEARTH_")}
    env["HEARTH_HOME"] = str(home)
    url = f"http://127.0.0.1:{port}"
    with ServerProcess("hearth", cmd, env) as server:
        server.wait_ready(url + "/health", lambda r: r.json()["models"][0]["loaded"], 300)
        started = time.monotonic()
        books, memory = asyncio.run(drive(url, args.model, args, server))
        seconds = time.monotonic() - started
        time.sleep(3)  # rows of the last hung-up streams are written as their slots let go
        logged = read_log(home / "hearth.db")
    report(args, books, memory, logged, seconds)


def report(
    args: argparse.Namespace,
    books: Books,
    memory: list[dict[str, float]],
    logged: dict[str, str],
    seconds: float,
) -> None:
    seen = books.completed | books.dropped
    requests = sum(books.statuses.values())
    five_xx = sum(n for status, n in books.statuses.items() if status >= 500)
    by_status = Counter(logged.values())
    missing = sorted(seen - set(logged))
    # a request refused before it streamed (a full queue: 429) is logged as an error
    unexpected = sorted({i for i, status in logged.items() if status != "error"} - seen)
    wrong = [i for i in books.completed if logged.get(i) not in (None, "ok")]
    wrong += [i for i in books.dropped if logged.get(i) not in (None, "cancelled")]
    slope = slope_mib_per_min(memory)
    table = Table(title=f"soak: {args.clients} clients x {args.minutes:g} min, {args.model}")
    for col in ("figure", "value", "goal", ""):
        table.add_column(col)

    def row(name: str, value: Any, goal: str = "", ok: bool | None = None) -> None:
        table.add_row(name, str(value), goal, "" if ok is None else ("PASS" if ok else "FAIL"))

    row("requests", requests)
    row("requests per second", f"{requests / seconds:.2f}")
    row("answers by status", dict(sorted(books.statuses.items())))
    row("5xx answers", five_xx, "0", five_xx == 0)
    row("streams completed / dropped", f"{len(books.completed)} / {len(books.dropped)}")
    row("transport errors", dict(books.transport_errors), "none", not books.transport_errors)
    row("call-log rows by status", dict(sorted(by_status.items())))
    row("requests not logged", len(missing), "0", not missing)
    row("rows for no request seen", len(unexpected), "0", not unexpected)
    row("rows with the wrong status", len(wrong), "0", not wrong)
    rss = [m["VmRSS"] for m in memory]
    row("RSS first / last / max, MiB", f"{rss[0]:.0f} / {rss[-1]:.0f} / {max(rss):.0f}")
    flat = slope is not None and abs(slope) < 1.0
    shown = "n/a" if slope is None else f"{slope:+.2f}"
    row("RSS slope after warm-up, MiB/min", shown, "|slope| < 1", flat)
    Console(width=120).print(table)
    path = write_json(
        "soak.json",
        {
            "machine": machine_info(),
            "clients": args.clients,
            "minutes": args.minutes,
            "drop_share": args.drop,
            "max_tokens": args.max_tokens,
            "model": args.model,
            "prompt_cache_mib": args.prompt_cache_mib,
            "requests": requests,
            "seconds": round(seconds, 1),
            "statuses": {str(k): v for k, v in sorted(books.statuses.items())},
            "five_xx": five_xx,
            "completed": len(books.completed),
            "dropped": len(books.dropped),
            "unlabelled_drops": books.unlabelled_drops,
            "transport_errors": dict(books.transport_errors),
            "log_rows_by_status": dict(sorted(by_status.items())),
            "not_logged": missing[:20],
            "not_requested": unexpected[:20],
            "wrong_status": wrong[:20],
            "rss_mib": memory,
            "rss_slope_mib_per_min_after_warmup": slope,
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
