"""The two generation routes without FastAPI's request machinery.

``POST /v1/chat/completions`` and ``POST /v1/completions`` are most of a gateway's traffic,
and in front of a fast upstream FastAPI's routing, dependency solving and body handling
were a quarter of each call's CPU. This middleware serves a well-formed JSON request for
them itself: the same JSON parse (``json.loads``) and the same pydantic model validated the
same way (python mode) as FastAPI would, the same authentication and the same handler
(:func:`hearth.server.routes.generate.handle`). Anything else (another content type, a body
that is not JSON or does not validate) goes on to FastAPI with its body replayed, so every
error a client can get stays the one FastAPI's handlers give, word for word. The routes stay
declared in FastAPI too: they are what the OpenAPI document describes and what serves the
requests handed on.
"""

from __future__ import annotations

import json

from pydantic import ValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hearth.errors import HearthError
from hearth.server.auth import authenticate
from hearth.server.errors import hearth_error_response, http_error_response
from hearth.server.protocol import ChatCompletionBody, CompletionBody
from hearth.server.routes.generate import handle

Body = ChatCompletionBody | CompletionBody
ROUTES: dict[str, type[Body]] = {
    "/v1/chat/completions": ChatCompletionBody,
    "/v1/completions": CompletionBody,
}


class FastGeneration:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        model = ROUTES.get(scope.get("path", "")) if scope["type"] == "http" else None
        if model is None or scope["method"] != "POST" or not _json_content(scope):
            await self.app(scope, receive, send)
            return
        try:
            raw = await _read(receive)
        except HTTPException as e:  # over the body limit, raised by the limit's receive
            await http_error_response(e)(scope, receive, send)
            return
        if raw is None:
            return  # the client left before sending it all: nobody to answer
        body = _parse(model, raw)
        if body is None:
            await self.app(scope, _replay(raw, receive), send)
            return
        http = Request(scope, receive)
        try:
            caller = await authenticate(http)
            response = await handle(body, http, http.app.state.services, caller)
        except HearthError as e:
            response = hearth_error_response(e)
        await response(scope, receive, send)


def _json_content(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"content-type":
            media: bytes = value.split(b";", 1)[0].strip().lower()
            return media == b"application/json"
    return False


async def _read(receive: Receive) -> bytes | None:
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _parse(model: type[Body], raw: bytes) -> Body | None:
    try:
        return model.model_validate(json.loads(raw))
    except (ValueError, ValidationError, RecursionError):  # json's errors are ValueErrors
        return None


def _replay(raw: bytes, receive: Receive) -> Receive:
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": raw, "more_body": False}
        return await receive()

    return replayed
