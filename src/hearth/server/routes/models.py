from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from hearth.apps.spec import App
from hearth.engines.base import Capabilities
from hearth.engines.registry import engine_class
from hearth.errors import ModelNotFound
from hearth.server.auth import Caller, authenticate
from hearth.server.openapi import errors
from hearth.server.routes.deps import services
from hearth.server.services import Services

router = APIRouter()

_CREATED = 1_730_000_000  # fixed: models have no meaningful creation time here


def _model(svc: Services, name: str) -> dict[str, Any]:
    spec = svc.registry.spec(name)
    loaded = {r.spec.name for r in svc.registry.loaded()}
    return {
        "id": name,
        "object": "model",
        "created": _CREATED,
        "owned_by": "hearth",
        "engine": spec.engine,
        "context_length": spec.context,
        "embedding": spec.embedding,
        # How it calls tools: "parsed" (the template renders them, calls are read from the
        # text), "upstream" (passed through to a remote server), or null.
        "tools": None if spec.embedding else _tools(spec.engine),
        "loaded": name in loaded,
        # per 1,000 tokens (hearth extension), so clients can show what a call costs
        "price": {"input": spec.price.input, "output": spec.price.output},
        "description": spec.description,
    }


def _tools(engine: str) -> str | None:
    caps: Capabilities = getattr(engine_class(engine), "capabilities")  # noqa: B009
    return caps.tools


def _app(app: App) -> dict[str, Any]:
    """An app as a model id: what a client picks from a model list."""
    return {
        "id": app.name,
        "object": "model",
        "created": _CREATED,
        "owned_by": "app",
        "description": app.description,
        "models": app.models(),
        "variants": list(app.variants),
    }


@router.get("/v1/models")
async def list_models(
    svc: Services = Depends(services), caller: Caller = Depends(authenticate)
) -> dict[str, Any]:
    apps = [_app(a) for a in svc.apps.all() if caller.may_use_model(a.name)]
    return {"object": "list", "data": [_model(svc, n) for n in svc.models(caller)] + apps}


@router.get("/v1/models/{name:path}", responses=errors(404))
async def get_model(
    name: str, svc: Services = Depends(services), caller: Caller = Depends(authenticate)
) -> dict[str, Any]:
    if caller.may_use_model(name) and name not in svc.registry.names():
        app = svc.apps.find(name)
        if app is not None:
            return _app(app)
    if not caller.may_use_model(name) or name not in svc.registry.names():
        raise ModelNotFound(name, svc.models(caller) + svc.app_names(caller))
    return _model(svc, name)
