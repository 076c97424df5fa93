"""One name for any tokenizer: a registered model, a tiktoken encoding, or a file."""

from __future__ import annotations

from pathlib import Path

from hearth.config import Settings
from hearth.errors import UserError
from hearth.tokens.base import Tokenizer
from hearth.tokens.encodings import ENCODINGS, load_encoding
from hearth.tokens.files import load_file
from hearth.tokens.model import open_model

KINDS = ("model", "encoding", "path")


def open_tokenizer(
    ref: str, settings: Settings | None = None, kind: str | None = None
) -> Tokenizer:
    """``ref`` is a registered model name (when ``settings`` is given), a tiktoken encoding
    name, or a path to a tokenizer.json, a directory holding one, or a SentencePiece .model;
    ``kind`` insists on one of those (``KINDS``) instead of trying them in that order.
    Close the result when done: a model's tokenizer is a started engine."""
    if kind not in (None, *KINDS):
        raise ValueError(f"kind must be one of {KINDS}")
    if kind == "model" or (kind is None and settings is not None and ref in settings.models):
        if settings is None:
            raise ValueError("a model tokenizer needs the settings")
        return open_model(ref, settings)
    if kind == "encoding" or (kind is None and ref in ENCODINGS):
        return load_encoding(ref)
    path = Path(ref).expanduser()
    if kind == "path" or path.exists():
        return load_file(path)
    models = ", ".join(settings.models) if settings is not None else "(not read)"
    raise UserError(
        f"'{ref}' is not a registered model ({models}), a tiktoken encoding "
        f"({', '.join(ENCODINGS)}), or an existing tokenizer file. "
        "Run `hearth models list` to see the models."
    )
