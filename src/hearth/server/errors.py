"""Exceptions to OpenAI-shaped error JSON, in one place.

A client mistake is a 4xx with a message that says how to fix it; anything else is a 500
whose message carries an id that is also in the server log next to the traceback.
"""

from __future__ import annotations

import logging
import re
import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from hearth.errors import HearthError, InsufficientQuota, Overloaded

log = logging.getLogger("hearth.server")


def error_body(
    message: str, type_: str, code: str | None, param: str | None = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def hearth_error_response(exc: HearthError) -> JSONResponse:
    headers = None
    if isinstance(exc, InsufficientQuota):
        headers = {"x-should-retry": "false"}  # the OpenAI SDKs read this: no retry helps
    elif isinstance(exc, Overloaded):
        headers = {"Retry-After": str(exc.retry_after)}
    if exc.status >= 500:
        return internal_error(exc)
    return JSONResponse(
        error_body(exc.message, exc.type, exc.code, exc.param), exc.status, headers=headers
    )


def http_error_response(exc: StarletteHTTPException) -> JSONResponse:
    code = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}.get(
        exc.status_code, "http_error"
    )
    return JSONResponse(error_body(str(exc.detail), "invalid_request_error", code), exc.status_code)


def internal_error(exc: BaseException) -> JSONResponse:
    error_id = "err-" + uuid.uuid4().hex[:12]
    log.error("internal error %s: %r", error_id, exc, exc_info=exc)
    status = exc.status if isinstance(exc, HearthError) else 500
    detail = exc.message if isinstance(exc, HearthError) else "Internal server error"
    code = exc.code if isinstance(exc, HearthError) else "internal_error"
    return JSONResponse(
        error_body(f"{detail} (error id {error_id}; see the server log)", "server_error", code),
        status,
    )


# Pydantic names the member of a union it tried inside an error's location ("str",
# "list[constrained-str]", "TextPart"); a client knows fields, not union members.
_UNION_MEMBER = re.compile(
    r"^(str|int|float|bool|none|constrained-\w+|(list|dict|function-\w+)\[.*\]|[A-Z]\w*)$"
)


def _field_path(loc: tuple[Any, ...]) -> list[str]:
    return [
        str(p) for p in loc if p != "body" and not (isinstance(p, str) and _UNION_MEMBER.match(p))
    ]


def _validation_message(exc: RequestValidationError) -> tuple[str, str | None]:
    errors = list(exc.errors())
    if not errors:
        return "Invalid request body", None
    if errors[0].get("type") == "json_invalid":
        return "The request body is not valid JSON: " + str(errors[0].get("msg", "")), None
    # Of the members of a union, the one whose type fitted says what is wrong, so prefer an
    # error that is not "should be a valid <type>".
    first = next((e for e in errors if not str(e.get("type", "")).endswith("_type")), errors[0])
    loc = _field_path(tuple(first.get("loc", ())))
    if not loc and first.get("type") in ("model_attributes_type", "dict_type"):
        return (
            "The request body must be a JSON object, sent with Content-Type: application/json",
            None,
        )
    param = ".".join(loc) or None
    msg = str(first.get("msg", "invalid value"))
    where = f"'{param}'" if param else "body"
    fields = {tuple(_field_path(tuple(e.get("loc", ())))) for e in errors}
    extra = f" (and {len(fields) - 1} more problems)" if len(fields) > 1 else ""
    return f"Invalid value for {where}: {msg}{extra}", param


def install(app: FastAPI) -> None:
    @app.exception_handler(HearthError)
    async def _hearth(request: Request, exc: HearthError) -> JSONResponse:
        return hearth_error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        message, param = _validation_message(exc)
        return JSONResponse(
            error_body(message, "invalid_request_error", "invalid_request", param), 400
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return http_error_response(exc)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        return internal_error(exc)
