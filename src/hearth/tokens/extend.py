"""Merge a (Chinese) SentencePiece vocabulary into a base tokenizer: Chinese-LLaMA's recipe.

The pieces of NEW that BASE lacks are appended to BASE, keeping every existing id, so a
model trained on BASE only needs its embedding table grown. A SentencePiece base gets the
pieces with score 0, as Chinese-LLaMA's ``merge_tokenizers.py`` does. A Hugging Face BPE
base gets each piece as a vocabulary entry plus the merge that builds it from two entries
(added first where missing), written in the base's own alphabet (byte-level or "▁").
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hearth.errors import UserError
from hearth.tokens.files import SPACE, byte_level_alphabet, tokenizer_json

# sentencepiece_model_pb2.ModelProto.SentencePiece.Type
_NORMAL, _USER_DEFINED = 1, 4


@dataclass(frozen=True)
class Extended:
    output: Path
    base_size: int
    new_size: int
    added: int

    @property
    def size(self) -> int:
        return self.base_size + self.added

    def as_dict(self) -> dict[str, Any]:
        return {
            "output": str(self.output),
            "base_vocab_size": self.base_size,
            "new_vocab_size": self.new_size,
            "added": self.added,
            "vocab_size": self.size,
        }


def _proto(path: Path) -> Any:
    from sentencepiece import sentencepiece_model_pb2

    proto = sentencepiece_model_pb2.ModelProto()  # type: ignore[attr-defined] # generated code
    try:
        proto.ParseFromString(path.read_bytes())
    except OSError as e:
        raise UserError(f"cannot read {path}: {e.strerror}") from e
    except Exception as e:  # protobuf's DecodeError has no stable import path
        raise UserError(f"{path} is not a SentencePiece model: {e}") from e
    if not proto.pieces:
        raise UserError(f"{path} is not a SentencePiece model (it has no pieces)")
    return proto


def new_pieces(path: Path) -> tuple[list[str], int]:
    """The ordinary pieces of a SentencePiece model, in its order, and its vocabulary size."""
    if not (path.is_file() and path.suffix == ".model"):
        raise UserError(
            f"NEW must be a SentencePiece .model file (from `hearth tokens train`): {path}"
        )
    proto = _proto(path)
    pieces = [p.piece for p in proto.pieces if p.type in (_NORMAL, _USER_DEFINED)]
    return pieces, len(proto.pieces)


def extend(base: Path, new: Path, out: Path) -> Extended:
    """Write the merged tokenizer to ``out`` (``.model`` or ``.json`` added when missing)."""
    pieces, new_size = new_pieces(new)
    if not base.exists():
        raise UserError(f"{base} does not exist")
    hf = tokenizer_json(base)
    if hf is not None:
        return _extend_huggingface(hf, pieces, new_size, _with_suffix(out, ".json"))
    if base.suffix == ".model":
        return _extend_sentencepiece(base, pieces, new_size, _with_suffix(out, ".model"))
    raise UserError(f"BASE must be a SentencePiece .model or a Hugging Face tokenizer.json: {base}")


def _with_suffix(out: Path, suffix: str) -> Path:
    return out if out.suffix == suffix else out.with_name(out.name + suffix)


def _extend_sentencepiece(base: Path, pieces: list[str], new_size: int, out: Path) -> Extended:
    proto = _proto(base)
    base_size = len(proto.pieces)
    have = {p.piece for p in proto.pieces}
    for piece in pieces:
        if piece not in have:
            have.add(piece)
            added = proto.pieces.add()
            added.piece = piece
            added.score = 0.0
    proto.trainer_spec.vocab_size = len(proto.pieces)  # informational; kept truthful
    _write(out, proto.SerializeToString())
    return Extended(out, base_size, new_size, len(proto.pieces) - base_size)


def _extend_huggingface(base: Path, pieces: list[str], new_size: int, out: Path) -> Extended:
    try:
        data = json.loads(base.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"{base} is not a readable tokenizer.json: {e}") from e
    model = data.get("model") or {}
    if model.get("type") != "BPE":
        raise UserError(
            f"extend merges into SentencePiece models and Hugging Face BPE tokenizers; "
            f"{base} is a {model.get('type')} tokenizer"
        )
    vocab, merges = model.get("vocab"), model.get("merges")
    if not isinstance(vocab, dict) or not isinstance(merges, list):
        raise UserError(f"{base} has a BPE model without a vocab and merges list")
    pairs = not merges or isinstance(merges[0], list)  # the newer format stores pairs
    taken = {*vocab.values(), *(t["id"] for t in data.get("added_tokens", []))}
    next_id = max(taken, default=-1) + 1
    base_size = len(taken)
    encode = _alphabet(data)

    def ensure(token: str) -> None:
        nonlocal next_id
        if token in vocab:
            return
        if len(token) > 1:
            # The most balanced split whose halves exist; else halve and build both.
            splits = [k for k in range(1, len(token)) if token[:k] in vocab and token[k:] in vocab]
            k = min(splits, key=lambda k: abs(len(token) - 2 * k), default=len(token) // 2)
            ensure(token[:k])
            ensure(token[k:])
            merges.append([token[:k], token[k:]] if pairs else f"{token[:k]} {token[k:]}")
        vocab[token] = next_id
        next_id += 1

    for piece in pieces:
        ensure(encode(piece))
    _write(out, json.dumps(data, ensure_ascii=False, indent=2).encode())
    return Extended(out, base_size, new_size, next_id - max(taken, default=-1) - 1)


def _alphabet(data: dict[str, Any]) -> Callable[[str], str]:
    """How a SentencePiece piece is spelled in this tokenizer's vocabulary."""
    if "ByteLevel" in json.dumps([data.get("pre_tokenizer"), data.get("decoder")]):
        to_char = {b: c for c, b in byte_level_alphabet().items()}
        return lambda piece: "".join(to_char[b] for b in piece.replace(SPACE, " ").encode())
    return lambda piece: piece  # "▁" spaces and characters, as in LLaMA's tokenizer.json


def _write(out: Path, data: bytes) -> None:
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + ".tmp")
        tmp.write_bytes(data)
        tmp.replace(out)
    except OSError as e:
        raise UserError(f"cannot write {out}: {e.strerror}") from e
