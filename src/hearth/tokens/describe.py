"""What each token is: position, id, piece, raw bytes, and whether it splits a character.

One function, :func:`describe`, serves the CLI's ``hearth tokens inspect`` and the
server's ``/tokenize``, so both show the same thing for the same tokens.
"""

from __future__ import annotations

import codecs
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from hearth.types import TokenPiece


@dataclass(frozen=True)
class TokenInfo:
    position: int
    id: int
    bytes: bytes
    # The characters that become complete at this token, decoding the pieces in order:
    # "" for a leading part of a character, the whole character at its last part. Joined
    # over all tokens this is exactly the decoded text, so a UI can colour it by token.
    text: str
    partial: bool  # the piece alone is not valid UTF-8: it holds part of a character

    @property
    def piece(self) -> str:
        """The piece by itself; bytes of a split character show as U+FFFD."""
        return self.bytes.decode("utf-8", errors="replace")

    @property
    def hex(self) -> str:
        return self.bytes.hex(" ")

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready; ``bytes`` is a list of ints as in OpenAI's logprobs."""
        return {
            "position": self.position,
            "id": self.id,
            "piece": self.piece,
            "bytes": list(self.bytes),
            "hex": self.hex,
            "partial": self.partial,
            "text": self.text,
        }


def describe(pieces: Sequence[TokenPiece]) -> list[TokenInfo]:
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    last = len(pieces) - 1
    return [
        TokenInfo(
            position=i,
            id=p.id,
            bytes=p.piece,
            text=decoder.decode(p.piece, final=i == last),
            partial=p.partial,
        )
        for i, p in enumerate(pieces)
    ]
