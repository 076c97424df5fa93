"""The ``python`` tool's sandbox: code a model wrote is hostile input.

Each run gets a fresh temporary directory (its only writable place) and a separate
process with an empty environment and resource limits (CPU time, address space, file
size, open files, processes, no core dumps), under a wall-clock timeout and an output cap;
passing any of them kills the process and everything it started. Around that, the
strongest isolation the machine offers:

- ``bwrap`` (bubblewrap) when installed: new user, PID, network, IPC and UTS namespaces;
  the whole filesystem read-only; ``/tmp`` a fresh read-only tmpfs holding only the run's
  directory; hearth's home and the server user's home hidden; the sandbox dies with its
  parent.
- otherwise ``unshare``: new user, network and PID namespaces (no network, every process
  dies with the run), the filesystem as the sandbox's user sees it.
- otherwise a plain process with the limits only.

When the server runs as root the sandbox runs as ``nobody`` (so ``/etc/shadow`` and
root's files are unreadable, and the process limit counts the sandbox's own processes).
:func:`isolation` says which of these a machine has.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path
from typing import Any

NOBODY = 65534
SHOWN = 4000  # characters of output handed back to the model

# Runs inside the sandbox with ``python -I -S``: set the limits on itself, then run the code.
_LAUNCH = r"""
import json, os, resource, signal, sys
cfg = json.loads(sys.argv[1])
def _cpu(*_):
    os.write(2, b"\nsandbox: CPU time limit\n")
    os._exit(128 + signal.SIGXCPU)
signal.signal(signal.SIGXCPU, _cpu)
if os.getuid() == 0:
    os.setgroups([]); os.setgid(cfg["gid"]); os.setuid(cfg["uid"])
def cap(kind, value):
    try:
        resource.setrlimit(kind, (value, value))
    except (ValueError, OSError):
        pass
cpu = cfg["cpu"]
try:
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
except (ValueError, OSError):
    pass
cap(resource.RLIMIT_AS, cfg["memory"])
cap(resource.RLIMIT_FSIZE, cfg["file"])
cap(resource.RLIMIT_NOFILE, 64)
cap(resource.RLIMIT_NPROC, cfg["processes"])
cap(resource.RLIMIT_CORE, 0)
os.chdir(cfg["dir"])
sys.argv = ["main.py"]
sys.path.insert(0, cfg["dir"])
with open("main.py", encoding="utf-8") as f:
    source = f.read()
del cfg, cap, cpu, f, json, resource
exec(compile(source, "main.py", "exec"), {"__name__": "__main__", "__builtins__": __builtins__})
"""


@dataclass(frozen=True)
class Limits:
    cpu_seconds: int = 5
    wall_seconds: float = 10.0
    memory_mb: int = 512
    output_bytes: int = 64_000
    file_mb: int = 16
    processes: int = 32

    @classmethod
    def from_config(cls, raw: dict[str, Any] | None) -> Limits:
        return cls(**{k: v for k, v in (raw or {}).items() if k in cls.__dataclass_fields__})


@dataclass
class Result:
    ok: bool
    stdout: str
    stderr: str
    exit_code: int | None
    seconds: float
    error: str | None = None  # why the run failed, in words for the model

    def for_model(self) -> str:
        """What the model sees: the output, and what went wrong if anything did."""
        out = self.stdout.rstrip()
        if len(out) > SHOWN:
            out = out[:SHOWN] + f"\n… ({len(self.stdout) - SHOWN} more characters)"
        parts = [out] if out else []
        if not self.ok:
            parts.append(f"error: {self.error}")
            tail = self.stderr.strip().splitlines()[-8:]
            if tail:
                parts.append("\n".join(tail))
        elif not parts:
            parts.append("(the program printed nothing; print the answer)")
        return "\n".join(parts)


def _root() -> bool:
    return os.geteuid() == 0


@cache
def isolation() -> dict[str, Any]:
    """What this machine's sandbox isolates (probed once)."""
    mode = "process"
    if shutil.which("bwrap") and _works(["bwrap", *_bwrap_base()]):
        mode = "bwrap"
    elif shutil.which("unshare") and _works(["unshare", *_UNSHARE]):
        mode = "unshare"
    namespaced = mode != "process"
    return {
        "mode": mode,
        "user": "nobody" if _root() else "the server's user",
        "network": namespaced,
        "processes_die_with_run": namespaced,
        "filesystem_read_only": mode == "bwrap",
        "home_hidden": mode == "bwrap",
        "limits": asdict(Limits()),
    }


_UNSHARE = ["--user", "--net", "--pid", "--fork", "--kill-child"]


def _bwrap_base() -> list[str]:
    return [
        "--unshare-all",
        "--die-with-parent",
        "--new-session",
        "--ro-bind",
        "/",
        "/",
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--tmpfs",
        "/tmp",
    ]


def _works(prefix: list[str], *, add: bool = True) -> bool:
    try:
        done = subprocess.run(
            [*prefix, "true"] if add else prefix,
            capture_output=True,
            timeout=10,
            **_as_nobody(),
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0


def _as_nobody(loop: asyncio.AbstractEventLoop | None = None) -> dict[str, Any]:
    """Arguments that start the child as nobody when hearth runs as root. Event loops other
    than asyncio's own (uvloop, which ``hearth serve`` runs on) do not take ``user``/
    ``group``: the child drops its privileges itself, right after the fork."""
    if not _root():
        return {}
    if loop is None or isinstance(loop, asyncio.BaseEventLoop):
        return {"user": NOBODY, "group": NOBODY, "extra_groups": []}
    return {"preexec_fn": _drop_to_nobody}


def _drop_to_nobody() -> None:  # in the forked child, before exec: only plain system calls
    os.setgroups([])
    os.setgid(NOBODY)
    os.setuid(NOBODY)


@cache
def _python() -> str:
    """An interpreter the sandbox's user may run, without hearth's environment: the base
    installation of the server's Python, else the system's."""
    version = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    for candidate in (Path(sys.base_prefix) / "bin" / version, Path("/usr/bin/python3")):
        if candidate.exists() and _works([str(candidate), "-I", "-S", "-c", "pass"], add=False):
            return str(candidate)
    return sys.executable


class Sandbox:
    def __init__(
        self,
        limits: Limits | None = None,
        hidden: tuple[Path, ...] = (),
        mode: str | None = None,
    ) -> None:
        self.limits = limits or Limits()
        self.hidden = hidden  # directories the code must not see (hearth's home, ...)
        self.mode = mode or isolation()["mode"]  # "bwrap", "unshare" or "process"

    def _command(self, workdir: Path) -> list[str]:
        python = _python()
        lim = self.limits
        cfg = {
            "dir": str(workdir),
            "cpu": lim.cpu_seconds,
            "memory": lim.memory_mb * 2**20,
            "file": lim.file_mb * 2**20,
            "processes": lim.processes,
            "uid": NOBODY,
            "gid": NOBODY,
        }
        run = [python, "-I", "-S", "-c", _LAUNCH, json.dumps(cfg)]
        mode = self.mode
        if mode == "bwrap":
            hide: list[str] = []
            done: list[Path] = []
            for path in sorted({p.resolve() for p in (*self.hidden, Path.home())}, key=len_of):
                if (
                    path.exists()
                    and _reachable(path)
                    and not any(path.is_relative_to(d) for d in done)
                ):
                    hide += ["--tmpfs", str(path)]  # the interpreter is bound back below
                    done.append(path)
            prefix = Path(python).resolve().parent.parent
            again = ["--ro-bind", str(prefix), str(prefix)] if prefix != Path("/usr") else []
            return [
                "bwrap",
                *_bwrap_base(),
                *hide,
                *again,
                "--bind",
                str(workdir),
                str(workdir),
                "--remount-ro",
                "/tmp",
                "--chdir",
                str(workdir),
                "--clearenv",
                "--",
                *run,
            ]
        if mode == "unshare":
            return ["unshare", *_UNSHARE, "--", *run]
        return run

    async def run(self, code: str) -> Result:
        """Run ``code`` (a Python program; its answer is what it prints)."""
        start = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="hearth-sandbox-") as tmp:
            workdir = Path(tmp)
            (workdir / "main.py").write_text(code, encoding="utf-8")
            if _root():
                os.chown(workdir, NOBODY, NOBODY)
                os.chown(workdir / "main.py", NOBODY, NOBODY)
            env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": tmp, "TMPDIR": tmp}
            proc = await asyncio.create_subprocess_exec(
                *self._command(workdir),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=env,
                cwd=tmp,
                start_new_session=True,
                **_as_nobody(asyncio.get_running_loop()),
            )
            try:
                return await self._collect(proc, start)
            finally:
                _kill(proc)

    async def _collect(self, proc: asyncio.subprocess.Process, start: float) -> Result:
        lim = self.limits
        out, err = bytearray(), bytearray()
        assert proc.stdout is not None and proc.stderr is not None
        too_much = asyncio.Event()

        async def pump(stream: asyncio.StreamReader, into: bytearray) -> None:
            # Read to the end even past the cap: the process cannot finish on a full pipe.
            while chunk := await stream.read(65536):
                room = lim.output_bytes - len(out) - len(err)
                into += chunk[: max(room, 0)]
                if len(chunk) > room:
                    too_much.set()

        pumps: asyncio.Future[Any] = asyncio.gather(
            pump(proc.stdout, out), pump(proc.stderr, err), proc.wait()
        )
        over: asyncio.Future[Any] = asyncio.ensure_future(too_much.wait())
        error: str | None = None
        done, _ = await asyncio.wait(
            {pumps, over}, timeout=lim.wall_seconds, return_when=asyncio.FIRST_COMPLETED
        )
        if over in done:
            error = f"the program printed more than {lim.output_bytes} bytes and was stopped"
        elif pumps not in done:
            error = f"the program ran past its time limit ({lim.wall_seconds:g} s) and was stopped"
        if error is not None:
            _kill(proc)
            try:
                await asyncio.wait_for(asyncio.shield(pumps), 2)
            except TimeoutError:  # something escaped holding the pipes open: drop them
                pumps.cancel()
                transport = getattr(proc, "_transport", None)
                if transport is not None:
                    transport.close()
                with contextlib.suppress(asyncio.CancelledError):
                    await pumps
        over.cancel()
        code = proc.returncode
        if error is None and code != 0:
            error = _why(code, err.decode("utf-8", "replace"), lim)
        return Result(
            ok=error is None,
            stdout=bytes(out[: lim.output_bytes]).decode("utf-8", "replace"),
            stderr=bytes(err[: lim.output_bytes]).decode("utf-8", "replace"),
            exit_code=code,
            seconds=time.monotonic() - start,
            error=error,
        )


def _why(code: int | None, stderr: str, lim: Limits) -> str:
    if code is not None and code < 0:
        sig = -code
        if sig == signal.SIGXCPU:
            return f"the program used more than its CPU time limit ({lim.cpu_seconds} s)"
        if sig == signal.SIGXFSZ:
            return f"the program wrote a file larger than its limit ({lim.file_mb} MB)"
        return f"the program was killed by signal {signal.Signals(sig).name}"
    if "sandbox: CPU time limit" in stderr or code == 128 + signal.SIGXCPU:
        return f"the program used more than its CPU time limit ({lim.cpu_seconds} s)"
    if "File too large" in stderr:
        return f"the program wrote a file larger than its limit ({lim.file_mb} MB)"
    if "MemoryError" in stderr:
        return f"the program ran out of memory (limit {lim.memory_mb} MB)"
    last = stderr.strip().splitlines()[-1] if stderr.strip() else ""
    return f"the program failed (exit code {code}){': ' + last if last else ''}"


def len_of(path: Path) -> int:
    return len(path.parts)


def _reachable(path: Path) -> bool:
    """Whether the sandbox's user could reach ``path`` at all (as nobody: every directory
    on the way is searchable by others); what it cannot reach needs no hiding."""
    if not _root():
        return True
    return all(p.stat().st_mode & 0o001 for p in (path, *path.parents) if p.exists())


def _kill(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        proc.kill()
