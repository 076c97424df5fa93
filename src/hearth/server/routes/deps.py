from __future__ import annotations

from fastapi import Request

from hearth.server.services import Services


def services(request: Request) -> Services:
    found: Services = request.app.state.services
    return found
