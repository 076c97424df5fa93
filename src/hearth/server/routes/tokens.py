from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from hearth.engines.base import check_token_ids, count_chat_tokens
from hearth.server.auth import Caller, authenticate
from hearth.server.openapi import errors
from hearth.server.protocol import DetokenizeBody, TokenCountBody, TokenizeBody, domain_messages
from hearth.server.routes.deps import services
from hearth.server.services import Services
from hearth.tokens import describe

router = APIRouter()


@router.post("/tokenize", responses=errors(400, 404))
async def tokenize(
    body: TokenizeBody, svc: Services = Depends(services), caller: Caller = Depends(authenticate)
) -> dict[str, Any]:
    name = body.model or svc.settings.default_model
    runner = await svc.runner(caller, name)
    pieces = await runner.engine.tokenize(
        body.content, add_special=body.add_special, parse_special=body.parse_special
    )
    # with pieces: the same rows `hearth tokens inspect` shows
    tokens: list[Any] = (
        [t.as_dict() for t in describe(pieces)] if body.with_pieces else [p.id for p in pieces]
    )
    return {"model": name, "count": len(pieces), "tokens": tokens}


@router.post("/detokenize", responses=errors(400, 404))
async def detokenize(
    body: DetokenizeBody, svc: Services = Depends(services), caller: Caller = Depends(authenticate)
) -> dict[str, Any]:
    name = body.model or svc.settings.default_model
    runner = await svc.runner(caller, name)
    check_token_ids(runner.engine, body.tokens, model=name, param="tokens")
    return {"model": name, "content": await runner.engine.detokenize(body.tokens)}


@router.post("/v1/tokens/count", responses=errors(400, 404))
async def count_tokens(
    body: TokenCountBody, svc: Services = Depends(services), caller: Caller = Depends(authenticate)
) -> dict[str, Any]:
    """Tokens of a text, or of a chat request exactly as usage.prompt_tokens counts it."""
    name = body.model or svc.settings.default_model
    engine = (await svc.runner(caller, name)).engine
    if body.messages is not None:
        count = await count_chat_tokens(engine, domain_messages(body.messages))
        return {"object": "tokens.count", "model": name, "kind": "chat", "count": count}
    count = len(await engine.tokenize(body.input or "", add_special=False))
    return {"object": "tokens.count", "model": name, "kind": "text", "count": count}
