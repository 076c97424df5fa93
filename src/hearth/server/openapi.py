"""A true ``/openapi.json``: every error status an operation can answer, with OpenAI's error
object, and none it cannot (FastAPI documents 422 for validation errors; hearth answers 400).

Routes name the statuses that depend on what they do (``errors(400, 404)``); the ones every
operation can answer are added here once: 413 (any body past the limit), 500, and for the
operations behind an API key 401 and 429 (its requests per minute).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI, routing
from fastapi.dependencies.models import Dependant
from fastapi.openapi import utils as openapi_utils
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from pydantic import BaseModel

from hearth.server.auth import SECURITY_SCHEMES, authenticate


class ErrorObject(BaseModel):
    message: str
    type: str
    param: str | None
    code: str | None


class ErrorResponse(BaseModel):
    error: ErrorObject


_WHAT = {
    400: "Invalid request: the message says what to change",
    401: "Missing, unknown, revoked or expired API key",
    403: "The API key may not do this (an admin key is needed)",
    404: "No such model, knowledge base, document or key (or not visible to this key)",
    409: "Already exists",
    413: "Request body larger than the server's limit",
    429: "Rate limit, token limit or budget reached, or the model's queue is full",
    500: "A fault on the server's side; the message carries an id the server log repeats",
    502: "The model's answer did not match the output schema within the retries",
}
_RETRY_AFTER = {
    "Retry-After": {"description": "Seconds to wait before retrying", "schema": {"type": "integer"}}
}

# One server-sent event, as OpenAPI before 3.2 describes an event stream (event by event).
_EVENT = {
    "type": "object",
    "description": "One event: data is a JSON chunk, and the last event's data is [DONE]",
    "required": ["data"],
    "properties": {
        "data": {"type": "string"},
        "event": {"type": "string"},
        "id": {"type": "string"},
        "retry": {"type": "integer"},
    },
}

# Chat and text completions answer with JSON, or with server-sent events when stream=true.
STREAMED: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "A completion, or with stream=true server-sent events ending with "
        "data: [DONE]",
        "content": {
            "application/json": {"schema": {"type": "object"}},
            "text/event-stream": {"schema": _EVENT},
        },
    }
}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for these error statuses, each with OpenAI's error object."""
    out: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        out[status] = {"model": ErrorResponse, "description": _WHAT[status]}
        if status == 429:
            out[status]["headers"] = _RETRY_AFTER
    return out


def install(app: FastAPI) -> None:
    """Make ``app.openapi()`` write the document described above (built once)."""

    def build() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            _secure(document, app)
            _fix(document)
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = build  # type: ignore[method-assign]


def _secure(document: dict[str, Any], app: FastAPI) -> None:
    """Each operation behind :func:`authenticate` takes a key either way it can be sent."""
    components = document.setdefault("components", {})
    components["securitySchemes"] = dict(SECURITY_SCHEMES)
    security: list[dict[str, list[str]]] = [{name: []} for name in SECURITY_SCHEMES]
    paths = document.get("paths", {})
    for route in _api_routes(app):
        if _calls(route.dependant, authenticate):
            for method in route.methods or ():
                operation = paths.get(route.path_format, {}).get(method.lower())
                if operation is not None:
                    operation["security"] = security


def _api_routes(app: FastAPI) -> Iterator[Any]:
    """Every API route, included routers' too (FastAPI >= 0.16x nests them in contexts)."""
    contexts = getattr(routing, "iter_route_contexts", None)
    if contexts is None:
        yield from (r for r in app.routes if isinstance(r, APIRoute))
        return
    for context in contexts(app.routes):
        route = openapi_utils._get_api_route_for_openapi(context)
        if route is not None:
            yield route


def _calls(dependant: Dependant, call: Any) -> bool:
    return any(d.call is call or _calls(d, call) for d in dependant.dependencies)


def _fix(document: dict[str, Any]) -> None:
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    error_ref = {"$ref": "#/components/schemas/ErrorResponse"}
    schemas["ErrorObject"] = ErrorObject.model_json_schema()
    schemas["ErrorResponse"] = {
        "type": "object",
        "required": ["error"],
        "properties": {"error": {"$ref": "#/components/schemas/ErrorObject"}},
    }
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            had_validation = responses.pop("422", None) is not None
            statuses = [413, 500]
            if had_validation:
                statuses.append(400)
            if operation.get("security"):
                statuses += [401, 429]
            for status in statuses:
                if str(status) not in responses:
                    response: dict[str, Any] = {
                        "description": _WHAT[status],
                        "content": {"application/json": {"schema": error_ref}},
                    }
                    if status == 429:
                        response["headers"] = _RETRY_AFTER
                    responses[str(status)] = response
