"""A chat request's messages from a JSON file, read the way the server reads the wire
(:meth:`hearth.types.Message.from_openai`): ``tests/tokens/test_tokens_slow.py`` checks that
a count from these messages equals the server's ``usage.prompt_tokens``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hearth.errors import UserError
from hearth.tokens.corpus import read_text
from hearth.types import OPENAI_ROLES as ROLES
from hearth.types import Message


def read_messages(path: Path) -> list[Message]:
    """A JSON list of ``{"role", "content"}``, or ``{"messages": [...]}`` (a request body)."""
    if not path.is_file():
        raise UserError(f"{path} does not exist")
    try:
        raw = json.loads(read_text(path))
    except json.JSONDecodeError as e:
        raise UserError(f"{path} is not JSON: {e}") from e
    if isinstance(raw, dict):
        raw = raw.get("messages")
    if not isinstance(raw, list) or not raw:
        raise UserError(f'{path} must hold a non-empty list of messages or {{"messages": [...]}}')
    return [_message(m, f"{path}: message {n}") for n, m in enumerate(raw, 1)]


def _message(raw: Any, where: str) -> Message:
    if not isinstance(raw, dict):
        raise UserError(f'{where} must be an object like {{"role": "user", "content": "..."}}')
    role = raw.get("role")
    if role not in ROLES:
        raise UserError(f"{where} has role {role!r}; use one of {', '.join(ROLES)}")
    name = raw.get("name")
    if name is not None and not isinstance(name, str):
        raise UserError(f"{where} has a name that is not a string")
    return Message.from_openai(role, _content(raw.get("content"), where), name)


def _content(content: Any, where: str) -> str | list[str] | None:
    if content is None or isinstance(content, str):
        return content
    if isinstance(content, list) and all(
        isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)
        for p in content
    ):
        return [p["text"] for p in content]
    raise UserError(f'{where} content must be a string or a list of {{"type": "text", "text"}}')
