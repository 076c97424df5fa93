"""The one interface every tokenizer source meets, whatever library is behind it.

Each source reads text the way its own serving stack does, so a count here is the count
that stack would bill: a registered model parses control tokens such as ``<|im_start|>``
(as the server's ``/tokenize`` and usage do), a tiktoken encoding reads them as plain text
(as OpenAI's API reads user content), and Hugging Face and SentencePiece files use their
library's defaults. None of them add BOS/EOS: that belongs to a prompt, not to a text.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Protocol, runtime_checkable

from hearth.errors import UserError
from hearth.types import TokenPiece


@runtime_checkable
class Tokenizer(Protocol):
    name: str
    kind: str  # "model", "tiktoken", "huggingface" or "sentencepiece"
    vocab_size: int | None  # None where the source does not say

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: list[int]) -> str: ...

    def piece_bytes(self, token_id: int) -> bytes:
        """The exact bytes of one token; a part of a UTF-8 character stays partial."""
        ...

    def tokenize(self, text: str) -> list[TokenPiece]: ...

    def count(self, text: str) -> int:
        """``len(encode(text))``, without building anything the count does not need."""
        ...

    def close(self) -> None: ...


class LibraryTokenizer(ABC):
    """Shared parts of the in-process sources (tiktoken, Hugging Face, SentencePiece)."""

    name: str
    kind: str
    vocab_size: int | None

    @abstractmethod
    def encode(self, text: str) -> list[int]: ...

    @abstractmethod
    def decode(self, ids: list[int]) -> str: ...

    @abstractmethod
    def piece_bytes(self, token_id: int) -> bytes: ...

    def count(self, text: str) -> int:
        return len(self.encode(text))

    def tokenize(self, text: str) -> list[TokenPiece]:
        return [TokenPiece(i, self.piece_bytes(i)) for i in self.encode(text)]

    def close(self) -> None:  # noqa: B027 - a no-op on purpose, not a method to override
        """Nothing to release: the library's tables are ordinary Python objects."""

    def _check_id(self, token_id: int) -> None:
        if self.vocab_size is not None and not 0 <= token_id < self.vocab_size:
            raise UserError(
                f"token id {token_id} is outside the vocabulary of {self.name} "
                f"(ids 0 to {self.vocab_size - 1})"
            )
