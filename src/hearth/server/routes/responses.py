"""/v1/responses and /v1/conversations: OpenAI's Responses API over the same turn path as
chat completions, with memory held server-side."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from hearth.errors import HearthError
from hearth.server.auth import Caller, authenticate
from hearth.server.generation import Started, begin, collect, settle
from hearth.server.memory import check_owner
from hearth.server.openapi import STREAMED, errors
from hearth.server.protocol.responses import (
    ConversationBody,
    ConversationUpdate,
    ItemsBody,
    ResponsesBody,
    conversation_json,
    function_call_json,
    item_json,
    page_json,
    response_json,
    usage_json,
)
from hearth.server.routes.deps import services
from hearth.server.services import Services
from hearth.server.sse import EventStream
from hearth.server.sse import event as sse_event
from hearth.server.turns import Turn, prepare_turn
from hearth.storage.conversations import (
    Item,
    StoredResponse,
    conversation_not_found,
    new_id,
    response_not_found,
)
from hearth.types import ChatRequest, GenerationParams

router = APIRouter()


@router.post("/v1/responses", response_model=None, responses=errors(400, 404, 409, 429) | STREAMED)
async def create_response(
    body: ResponsesBody,
    http: Request,
    svc: Services = Depends(services),
    caller: Caller = Depends(authenticate),
) -> JSONResponse | StreamingResponse | Response:
    params = GenerationParams(
        max_tokens=body.max_output_tokens,
        temperature=body.temperature,
        top_p=body.top_p,
        seed=body.seed,
        response_format=body.response_format(),
    )
    turn = await prepare_turn(
        svc,
        caller,
        model=body.model,
        request=ChatRequest(body.new_messages(), params, **body.tool_specs()),
        variables=body.variables,
        conversation=body.conversation_id(),
        previous=body.previous_response_id,
        memory=body.memory,
    )
    rid = new_id("resp")
    s = await begin(
        svc,
        turn.runner,
        turn.request,
        caller=caller,
        stream=body.stream,
        endpoint="responses",
        prefix="resp",
        app=turn.call,
        memory=turn.memory,
        call_id=rid,
        run=turn.run,
    )
    out = _Out(svc, caller, body, turn, s, new_id("msg"))
    if not body.stream:
        try:
            if not await collect(s, http):
                return Response(status_code=499)
            return JSONResponse(await out.done())
        finally:
            s.release()
    return EventStream(out.events())


class _Out:
    def __init__(
        self,
        svc: Services,
        caller: Caller,
        body: ResponsesBody,
        turn: Turn,
        s: Started,
        message_id: str,
    ) -> None:
        self.svc, self.caller, self.body, self.turn, self.s = svc, caller, body, turn, s
        self.message_id = message_id
        self.created = time.time()
        self.seq = 0
        self.opened: list[int | None] | None = None  # streamed items: None the message, i a call

    @property
    def model(self) -> str:
        return self.body.model

    def json(self, status: str, text: str | None, **kw: Any) -> dict[str, Any]:
        r = self.s.renderer
        usage = None
        if r.usage is not None:
            usage = usage_json(r.usage.prompt_tokens, r.usage.completion_tokens, r.details)
        data = response_json(
            self.body,
            id=self.s.call.id,
            created=self.created,
            model=self.model,
            status=status,
            message_id=self.message_id,
            text=text,
            usage=usage,
            extra=self.turn.extra or None,
            calls=self.calls(),
            message=None if self.opened is None else None in self.opened,
            **kw,
        )
        if self.opened and data["output"]:  # the order the stream announced them in
            choice = self.s.renderer.choices[0]
            position = {i: k for k, i in enumerate(sorted(choice.tool_calls))}
            shift = 1 if None in self.opened else 0
            data["output"] = [
                data["output"][0] if w is None else data["output"][shift + position[w]]
                for w in self.opened
            ]
        return data

    def calls(self) -> list[dict[str, Any]]:
        choice = self.s.renderer.choices.get(0)
        if choice is None:
            return []
        return [function_call_json(c) for _, c in sorted(choice.tool_calls.items())]

    async def done(self) -> dict[str, Any]:
        """The finished response, stored (with its turn) when ``store`` is true."""
        r = self.s.renderer
        finish = r.choices[0].finish_reason if 0 in r.choices else None
        data = self.json("completed", r.text, finish_reason=finish)
        memory = self.s.memory
        request = self.turn.request
        new = memory.new if memory else [m for m in request.messages if m.role != "system"]
        items = [Item("", m.role, m.content) for m in new] + [
            Item(self.message_id, "assistant", r.text)
        ]
        if self.body.store:
            stored = StoredResponse(
                self.s.call.id,
                self.created,
                self.model,
                data["status"],
                self.body.previous_response_id,
                self.body.conversation_id(),
                self.caller.key_id,
                data,
            )
            in_conversation = memory is not None and memory.thread.conversation is not None
            await asyncio.to_thread(
                self.svc.conversations.save_response,
                stored,
                [] if in_conversation else items,
                stored=True,
            )
        return data

    def event(self, type: str, **fields: Any) -> bytes:
        data = {"type": type, "sequence_number": self.seq, **fields}
        self.seq += 1
        return sse_event(data, type)

    async def events(self) -> AsyncIterator[bytes]:
        s, r, mid = self.s, self.s.renderer, self.message_id
        status, error = "cancelled", None
        at = {"item_id": mid, "output_index": 0, "content_index": 0}
        try:
            start = self.json("in_progress", None)
            yield self.event("response.created", response=start)
            yield self.event("response.in_progress", response=start)
            part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
            opened: list[int | None] = []
            self.opened = opened
            chunk = s.first
            while chunk is not None:
                r.add(chunk)
                if chunk.text and None not in opened:
                    at["output_index"] = len(opened)
                    opened.append(None)
                    for event in self._open_message(mid, part, at):
                        yield event
                if chunk.text:
                    s.call.mark_first_token()
                    yield self.event(
                        "response.output_text.delta", delta=chunk.text, logprobs=[], **at
                    )
                call = chunk.tool_call
                if call is not None:
                    s.call.mark_first_token()
                    entry = r.choices[chunk.index].tool_calls[call.index]
                    if call.index not in opened:
                        opened.append(call.index)
                        item = function_call_json(entry, status="in_progress") | {"arguments": ""}
                        yield self.event(
                            "response.output_item.added",
                            output_index=opened.index(call.index),
                            item=item,
                        )
                    if call.arguments:
                        yield self.event(
                            "response.function_call_arguments.delta",
                            item_id=function_call_json(entry)["id"],
                            output_index=opened.index(call.index),
                            delta=call.arguments,
                        )
                chunk = await anext(s.chunks, None)
            if not opened:  # an empty answer is still a message
                opened.append(None)
                for event in self._open_message(mid, part, at):
                    yield event
            await s.keep()
            final = await self.done()
            text = r.text
            for position, which in enumerate(opened):
                item = final["output"][position]
                if which is None:
                    yield self.event("response.output_text.done", text=text, logprobs=[], **at)
                    yield self.event("response.content_part.done", part=part | {"text": text}, **at)
                else:
                    yield self.event(
                        "response.function_call_arguments.done",
                        item_id=item["id"],
                        output_index=position,
                        arguments=item["arguments"],
                    )
                yield self.event("response.output_item.done", output_index=position, item=item)
            kind = "response.completed" if final["status"] == "completed" else "response.incomplete"
            yield self.event(kind, response=final)
            status = "ok"
        except HearthError as e:
            status, error = "error", e.message
            failed = self.json(
                "failed",
                r.text,
                error={
                    "code": "server_error" if e.status >= 500 else "invalid_prompt",
                    "message": e.message,
                },
            )
            yield self.event("response.failed", response=failed)
        finally:
            await settle(s, status, error)

    def _open_message(self, mid: str, part: dict[str, Any], at: dict[str, Any]) -> list[bytes]:
        item = {"type": "message", "id": mid, "role": "assistant", "status": "in_progress"}
        return [
            self.event(
                "response.output_item.added",
                output_index=at["output_index"],
                item=item | {"content": []},
            ),
            self.event("response.content_part.added", part=part, **at),
        ]


def _response(svc: Services, caller: Caller, id: str) -> StoredResponse:
    found = svc.conversations.response(id)
    check_owner(found.key_id, caller, lambda: response_not_found(id))
    return found


@router.get("/v1/responses/{id}", responses=errors(404))
async def get_response(
    id: str, svc: Services = Depends(services), caller: Caller = Depends(authenticate)
) -> dict[str, Any]:
    return (await asyncio.to_thread(_response, svc, caller, id)).body


@router.delete("/v1/responses/{id}", responses=errors(404))
async def delete_response(
    id: str, svc: Services = Depends(services), caller: Caller = Depends(authenticate)
) -> dict[str, Any]:
    await asyncio.to_thread(_response, svc, caller, id)
    await asyncio.to_thread(svc.conversations.delete_response, id)
    return {"id": id, "object": "response.deleted", "deleted": True}


# -- conversations ----------------------------------------------------------------------


def _conversation(svc: Services, caller: Caller, id: str) -> Any:
    found = svc.conversations.get(id)
    check_owner(found.key_id, caller, lambda: conversation_not_found(id))
    return found


def _items(body_items: list[Any]) -> list[Item]:
    return [Item("", m.role, m.content) for m in (i.to_domain() for i in body_items)]


@router.get("/v1/conversations", responses=errors(400))
async def list_conversations(
    limit: int = Query(20, ge=1, le=100),
    svc: Services = Depends(services),
    caller: Caller = Depends(authenticate),
) -> dict[str, Any]:
    """The caller's conversations, most recently updated first (a hearth extension: the
    Conversations API has no list)."""
    found = await asyncio.to_thread(svc.conversations.recent, limit=limit, key_id=caller.key_id)
    return {"object": "list", "data": [conversation_json(c) for c in found]}


@router.post("/v1/conversations", responses=errors(400))
async def create_conversation(
    body: ConversationBody,
    svc: Services = Depends(services),
    caller: Caller = Depends(authenticate),
) -> dict[str, Any]:
    conv = await asyncio.to_thread(
        svc.conversations.create,
        body.metadata,
        key_id=caller.key_id,
        items=_items(body.items or []),
    )
    return conversation_json(conv)


@router.get("/v1/conversations/{id}", responses=errors(404))
async def get_conversation(
    id: str, svc: Services = Depends(services), caller: Caller = Depends(authenticate)
) -> dict[str, Any]:
    return conversation_json(await asyncio.to_thread(_conversation, svc, caller, id))


@router.post("/v1/conversations/{id}", responses=errors(400, 404))
async def update_conversation(
    id: str,
    body: ConversationUpdate,
    svc: Services = Depends(services),
    caller: Caller = Depends(authenticate),
) -> dict[str, Any]:
    await asyncio.to_thread(_conversation, svc, caller, id)
    conv = await asyncio.to_thread(svc.conversations.update, id, body.metadata or {})
    return conversation_json(conv)


@router.delete("/v1/conversations/{id}", responses=errors(404))
async def delete_conversation(
    id: str, svc: Services = Depends(services), caller: Caller = Depends(authenticate)
) -> dict[str, Any]:
    await asyncio.to_thread(_conversation, svc, caller, id)
    await asyncio.to_thread(svc.conversations.delete, id)
    return {"id": id, "object": "conversation.deleted", "deleted": True}


@router.get("/v1/conversations/{id}/items", responses=errors(400, 404))
async def list_items(
    id: str,
    after: str | None = None,
    limit: int = Query(20, ge=1, le=100),
    order: str = Query("desc", pattern="^(asc|desc)$"),
    svc: Services = Depends(services),
    caller: Caller = Depends(authenticate),
) -> dict[str, Any]:
    await asyncio.to_thread(_conversation, svc, caller, id)
    items = await asyncio.to_thread(
        svc.conversations.items, id, after=after, limit=limit + 1, order=order
    )
    return page_json(items[:limit], len(items) > limit)


@router.post("/v1/conversations/{id}/items", responses=errors(400, 404, 409))
async def add_items(
    id: str,
    body: ItemsBody,
    svc: Services = Depends(services),
    caller: Caller = Depends(authenticate),
) -> dict[str, Any]:
    await asyncio.to_thread(_conversation, svc, caller, id)
    release = await svc.locks.acquire(id)
    try:
        added = await asyncio.to_thread(svc.conversations.append, id, _items(body.items))
    finally:
        release()
    return page_json(added, False)


@router.get("/v1/conversations/{id}/items/{item_id}", responses=errors(404))
async def get_item(
    id: str,
    item_id: str,
    svc: Services = Depends(services),
    caller: Caller = Depends(authenticate),
) -> dict[str, Any]:
    await asyncio.to_thread(_conversation, svc, caller, id)
    return item_json(await asyncio.to_thread(svc.conversations.item, id, item_id))


@router.delete("/v1/conversations/{id}/items/{item_id}", responses=errors(404))
async def delete_item(
    id: str,
    item_id: str,
    svc: Services = Depends(services),
    caller: Caller = Depends(authenticate),
) -> dict[str, Any]:
    conv = await asyncio.to_thread(_conversation, svc, caller, id)
    await asyncio.to_thread(svc.conversations.delete_item, id, item_id)
    return conversation_json(conv)
