"""create_app(settings): the whole HTTP surface, wired from explicit parts."""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from hearth import web
from hearth.config import Settings
from hearth.engines.registry import ModelRegistry
from hearth.server import errors, openapi
from hearth.server.fastpath import FastGeneration
from hearth.server.limits import BodyLimit
from hearth.server.metrics import InFlight, Metrics
from hearth.server.routes import (
    apps,
    embeddings,
    generate,
    kb,
    keys,
    models,
    ops,
    responses,
    tokens,
)
from hearth.server.services import Services
from hearth.server.uploads import Ingestor
from hearth.storage.calllog import open_calllog

log = logging.getLogger("hearth.server")


def create_app(
    settings: Settings, *, preload: list[str] | None = None, freeze_gc: bool = False
) -> FastAPI:
    """Build the app. ``preload`` names models to load before the first request.
    ``freeze_gc`` (a server process of its own): once started, what exists is left out of
    the garbage collector's passes (``gc.freeze``). Its full passes walked every object the
    server had, ~120,000, about once a second under load: a 65 ms stall each, every
    request's p99 (bench/gateway.py, at 16 concurrent streams)."""
    registry = ModelRegistry(settings)
    metrics = Metrics(registry.loaded)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services = Services(settings, registry, open_calllog(settings.db_url), metrics)
        app.state.services = services
        app.state.ingestor = Ingestor(services)
        app.state.ingestor.start()
        for name in preload or []:
            await registry.get(name)
        if freeze_gc:
            gc.collect()
            gc.freeze()
        try:
            yield
        finally:
            await app.state.ingestor.close()
            await services.hooks.aclose()
            await registry.close()
            services.close()

    app = FastAPI(
        title="hearth",
        version=_version(),
        description="OpenAI-compatible API for local and remote models, knowledge bases and "
        'API keys. Errors are OpenAI-shaped: {"error": {message, type, param, code}}.',
        lifespan=lifespan,
    )
    errors.install(app)
    openapi.install(app)
    for module in (generate, responses, embeddings, models, tokens, ops, kb, keys, apps):
        app.include_router(module.router)
    app.include_router(web.router)
    app.mount("/static", web.static, name="static")
    app.add_middleware(FastGeneration)  # inside the body limit, which counts what it reads
    app.add_middleware(
        BodyLimit, max_bytes=settings.max_body_bytes, upload_bytes=settings.max_upload_bytes
    )
    app.add_middleware(InFlight, metrics=metrics)
    return app


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("hearth")
    except PackageNotFoundError:
        return "0+local"
