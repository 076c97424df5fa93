from __future__ import annotations

import base64
import struct
import time
from typing import Any

from fastapi import APIRouter, Depends

from hearth.errors import HearthError, Unsupported
from hearth.server.auth import Caller, authenticate
from hearth.server.openapi import errors
from hearth.server.protocol import EmbeddingBody
from hearth.server.render import usage_json
from hearth.server.routes.deps import services
from hearth.server.services import Call, Services
from hearth.types import Usage

router = APIRouter()


async def _unmetered() -> Usage:
    """Embeddings reserve nothing ahead: they are checked against what the key has used and
    count what they used once done."""
    return Usage()


# e5-style models were trained with these prefixes; a text that starts with one is sent
# as that kind (the prefix itself is not repeated), anything else as a passage.
_QUERY = "query: "
_PASSAGE = "passage: "


def _encode(vector: list[float], fmt: str) -> list[float] | str:
    if fmt == "base64":
        return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
    return vector


@router.post("/v1/embeddings", responses=errors(400, 404, 429))
async def embeddings(
    body: EmbeddingBody,
    svc: Services = Depends(services),
    caller: Caller = Depends(authenticate),
) -> dict[str, Any]:
    runner = await svc.runner(caller, body.model)
    if not runner.engine.capabilities.embeddings:
        raise Unsupported(
            f"model '{body.model}' does not serve embeddings; try multilingual-e5-small",
            param="model",
        )
    texts = body.texts()
    queries = [t.startswith(_QUERY) for t in texts]
    stripped = [t.removeprefix(_QUERY).removeprefix(_PASSAGE) for t in texts]
    call = Call(svc, body.model, "embeddings", False, caller=caller, prefix="emb")
    await call.reserve(_unmetered)
    deadline = time.monotonic() + runner.timeout
    vectors: list[list[float]] = [[] for _ in texts]
    tokens = 0
    try:
        async with runner.slot(deadline):
            for want_query in (True, False):
                idx = [i for i, q in enumerate(queries) if q == want_query]
                if not idx:
                    continue
                out = await runner.engine.embed([stripped[i] for i in idx], query=want_query)
                tokens += out.prompt_tokens
                for i, v in zip(idx, out.vectors, strict=True):
                    vectors[i] = v
    except HearthError as e:
        await call.finish(Usage(tokens), "error", e.message)
        raise
    if body.dimensions is not None and body.dimensions != len(vectors[0]):
        raise Unsupported(
            f"model '{body.model}' gives {len(vectors[0])} dimensions; "
            f"dimensions={body.dimensions} is not supported",
            param="dimensions",
        )
    usage = Usage(tokens)
    await call.finish(usage, "ok")
    return {
        "object": "list",
        "model": body.model,
        "data": [
            {"object": "embedding", "index": i, "embedding": _encode(v, body.encoding_format)}
            for i, v in enumerate(vectors)
        ],
        "usage": {"prompt_tokens": tokens, "total_tokens": usage_json(usage)["total_tokens"]},
    }
