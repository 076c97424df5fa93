from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from hearth.server.auth import Caller, authenticate
from hearth.server.generation import check_request, generate
from hearth.server.openapi import STREAMED, errors
from hearth.server.protocol import ChatCompletionBody, CompletionBody
from hearth.server.services import Services
from hearth.server.turns import prepare_turn

router = APIRouter()
RESPONSES = errors(400, 404, 413, 429, 502) | STREAMED


@router.post("/v1/chat/completions", response_model=None, responses=RESPONSES)
async def chat_completions(
    body: ChatCompletionBody,
    http: Request,
    caller: Caller = Depends(authenticate),
) -> JSONResponse | StreamingResponse | Response:
    # services read here, not as a dependency: each one FastAPI solves costs the hottest
    # route ~5% of its CPU
    return await handle(body, http, http.app.state.services, caller)


@router.post("/v1/completions", response_model=None, responses=RESPONSES)
async def completions(
    body: CompletionBody,
    http: Request,
    caller: Caller = Depends(authenticate),
) -> JSONResponse | StreamingResponse | Response:
    return await handle(body, http, http.app.state.services, caller)


async def handle(
    body: ChatCompletionBody | CompletionBody, http: Request, svc: Services, caller: Caller
) -> JSONResponse | StreamingResponse | Response:
    """A chat or text completion for an authenticated caller (also served by
    :mod:`hearth.server.fastpath`, which reaches here without FastAPI's routing)."""
    if isinstance(body, CompletionBody):
        runner = await svc.runner(caller, body.model)
        request = body.to_domain()
        check_request(runner, request)
        return await generate(svc, runner, request, caller=caller, stream=body.stream,
                              include_usage=body.include_usage(), http=http)  # fmt: skip
    turn = await prepare_turn(
        svc,
        caller,
        model=body.model,
        request=body.to_domain(),
        variables=body.variables,
        conversation=body.conversation,
        memory=body.memory,
    )
    return await generate(
        svc,
        turn.runner,
        turn.request,
        caller=caller,
        stream=body.stream,
        include_usage=body.include_usage(),
        http=http,
        extra=turn.extra or None,
        app=turn.call,
        shown=body.model if turn.app is not None else None,
        memory=turn.memory,
        run=turn.run,
    )
