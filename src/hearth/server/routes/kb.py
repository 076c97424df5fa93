"""/v1/knowledge_bases: create, list, upload, documents, search and ask over HTTP."""

from __future__ import annotations

import asyncio
import dataclasses
import tempfile
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Request, UploadFile
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import ConfigDict, Field

from hearth.errors import DocumentNotFound, PayloadTooLarge, UserError
from hearth.rag.answer import build_prompt
from hearth.rag.embed import E5_NAME, embedder_for
from hearth.rag.ingest import ingest
from hearth.rag.kb import embedder_of
from hearth.rag.retrieve import Result, search
from hearth.rag.stores.base import Filters
from hearth.rag.translate import Translator, search_across_languages
from hearth.server.auth import Caller, authenticate
from hearth.server.generation import check_request, complete_text, generate
from hearth.server.openapi import STREAMED, errors
from hearth.server.protocol import RequestBody
from hearth.server.routes.deps import services
from hearth.server.services import Services
from hearth.server.uploads import upload_json
from hearth.types import ChatRequest, GenerationParams, Message

router = APIRouter(prefix="/v1/knowledge_bases")


class CreateBody(RequestBody):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=100, pattern=r"^[\w\-.\u4e00-\u9fff]+$")
    embedder: str = E5_NAME
    description: str = ""


class SearchBody(RequestBody):
    model_config = ConfigDict(extra="forbid")
    query: str = Field(min_length=1)
    k: int = Field(default=5, ge=1, le=100)
    mode: str = Field(default="hybrid", pattern="^(hybrid|vector|keyword)$")
    gate: bool = Field(default=True, description="Small talk retrieves nothing")
    threshold: float | None = Field(
        default=None, description="Optional floor on vector similarity (off by default)"
    )
    translate: bool = Field(
        default=False,
        description="Also search with the query translated (Chinese <-> English) by a chat "
        "model: finds documents in the other language; costs one cached model call",
    )
    model: str | None = Field(
        default=None, description="The chat model that translates (and answers, for ask)"
    )
    documents: list[str] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)


class AskBody(SearchBody):
    query: str = Field(default="", alias="question")
    translate: bool = True
    max_tokens: int = Field(default=512, ge=1)
    stream: bool = False
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


@router.post("", status_code=201, responses=errors(400, 403, 409))
async def create(
    body: CreateBody, svc: Services = Depends(services), caller: Caller = Depends(authenticate)
) -> dict[str, Any]:
    caller.require_admin("Creating a knowledge base")
    emb = await asyncio.to_thread(embedder_for, body.embedder)
    kb = await asyncio.to_thread(svc.kb.create_kb, body.name, emb.model, emb.dim, body.description)
    return dataclasses.asdict(kb)


@router.get("")
async def list_kbs(
    svc: Services = Depends(services), caller: Caller = Depends(authenticate)
) -> dict[str, Any]:
    kbs = [k for k in await asyncio.to_thread(svc.kb.list_kbs) if caller.may_use_kb(k.name)]
    return {"object": "list", "data": [dataclasses.asdict(k) for k in kbs]}


@router.get("/{name}", responses=errors(404))
async def get_kb(
    name: str, svc: Services = Depends(services), caller: Caller = Depends(authenticate)
) -> dict[str, Any]:
    svc.check_kb(caller, name)
    return dataclasses.asdict(await asyncio.to_thread(svc.kb.get_kb, name))


@router.delete("/{name}", responses=errors(403, 404))
async def drop(
    name: str, svc: Services = Depends(services), caller: Caller = Depends(authenticate)
) -> dict[str, Any]:
    svc.check_kb(caller, name)
    caller.require_admin("Deleting a knowledge base")
    await asyncio.to_thread(svc.kb.get_kb, name)
    await asyncio.to_thread(svc.kb.drop_kb, name)
    return {"deleted": name}


@router.post("/{name}/documents", responses=errors(400, 403, 404))
async def upload(
    name: str,
    files: list[UploadFile],
    svc: Services = Depends(services),
    caller: Caller = Depends(authenticate),
) -> dict[str, Any]:
    """Multipart upload (field ``files``, repeatable); ingested before the answer."""
    svc.check_kb(caller, name)
    caller.require_admin("Adding documents")
    kb = await asyncio.to_thread(svc.kb.get_kb, name)
    limit = svc.settings.max_upload_bytes
    with tempfile.TemporaryDirectory(prefix="hearth-upload-") as tmp:
        paths = []
        for f in files:
            filename = Path(f.filename or "").name
            if not filename:
                raise UserError("every uploaded file needs a file name", param="files")
            data = await f.read(limit + 1)
            if len(data) > limit:
                raise PayloadTooLarge(
                    f"{filename} is larger than the upload limit of {limit} bytes "
                    "(setting max_upload_bytes)",
                    param="files",
                )
            path = Path(tmp) / filename
            path.write_bytes(data)
            paths.append(path)
        emb = await asyncio.to_thread(embedder_of, kb)
        report = await asyncio.to_thread(ingest, svc.kb, emb, name, paths)
    return dataclasses.asdict(report) | {"chunks_per_second": report.chunks_per_second}


@router.post("/{name}/uploads", status_code=202, responses=errors(400, 403, 404, 413))
async def upload_later(
    name: str,
    files: list[UploadFile],
    http: Request,
    svc: Services = Depends(services),
    caller: Caller = Depends(authenticate),
) -> dict[str, Any]:
    """Multipart upload (field ``files``, repeatable) answered at once: each file is queued
    and ingested in the background; ``GET`` this path shows each one's state."""
    svc.check_kb(caller, name)
    caller.require_admin("Adding documents")
    await asyncio.to_thread(svc.kb.get_kb, name)
    limit = svc.settings.max_upload_bytes
    ingestor = http.app.state.ingestor
    queued = []
    for f in files:
        filename = Path(f.filename or "").name
        if not filename or filename.startswith("."):
            raise UserError("every uploaded file needs a file name", param="files")
        data = await f.read(limit + 1)
        if len(data) > limit:
            raise PayloadTooLarge(
                f"{filename} is larger than the upload limit of {limit} bytes "
                "(setting max_upload_bytes)",
                param="files",
            )
        queued.append(upload_json(await ingestor.submit(name, filename, data)))
    return {"object": "list", "data": queued}


@router.get("/{name}/uploads", responses=errors(404))
async def uploads(
    name: str,
    http: Request,
    svc: Services = Depends(services),
    caller: Caller = Depends(authenticate),
) -> dict[str, Any]:
    """The latest uploads to this knowledge base and their states, newest first."""
    svc.check_kb(caller, name)
    await asyncio.to_thread(svc.kb.get_kb, name)
    found = await asyncio.to_thread(http.app.state.ingestor.store.of, name)
    return {"object": "list", "data": [upload_json(u) for u in found]}


@router.get("/{name}/documents", responses=errors(404))
async def documents(
    name: str, svc: Services = Depends(services), caller: Caller = Depends(authenticate)
) -> dict[str, Any]:
    svc.check_kb(caller, name)
    records = await asyncio.to_thread(svc.kb.documents, name)
    return {"object": "list", "data": [dataclasses.asdict(r) for r in records]}


@router.delete("/{name}/documents/{document:path}", responses=errors(403, 404))
async def delete_document(
    name: str,
    document: str,
    svc: Services = Depends(services),
    caller: Caller = Depends(authenticate),
) -> dict[str, Any]:
    svc.check_kb(caller, name)
    caller.require_admin("Deleting documents")
    await asyncio.to_thread(svc.kb.get_kb, name)
    if not await asyncio.to_thread(svc.kb.delete_document, name, document):
        raise DocumentNotFound(name, document)
    return {"deleted": document}


async def _search(svc: Services, caller: Caller, name: str, body: SearchBody) -> list[Result]:
    svc.check_kb(caller, name)
    kb = await asyncio.to_thread(svc.kb.get_kb, name)
    emb = await asyncio.to_thread(embedder_of, kb)
    filters = Filters(tuple(body.documents), tuple(body.tags))
    options: dict[str, Any] = {
        "k": body.k,
        "mode": body.mode,
        "filters": filters,
        "gate": body.gate,
        "threshold": body.threshold,
    }
    if not body.translate:
        return await asyncio.to_thread(search, svc.kb, emb, name, body.query, **options)
    model = body.model or svc.settings.default_model
    runner = await svc.runner(caller, model)

    async def chat(messages: list[Message], params: GenerationParams) -> str:
        request = ChatRequest(messages, params)
        return await complete_text(svc, runner, request, caller=caller, endpoint="kb.translate")

    translator = svc.translators.setdefault(model, Translator())
    return await search_across_languages(
        svc.kb, emb, name, body.query, chat=chat, translator=translator, **options
    )


@router.post("/{name}/search", responses=errors(400, 404))
async def search_route(
    name: str,
    body: SearchBody,
    svc: Services = Depends(services),
    caller: Caller = Depends(authenticate),
) -> dict[str, Any]:
    results = await _search(svc, caller, name, body)
    return {"object": "list", "query": body.query, "data": [r.as_dict() for r in results]}


@router.post("/{name}/ask", response_model=None, responses=errors(400, 404, 429) | STREAMED)
async def ask(
    name: str,
    body: AskBody,
    http: Request,
    svc: Services = Depends(services),
    caller: Caller = Depends(authenticate),
) -> JSONResponse | StreamingResponse | Response:
    """Answer from the knowledge base: a chat completion plus ``sources``."""
    if not body.query.strip():
        raise UserError("question is required", param="question")
    runner = await svc.runner(caller, body.model or svc.settings.default_model)
    results = await _search(svc, caller, name, body)
    prompt = await build_prompt(runner.engine, body.query, results, max_tokens=body.max_tokens)
    request = ChatRequest(prompt.messages, GenerationParams(max_tokens=prompt.max_tokens))
    check_request(runner, request)
    sources = [{"n": i, **r.as_dict()} for i, r in enumerate(prompt.sources, start=1)]
    return await generate(
        svc,
        runner,
        request,
        caller=caller,
        stream=body.stream,
        include_usage=None,
        http=http,
        extra={"sources": sources},
    )
