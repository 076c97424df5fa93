from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST

from hearth.server.auth import Caller, authenticate
from hearth.server.openapi import errors
from hearth.server.routes.deps import services
from hearth.server.services import Services

router = APIRouter()


@router.get("/health")
async def health(svc: Services = Depends(services)) -> dict[str, Any]:
    loaded = {r.spec.name: r for r in svc.registry.loaded()}
    return {
        "status": "ok",
        "models": [
            {
                "id": name,
                "loaded": name in loaded,
                "active": loaded[name].active if name in loaded else 0,
                "queued": loaded[name].waiting if name in loaded else 0,
                **_upstreams(loaded.get(name)),
            }
            for name in svc.registry.names()
        ],
    }


def _upstreams(runner: Any) -> dict[str, Any]:
    """A remote model's upstreams in config order: healthy or ejected, in flight, served.
    Their URLs stay out: this endpoint needs no key."""
    health = getattr(getattr(runner, "engine", None), "health", None)
    if health is None:
        return {}
    keep = ("healthy", "in_flight", "served")
    return {"upstreams": [{k: u[k] for k in keep} for u in health()]}


@router.get(
    "/metrics",
    responses=errors(403)
    | {200: {"description": "Prometheus metrics", "content": {CONTENT_TYPE_LATEST: {}}}},
)
async def metrics(
    svc: Services = Depends(services), caller: Caller = Depends(authenticate)
) -> Response:
    caller.require_admin("Reading /metrics")
    return Response(svc.metrics.render(), media_type=CONTENT_TYPE_LATEST)
