"""HTTP: the OpenAI-compatible API, the only place that knows the wire format."""

from hearth.server.app import create_app

__all__ = ["create_app"]
