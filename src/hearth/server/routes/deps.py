from __future__ import annotations

from fastapi import Request

from hearth.server.services import Services


async def services(request: Request) -> Services:
    # async: FastAPI runs a plain-def dependency in its thread pool, a thread hop per request
    found: Services = request.app.state.services
    return found
