"""Helpers for the benchmark scripts: statistics, streamed requests and their summaries,
server subprocesses, a watch on other work sharing the machine, and machine info."""

from __future__ import annotations

import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:  # only types: scripts that do not stream need not import openai
    from openai import AsyncOpenAI
    from openai.types.chat import ChatCompletionMessageParam

RESULTS = Path(__file__).resolve().parent / "results"


# -- statistics ---------------------------------------------------------------------------
def median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear-interpolated percentile (numpy's default), ``q`` in 0..100."""
    if not values:
        return None
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


# -- streamed requests -------------------------------------------------------------------
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
    """Record one chunk as llama.cpp hands it to the in-process callback."""
    for choice in chunk.get("choices") or []:
        if (choice.get("delta") or {}).get("content"):
            sample.saw_content(now)
        if choice.get("finish_reason"):
            sample.finish_reason = choice["finish_reason"]
    if chunk.get("usage"):
        sample.usage_tokens = int(chunk["usage"]["completion_tokens"])


async def stream_chat(
    client: AsyncOpenAI,
    model: str,
    messages: list[ChatCompletionMessageParam],
    sampling: dict[str, Any],
    max_tokens: int,
) -> Sample:
    """One streamed chat completion through the real ``openai`` client."""
    sample = Sample(sent=time.perf_counter())
    stream = await client.chat.completions.create(
        model=model,
        messages=messages,
        max_tokens=max_tokens,
        stream=True,
        stream_options={"include_usage": True},
        extra_body=sampling,
    )
    async for chunk in stream:
        now = time.perf_counter()
        # Attributes rather than model_dump(): the client shares the CPUs with the server.
        for choice in chunk.choices:
            if choice.delta.content:
                sample.saw_content(now)
            if choice.finish_reason:
                sample.finish_reason = choice.finish_reason
        if chunk.usage is not None:
            sample.usage_tokens = chunk.usage.completion_tokens
    return sample


# -- summaries ----------------------------------------------------------------------------
def rounded(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000


def sample_json(sample: Sample, max_tokens: int) -> dict[str, Any]:
    return {
        "tokens": sample.tokens(max_tokens),
        "counted_from": "usage"
        if sample.usage_tokens is not None
        else ("finish_reason=length" if sample.finish_reason == "length" else "chunks"),
        "finish_reason": sample.finish_reason,
        "ttft_ms": rounded(_ms(sample.ttft())),
        "decode_tok_s": rounded(sample.decode_rate(max_tokens)),
        "e2e_tok_s": rounded(sample.e2e_rate(max_tokens)),
    }


def _present(values: list[Any]) -> list[float]:
    return [v for v in values if v is not None]


def summarise_single(samples: list[Sample], max_tokens: int) -> dict[str, Any]:
    rows = [sample_json(s, max_tokens) for s in samples]
    return {
        "decode_tok_s": rounded(median(_present([r["decode_tok_s"] for r in rows]))),
        "e2e_tok_s": rounded(median(_present([r["e2e_tok_s"] for r in rows]))),
        "ttft_ms_p50": rounded(median(_present([r["ttft_ms"] for r in rows]))),
        "requests": rows,
    }


def summarise_rounds(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    clients = [c for r in rounds for c in r["clients"]]
    ttfts = _present([c["ttft_ms"] for c in clients])
    rates = [c["e2e_tok_s"] or 0.0 for c in clients]
    return {
        "aggregate_tok_s": rounded(median(_present([r["aggregate_tok_s"] for r in rounds]))),
        "client_tok_s_min": rounded(min(rates)),
        "client_tok_s_max": rounded(max(rates)),
        "ttft_ms_p50": rounded(percentile(ttfts, 50)),
        "ttft_ms_p95": rounded(percentile(ttfts, 95)),
        "ttft_ms_max": rounded(max(ttfts) if ttfts else None),
        "starved_clients": sum(1 for c in clients if not c["tokens"] or c["ttft_ms"] is None),
        "rounds": rounds,
    }


# -- other work on the machine ------------------------------------------------------------
class CpuWatch:
    """CPU time that processes other than ``pids`` used while the watch ran.

    llama.cpp runs one thread per core and synchronises them every token, so a neighbour
    that takes even part of one core slows decoding several-fold; this says when that
    happened, so nobody reads a busy machine as a slow server.
    """

    def __init__(self, pids: Sequence[int]) -> None:
        self.pids = list(pids)
        self.other_cpu_s = 0.0
        self.share = 0.0

    def __enter__(self) -> CpuWatch:
        self._start = (time.perf_counter(), _busy_cpu_s(), self._ours())
        return self

    def __exit__(self, *exc: object) -> None:
        wall0, busy0, ours0 = self._start
        wall = time.perf_counter() - wall0
        other = (_busy_cpu_s() - busy0) - (self._ours() - ours0)
        self.other_cpu_s = max(0.0, other)
        self.share = self.other_cpu_s / (wall * (os.cpu_count() or 1)) if wall > 0 else 0.0

    def _ours(self) -> float:
        return sum(_process_cpu_s(pid) for pid in self.pids)

    def report(self) -> dict[str, float]:
        return {"other_cpu_s": round(self.other_cpu_s, 2), "other_cpu_share": round(self.share, 3)}


def _busy_cpu_s() -> float:
    # /proc/stat "cpu": user nice system idle iowait irq softirq steal ...
    ticks = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    busy = sum(ticks) - ticks[3] - ticks[4]
    return busy / os.sysconf("SC_CLK_TCK")


def _process_cpu_s(pid: int) -> float:
    # Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- subprocess servers -------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """One server subprocess: started, polled until ready, and always stopped.

    Output goes to a log file rather than a pipe: a full pipe would stall the server
    mid-benchmark; its tail is printed when anything fails while the server runs.
    """

    def __init__(self, name: str, cmd: list[str], env: dict[str, str] | None = None) -> None:
        self.name = name
        self.cmd = cmd
        self.env = env
        fd, log_path = tempfile.mkstemp(prefix=f"bench-{name}-", suffix=".log")
        os.close(fd)
        self.log_path = Path(log_path)
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> ServerProcess:
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                self.cmd, stdout=log, stderr=subprocess.STDOUT, env=self.env
            )
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        if exc_type is not None and self.proc is not None:
            print(f"--- last lines of {self.name}'s log ---\n{self.log_tail()}", file=sys.stderr)
        self.stop()

    @property
    def pid(self) -> int:
        assert self.proc is not None, "server not started"
        return self.proc.pid

    def wait_ready(
        self, url: str, ready: Callable[[httpx.Response], bool], timeout: float
    ) -> float:
        """Poll ``url`` until ``ready(response)``; return the seconds it took."""
        assert self.proc is not None, "server not started"
        start = time.perf_counter()
        deadline = start + timeout
        while time.perf_counter() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with code {self.proc.returncode} before it was ready "
                    "(its log is above)"
                )
            try:
                resp = httpx.get(url, timeout=2)
                if resp.status_code == 200 and ready(resp):
                    return time.perf_counter() - start
            except httpx.TransportError:
                pass  # not listening yet
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} not ready after {timeout:.0f}s (its log is above)")

    def rss_mib(self) -> dict[str, float]:
        """Resident memory now (VmRSS) and at its peak (VmHWM), in MiB."""
        out = {}
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = round(int(value.split()[0]) / 1024, 1)
        return out

    def log_tail(self, lines: int = 30) -> str:
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        self.log_path.unlink(missing_ok=True)


# -- reporting ----------------------------------------------------------------------------
def version_of(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def python_package_version(python: str, module: str) -> str | None:
    """``module.__version__`` as seen by another interpreter (the peer's venv)."""
    try:
        out = subprocess.run(
            [python, "-c", f"import {module}; print({module}.__version__)"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def machine_info() -> dict[str, Any]:
    return {
        "cpu_count": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "platform": platform.platform(),
        "python": sys.version.split()[0],
    }


def _cpu_model() -> str | None:
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.is_file() else []
    for line in lines:
        if line.startswith("model name"):
            return line.partition(":")[2].strip()
    return platform.processor() or None


def write_json(name: str, data: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / name
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


# -- the two servers the serving benchmarks compare --------------------------------------
@dataclass
class Launch:
    """A server subprocess not yet started, and how to tell that it is ready."""

    server: ServerProcess
    base: str  # http://127.0.0.1:port
    ready_path: str
    ready: Callable[[httpx.Response], bool]


def hearth_launch(model: str, home: Path) -> Launch:
    """``hearth serve`` from this venv with ``model``, its home at ``home``."""
    port = free_port()
    cmd = [str(Path(sys.executable).with_name("hearth")), "serve", "--model", model]
    cmd += ["--port", str(port), "--log-level", "warning"]
    # HEARTH_HOME from us and nothing else: a stray HEARTH_MODEL or HEARTH_PORT must not
    # change what is measured.
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEARTH_")}
    env["HEARTH_HOME"] = str(home)

    def loaded(resp: httpx.Response) -> bool:
        return any(m["id"] == model and m["loaded"] for m in resp.json()["models"])

    server = ServerProcess("hearth", cmd, env)
    return Launch(server, f"http://127.0.0.1:{port}", "/health", loaded)


def peer_launch(python: Path, model: str, gguf: str, context: int, threads: int) -> Launch:
    """llama-cpp-python's OpenAI server on the same GGUF, set up like hearth's engine."""
    port = free_port()
    cmd = [str(python), "-m", "llama_cpp.server", "--model", gguf, "--model_alias", model]
    cmd += ["--host", "127.0.0.1", "--port", str(port)]
    # One context as long as each of hearth's slots, and as many threads.
    cmd += ["--n_ctx", str(context), "--n_threads", str(threads)]
    cmd += ["--n_threads_batch", str(threads)]
    # By default a queued request cuts the running stream short with [DONE]; here every
    # client must get its whole answer, as it does from hearth.
    cmd += ["--interrupt_requests", "False"]
    server = ServerProcess("peer", cmd)
    return Launch(server, f"http://127.0.0.1:{port}", "/v1/models", lambda _: True)
