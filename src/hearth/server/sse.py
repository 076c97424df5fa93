"""Server-sent events: their encoding, and a stream of them that stops when the client leaves.

Starlette's ``StreamingResponse`` does the same under an anyio task group, which on a
proxied stream was ~15% of the server's CPU per request (bench/gateway.py). Here the events
are sent from the request's own task while one plain task waits for the client's disconnect
and, if it comes first, cancels the sending: the events' generator is closed at once, so its
bookkeeping (the call log's "cancelled", a local engine's slot) runs then, as before.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping
from typing import Any

import orjson
from starlette.responses import JSONResponse, StreamingResponse
from starlette.types import Receive, Scope, Send

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def dumps(data: Any) -> bytes:
    """Compact UTF-8 JSON, by orjson (~5x json's speed on the hot path) where it can."""
    try:
        return orjson.dumps(data)
    except TypeError:  # what only json takes (a key that is not a string, a huge int)
        return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()


def event(data: Any, name: str | None = None) -> bytes:
    """One server-sent event carrying ``data`` as JSON (``name``: its ``event:`` line)."""
    head = f"event: {name}\n".encode() if name else b""
    return head + b"data: " + dumps(data) + b"\n\n"


class FastJSON(JSONResponse):
    """A JSON response rendered by :func:`dumps`."""

    def render(self, content: Any) -> bytes:
        return dumps(content)


DONE = b"data: [DONE]\n\n"


class EventStream(StreamingResponse):
    # a StreamingResponse to the type checker and to FastAPI; its own way of running
    media_type = "text/event-stream"

    def __init__(
        self, events: AsyncIterator[bytes], headers: Mapping[str, str] | None = None
    ) -> None:
        self.events = self.body_iterator = events
        self.status_code = 200
        self.background = None
        self.init_headers({**SSE_HEADERS, **(headers or {})})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        task = asyncio.current_task()
        assert task is not None
        state = {"done": False, "gone": False}

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            if not state["done"]:
                state["gone"] = True
                task.cancel()

        watcher = asyncio.ensure_future(watch())
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            ended = False
            async for chunk in self.events:
                if ended:
                    continue  # nothing is sent after [DONE]; the generator finishes its work
                # [DONE] ends the response in the same write (one syscall fewer per stream),
                # and a client leaving after it no longer cancels the bookkeeping that follows
                ended = chunk.endswith(DONE)
                state["done"] = ended
                await send({"type": "http.response.body", "body": chunk, "more_body": not ended})
            state["done"] = True
            if not ended:
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        except asyncio.CancelledError:
            if not state["gone"]:
                raise
            task.uncancel()  # the client left: nobody to answer, nothing went wrong
        except OSError:
            pass  # the socket closed under a send: the client left too
        finally:
            state["done"] = True
            watcher.cancel()
            aclose = getattr(self.events, "aclose", None)
            if aclose is not None:
                await aclose()  # stopped at a send rather than inside the generator
