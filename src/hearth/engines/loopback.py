"""JSON over HTTP/1.1 to llama.cpp's loopback endpoint, for tokenize and template calls.

Memory counts a few prompts per request, so this sits on the hot path of every turn.
``httpx.AsyncClient`` spends ~0.8 ms of Python per loopback call; the standard library's
``http.client`` on a kept-alive connection, run on a small thread pool (one connection per
thread), takes ~0.25 ms for the same call and keeps big tokenizations off the event loop.
Measured in bench/memory.py; the README's design notes say why this is not httpx.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

from hearth.errors import EngineError


class LoopbackClient:
    def __init__(self, base_url: str, *, timeout: float = 60, threads: int = 4) -> None:
        url = urlsplit(base_url)
        self._host = url.hostname or "127.0.0.1"
        self._port = url.port or 80
        self._timeout = timeout
        self._local = threading.local()
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="llama-loopback")
        self._connections: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()

    async def request(
        self, method: str, path: str, body: dict[str, Any] | None = None
    ) -> tuple[int, Any]:
        """(status, parsed JSON body) of one call."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self._call, method, path, body)

    def _connection(self) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = http.client.HTTPConnection(self._host, self._port, timeout=self._timeout)
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        return conn

    def _call(self, method: str, path: str, body: dict[str, Any] | None) -> tuple[int, Any]:
        payload = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if payload is not None else {}
        for attempt in (1, 2):
            conn = self._connection()
            try:
                conn.request(method, path, body=payload, headers=headers)
                resp = conn.getresponse()
                raw = resp.read()
                if resp.will_close:
                    conn.close()  # reopened on the next call (the server caps keep-alive)
                break
            except (ConnectionError, http.client.HTTPException, OSError) as e:
                conn.close()
                # A kept-alive connection the server has since dropped: retry once on a new one.
                if attempt == 2:
                    raise EngineError(f"llama.cpp loopback {path} failed: {e}") from e
        try:
            return resp.status, json.loads(raw)
        except ValueError as e:
            raise EngineError(f"llama.cpp loopback {path} sent no JSON: {raw[:200]!r}") from e

    def close(self) -> None:
        with self._lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()
        self._pool.shutdown(wait=False, cancel_futures=True)
