"""The python sandbox against code that tries to escape: each attempt fails with an error
the model can read, nothing is left running, and the next run works. Runs in every
isolation mode this machine offers; the strongest (bubblewrap, installed by ``make
test``) must be available here."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from hearth.agents.sandbox import Limits, Sandbox, isolation

LIMITS = Limits(cpu_seconds=1, wall_seconds=2.5, memory_mb=256, output_bytes=20_000)
MODES = [
    m
    for m, ok in (
        ("bwrap", isolation()["mode"] == "bwrap"),
        ("unshare", shutil.which("unshare") is not None),
        ("process", True),
    )
    if ok
]


def run(sandbox: Sandbox, code: str) -> tuple[bool, str]:
    result = asyncio.run(sandbox.run(code))
    return result.ok, result.for_model()


@pytest.fixture
def secret_home() -> Iterator[Path]:
    """A hearth home with a key in it, readable by anyone (the worst case)."""
    home = Path(tempfile.mkdtemp(prefix="secret-home-", dir=Path.cwd()))
    home.chmod(0o755)
    (home / "keys.txt").write_text("sk-hearth-secret")
    (home / "keys.txt").chmod(0o644)
    yield home
    shutil.rmtree(home)


def _no_leftovers() -> None:
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert "main.py" not in ps and "hearth-sandbox-" not in ps


def test_this_machine_has_the_strongest_isolation() -> None:
    # make test installs bubblewrap; without it the guarantees below are weaker.
    if shutil.which("apt-get") and os.geteuid() == 0:
        assert isolation()["mode"] == "bwrap", isolation()
    info = isolation()
    assert set(info) >= {"mode", "network", "filesystem_read_only", "home_hidden", "limits"}


@pytest.mark.parametrize("mode", MODES)
def test_ordinary_programs_run(mode: str) -> None:
    sandbox = Sandbox(LIMITS, mode=mode)
    ok, out = run(sandbox, "from fractions import Fraction\nprint(Fraction(3, 4) * 12)")
    assert ok and out == "9"
    # Its own directory is writable, and gone after the run.
    ok, out = run(sandbox, "import os\nopen('a.txt', 'w').write('hi')\nprint(os.getcwd())")
    assert ok and not Path(out).exists()
    ok, out = run(sandbox, "x = 1")
    assert ok and "print the answer" in out
    ok, out = run(sandbox, "raise ValueError('bad input')")
    assert not ok and "ValueError: bad input" in out


@pytest.mark.parametrize("mode", MODES)
def test_it_runs_on_uvloop_as_on_asyncio(mode: str) -> None:
    """``hearth serve`` runs on uvloop, whose subprocesses take no user/group arguments."""
    import uvloop

    code = "import os\nprint(os.getuid(), os.getgid(), os.getgroups())"
    mine = asyncio.run(Sandbox(LIMITS, mode=mode).run(code))
    theirs = uvloop.run(Sandbox(LIMITS, mode=mode).run(code))
    assert mine.ok and theirs.ok, (mine, theirs)
    assert mine.stdout == theirs.stdout
    if os.geteuid() == 0:
        assert theirs.stdout.split()[:2] == ["65534", "65534"]


@pytest.mark.parametrize("mode", MODES)
def test_limits_hold(mode: str) -> None:
    sandbox = Sandbox(LIMITS, mode=mode)
    ok, out = run(sandbox, "x = bytearray(10 * 1024**3)\nprint(len(x))")
    assert not ok and "out of memory" in out
    ok, out = run(sandbox, "while True:\n    pass")
    assert not ok and "CPU time limit" in out
    ok, out = run(sandbox, "import time\ntime.sleep(60)")
    assert not ok and "time limit (2.5 s)" in out
    ok, out = run(sandbox, "print('x' * 10_000_000)")
    assert not ok and "more than 20000 bytes" in out and len(out) < 5_000
    ok, out = run(sandbox, "open('big', 'wb').write(b'0' * 64 * 2**20)")
    assert not ok and "larger than its limit" in out
    _no_leftovers()


@pytest.mark.parametrize("mode", MODES)
def test_fork_bomb_is_contained(mode: str) -> None:
    bomb = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass"
    ok, out = run(Sandbox(LIMITS, mode=mode), bomb)
    assert not ok and "limit" in out
    _no_leftovers()
    ok, out = run(Sandbox(LIMITS, mode=mode), "print('still fine')")
    assert ok and out == "still fine"


@pytest.mark.parametrize("mode", MODES)
def test_environment_is_empty(mode: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-should-not-leak")
    monkeypatch.setenv("HEARTH_HOME", "/somewhere")
    ok, out = run(Sandbox(LIMITS, mode=mode), "import os\nprint(sorted(os.environ))")
    assert ok and "OPENAI_API_KEY" not in out and "HEARTH_HOME" not in out


@pytest.mark.skipif(os.geteuid() != 0, reason="runs as nobody only when the server is root")
@pytest.mark.parametrize("mode", MODES)
def test_root_files_are_unreadable(mode: str) -> None:
    ok, out = run(Sandbox(LIMITS, mode=mode), "print(open('/etc/shadow').read())")
    assert not ok and "Permission denied" in out
    ok, out = run(Sandbox(LIMITS, mode=mode), "import os\nprint(os.listdir('/root'))")
    assert not ok or out == "[]"


@pytest.mark.parametrize("mode", [m for m in MODES if m != "process"])
def test_no_network(mode: str) -> None:
    # A server on this machine's loopback is out of reach, as is anything further.
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    try:
        code = (
            "import socket\n"
            f"socket.create_connection(('127.0.0.1', {port}), timeout=2)\nprint('connected')"
        )
        ok, out = run(Sandbox(LIMITS, mode=mode), code)
        assert not ok and "connected" not in out.splitlines()[:1]
        ok, out = run(
            Sandbox(LIMITS, mode=mode),
            "import socket\nsocket.create_connection(('1.1.1.1', 80), timeout=2)",
        )
        assert not ok and ("unreachable" in out or "Errno" in out)
    finally:
        listener.close()


@pytest.mark.skipif("bwrap" not in MODES, reason="bubblewrap is not installed")
def test_bubblewrap_hides_homes_and_makes_everything_else_read_only(secret_home: Path) -> None:
    sandbox = Sandbox(LIMITS, hidden=(secret_home,), mode="bwrap")
    ok, out = run(sandbox, f"print(open('{secret_home / 'keys.txt'}').read())")
    assert not ok and "sk-hearth-secret" not in out and "No such file" in out
    outside = Path.cwd() / "escaped.txt"
    for target in (outside, Path("/tmp/escaped.txt"), Path("/var/tmp/escaped.txt")):
        ok, out = run(sandbox, f"open('{target}', 'w').write('x')")
        assert not ok and "Read-only file system" in out, target
        assert not target.exists()
