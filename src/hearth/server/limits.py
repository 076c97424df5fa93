"""Refuse request bodies over the configured size before they are read into memory."""

from __future__ import annotations

import json
import re

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hearth.server.errors import error_body

# File uploads to a knowledge base have their own, larger limit.
_UPLOAD = re.compile(r"^/v1/knowledge_bases/[^/]+/documents$")
_MULTIPART_SLACK = 64 * 1024  # multipart framing around the files themselves


class BodyLimit:
    def __init__(self, app: ASGIApp, max_bytes: int, upload_bytes: int | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.upload_bytes = (upload_bytes or max_bytes) + _MULTIPART_SLACK

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        upload = bool(_UPLOAD.match(scope.get("path", "")))
        limit = self.upload_bytes if upload else self.max_bytes
        setting = "max_upload_bytes" if upload else "max_body_bytes"
        message = f"Request body is larger than the limit of {limit} bytes (setting {setting})."
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _refuse(send, message)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            received = await receive()
            if received["type"] == "http.request":
                seen += len(received.get("body", b""))
                if seen > limit:
                    # FastAPI passes HTTPException through its body parsing untouched.
                    raise HTTPException(413, message)
            return received

        await self.app(scope, counted, send)


async def _refuse(send: Send, message: str) -> None:
    body = json.dumps(error_body(message, "invalid_request_error", "payload_too_large")).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    await send({"type": "http.response.start", "status": 413, "headers": headers})
    await send({"type": "http.response.body", "body": body})
