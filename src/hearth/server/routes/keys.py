"""/v1/keys (admin keys only) and /v1/usage (everyone's for an admin, one's own otherwise)."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
from typing import Any

from fastapi import APIRouter, Depends, Query
from pydantic import ConfigDict, Field

from hearth.errors import PermissionDenied
from hearth.server.auth import Caller, authenticate
from hearth.server.openapi import errors
from hearth.server.protocol import NonEmpty, RequestBody
from hearth.server.routes.deps import services
from hearth.server.services import Services
from hearth.storage.calllog import parse_groups
from hearth.storage.keys import MAX_RATE, KeyStore

router = APIRouter()


class KeyBody(RequestBody):
    model_config = ConfigDict(extra="forbid")
    name: NonEmpty = Field(max_length=200)
    models: list[NonEmpty] | None = Field(default=None, description="None: every model")
    knowledge_bases: list[NonEmpty] | None = Field(
        default=None, description="None: every knowledge base"
    )
    rpm: int | None = Field(default=None, ge=1, le=MAX_RATE, description="requests per minute")
    tpm: int | None = Field(default=None, ge=1, le=MAX_RATE, description="tokens per minute")
    budget: float | None = Field(
        default=None, ge=0, allow_inf_nan=False, description="total cost it may spend"
    )
    expires: dt.datetime | None = Field(default=None, description="ISO 8601; UTC if no zone")
    admin: bool = False


def _store(svc: Services) -> KeyStore:
    return svc.keys.store


@router.post("/v1/keys", status_code=201, responses=errors(400, 403))
async def create_key(
    body: KeyBody, svc: Services = Depends(services), caller: Caller = Depends(authenticate)
) -> dict[str, Any]:
    """A new key; ``key`` is in this answer once and never again."""
    caller.require_admin("Managing API keys")
    expires = None
    if body.expires is not None:
        when = body.expires if body.expires.tzinfo else body.expires.replace(tzinfo=dt.UTC)
        expires = when.timestamp()
    key, secret = await asyncio.to_thread(
        _store(svc).create,
        body.name,
        models=body.models,
        kbs=body.knowledge_bases,
        rpm=body.rpm,
        tpm=body.tpm,
        budget=body.budget,
        expires=expires,
        admin=body.admin,
    )
    svc.keys.changed()
    return key.public() | {"key": secret}


@router.get("/v1/keys", responses=errors(403))
async def list_keys(
    svc: Services = Depends(services), caller: Caller = Depends(authenticate)
) -> dict[str, Any]:
    caller.require_admin("Managing API keys")
    keys = await asyncio.to_thread(_store(svc).all)
    return {"object": "list", "data": [k.public() for k in keys]}


@router.delete("/v1/keys/{key_id}", responses=errors(403, 404))
async def revoke_key(
    key_id: str, svc: Services = Depends(services), caller: Caller = Depends(authenticate)
) -> dict[str, Any]:
    caller.require_admin("Managing API keys")
    key = await asyncio.to_thread(_store(svc).revoke, key_id)
    svc.keys.changed()
    return key.public()


@router.get("/v1/usage", responses=errors(400))
async def usage(
    since: dt.date | None = Query(default=None, description="first UTC day, YYYY-MM-DD"),
    until: dt.date | None = Query(default=None, description="last UTC day, YYYY-MM-DD"),
    by: str = Query(default="day,model", description="comma-separated: day, model, key, app"),
    svc: Services = Depends(services),
    caller: Caller = Depends(authenticate),
) -> dict[str, Any]:
    """Calls, tokens and cost. An admin key (or a server without keys) sees every call; any
    other key sees its own."""
    groups = parse_groups(by)
    own = None if caller.admin else caller.key_id
    rows = await asyncio.to_thread(svc.calllog.usage, since, by=groups, key_id=own, until=until)
    return {"object": "list", "by": list(groups), "data": [dataclasses.asdict(r) for r in rows]}


@router.get("/v1/usage/calls", responses=errors(400))
async def recent_calls(
    limit: int = Query(default=50, ge=1, le=500),
    svc: Services = Depends(services),
    caller: Caller = Depends(authenticate),
) -> dict[str, Any]:
    """The newest calls with their latency (an admin key sees everyone's)."""
    own = None if caller.admin else caller.key_id
    rows = await asyncio.to_thread(svc.calllog.recent, limit, key_id=own)
    return {"object": "list", "data": [dataclasses.asdict(r) for r in rows]}


@router.get("/v1/usage/moderation", responses=errors(400, 403))
async def moderation_hits(
    since: dt.date | None = Query(default=None, description="first UTC day, YYYY-MM-DD"),
    svc: Services = Depends(services),
    caller: Caller = Depends(authenticate),
) -> dict[str, Any]:
    """Moderation hits by app, list, category, action and direction (admin keys)."""
    if not caller.admin:
        raise PermissionDenied("moderation hits are for admin keys")
    rows = await asyncio.to_thread(svc.calllog.moderation, since)
    return {"object": "list", "data": [dataclasses.asdict(r) for r in rows]}
