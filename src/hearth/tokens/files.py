"""Tokenizers from files: a Hugging Face ``tokenizer.json`` or a SentencePiece ``.model``."""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hearth.errors import UserError
from hearth.tokens.base import LibraryTokenizer

if TYPE_CHECKING:
    import sentencepiece
    import tokenizers

_BYTE_PIECE = re.compile(r"<0x([0-9A-Fa-f]{2})>")
SPACE = "\u2581"  # SentencePiece's visible space, "▁"


@functools.cache
def byte_level_alphabet() -> dict[str, int]:
    """GPT-2's byte -> printable character table, inverted (character -> byte)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    chars = list(printable)
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(printable, chars, strict=True)}


def _decoder_types(config: dict[str, Any] | None) -> set[str]:
    if not config:
        return set()
    if config.get("type") == "Sequence":
        return set().union(*(_decoder_types(d) for d in config.get("decoders", [])))
    return {str(config.get("type"))}


class HuggingFaceTokenizer(LibraryTokenizer):
    kind = "huggingface"

    def __init__(self, tokenizer: tokenizers.Tokenizer, name: str) -> None:
        # A tokenizer.json may carry truncation or padding for training; a count must not.
        tokenizer.no_truncation()
        tokenizer.no_padding()
        self.tokenizer = tokenizer
        self.name = name
        self.vocab_size = tokenizer.get_vocab_size(with_added_tokens=True)
        self._decoders = _decoder_types(json.loads(tokenizer.to_str()).get("decoder"))
        self._added = {i: t.content for i, t in tokenizer.get_added_tokens_decoder().items()}

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def count(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False))

    def decode(self, ids: list[int]) -> str:
        for i in ids:
            self._check_id(i)
        return self.tokenizer.decode(ids, skip_special_tokens=False)

    def piece_bytes(self, token_id: int) -> bytes:
        self._check_id(token_id)
        token = self.tokenizer.id_to_token(token_id)
        if token is None:
            raise UserError(f"{self.name} has no token with id {token_id}")
        # The vocabulary stores pieces in the decoder's own alphabet; undo it to get bytes.
        if "ByteFallback" in self._decoders and (m := _BYTE_PIECE.fullmatch(token)):
            return bytes([int(m.group(1), 16)])
        if token_id in self._added:
            return self._added[token_id].encode()  # stored as written, never byte-mapped
        if "ByteLevel" in self._decoders:
            table = byte_level_alphabet()
            if all(c in table for c in token):
                return bytes(table[c] for c in token)
        if "WordPiece" in self._decoders and token.startswith("##"):
            token = token[2:]
        return token.replace(SPACE, " ").encode()


class SentencePieceTokenizer(LibraryTokenizer):
    kind = "sentencepiece"

    def __init__(self, processor: sentencepiece.SentencePieceProcessor, name: str) -> None:
        self.processor = processor
        self.name = name
        self.vocab_size = processor.get_piece_size()

    def encode(self, text: str) -> list[int]:
        return self.processor.encode(text)  # type: ignore[no-any-return]

    def decode(self, ids: list[int]) -> str:
        for i in ids:
            self._check_id(i)
        return self.processor.decode(ids)  # type: ignore[no-any-return]

    def piece_bytes(self, token_id: int) -> bytes:
        self._check_id(token_id)
        piece: str = self.processor.id_to_piece(token_id)
        if self.processor.is_byte(token_id):
            return bytes([int(piece[3:5], 16)])
        if self.processor.is_control(token_id) or self.processor.is_unknown(token_id):
            return piece.encode()  # decodes to nothing; its name is what a reader wants
        return piece.replace(SPACE, " ").encode()


def tokenizer_json(path: Path) -> Path | None:
    """The ``tokenizer.json`` at ``path`` or inside the directory ``path``, if any."""
    if path.is_dir():
        path = path / "tokenizer.json"
    return path if path.is_file() and path.suffix == ".json" else None


def load_file(path: Path) -> LibraryTokenizer:
    """A Hugging Face tokenizer.json (file or directory) or a SentencePiece .model file."""
    if not path.exists():
        raise UserError(f"{path} does not exist")
    hf = tokenizer_json(path)
    if hf is not None:
        return load_huggingface(hf)
    if path.is_file() and path.suffix == ".model":
        return load_sentencepiece(path)
    raise UserError(
        f"{path} is neither a Hugging Face tokenizer.json (or a directory holding one) nor a "
        "SentencePiece .model file"
    )


def load_huggingface(path: Path) -> HuggingFaceTokenizer:
    from tokenizers import Tokenizer

    try:
        tokenizer = Tokenizer.from_file(str(path))
    except Exception as e:  # the binding raises bare Exception for bad files
        raise UserError(f"{path} is not a valid Hugging Face tokenizer.json: {e}") from e
    name = path.parent.name if path.name == "tokenizer.json" and path.parent.name else path.stem
    return HuggingFaceTokenizer(tokenizer, name)


def load_sentencepiece(path: Path) -> SentencePieceTokenizer:
    import sentencepiece

    try:
        processor = sentencepiece.SentencePieceProcessor(model_file=str(path))
    except (OSError, RuntimeError) as e:
        raise UserError(f"{path} is not a valid SentencePiece model: {e}") from e
    return SentencePieceTokenizer(processor, path.stem)
