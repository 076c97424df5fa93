"""How many tokens tokenizers spend on the same Chinese, English and code.

``relative`` is a tokenizer's token count divided by the reference tokenizer's on the same
part, as in Baichuan's tokenizer table: below 1 it needs fewer tokens than the reference
(compresses better), above 1 more.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from hearth.errors import UserError
from hearth.tokens.base import Tokenizer
from hearth.tokens.corpus import PARTS, Section

ALL = "all"


@dataclass(frozen=True)
class Row:
    tokenizer: str
    part: str  # a corpus part, or "all"
    tokens: int
    characters: int
    bytes: int
    relative: float | None  # tokens / the reference's tokens on this part

    @property
    def chars_per_token(self) -> float:
        return self.characters / self.tokens if self.tokens else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "tokenizer": self.tokenizer,
            "part": self.part,
            "tokens": self.tokens,
            "characters": self.characters,
            "bytes": self.bytes,
            "chars_per_token": round(self.chars_per_token, 4),
            "relative": None if self.relative is None else round(self.relative, 4),
        }


def unique_names(tokenizers: Sequence[Tokenizer]) -> list[str]:
    """Display names, numbered where two tokenizers share one."""
    names = [t.name for t in tokenizers]
    return [f"{n}#{i + 1}" if names.count(n) > 1 else n for i, n in enumerate(names)]


def reference_index(refs: Sequence[str], names: Sequence[str], reference: str | None) -> int:
    """Which tokenizer ``reference`` names, by what the user typed or its display name."""
    if reference is None:
        return 0
    for i, (ref, name) in enumerate(zip(refs, names, strict=True)):
        if reference in (ref, name):
            return i
    raise UserError(f"--reference {reference} is not one of the tokenizers: {', '.join(names)}")


def compare(
    tokenizers: Sequence[Tokenizer], sections: Sequence[Section], reference: int = 0
) -> list[Row]:
    """Rows per part (in PARTS order, then "all"), tokenizers in the order given."""
    if not tokenizers:
        raise UserError("give at least one tokenizer to compare")
    if not 0 <= reference < len(tokenizers):
        raise UserError(f"reference index {reference} is out of range")
    parts = [p for p in PARTS if any(s.part == p for s in sections)]
    names = unique_names(tokenizers)
    # counts[t][part]: each section counted on its own, so no token spans two files
    counts = [
        {p: sum(t.count(s.text) for s in sections if s.part == p) for p in parts}
        for t in tokenizers
    ]
    for c in counts:
        c[ALL] = sum(c.values())
    rows = []
    for part in [*parts, ALL]:
        chosen = [s.text for s in sections if part in (ALL, s.part)]
        characters = sum(len(text) for text in chosen)
        size = sum(len(text.encode()) for text in chosen)
        base = counts[reference][part]
        for name, c in zip(names, counts, strict=True):
            relative = c[part] / base if base else None
            rows.append(Row(name, part, c[part], characters, size, relative))
    return rows
