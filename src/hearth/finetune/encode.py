"""Examples to token ids and loss labels, with the serving model's own tokenizer.

The whole rendered chat is tokenized at once, exactly as serving tokenizes a prompt, and
each token is labelled by where its bytes start: inside an assistant answer it is trained,
elsewhere its label is -100 (ignored by the loss). Tokenizing pieces one by one would let
tokens merge differently at the seams than they do when the model is served.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from hearth.errors import HearthError
from hearth.finetune.data import Example
from hearth.finetune.template import ChatTemplate
from hearth.types import TokenPiece

IGNORE = -100


class Tokenizer(Protocol):
    def tokenize(self, text: str) -> list[TokenPiece]: ...


@dataclass(frozen=True)
class Encoded:
    source: str
    input_ids: list[int]
    labels: list[int]  # IGNORE where the loss does not look

    @property
    def trained(self) -> int:
        return sum(1 for label in self.labels if label != IGNORE)


@dataclass(frozen=True)
class EncodedPair:
    source: str
    prompt_ids: list[int]
    chosen_ids: list[int]
    rejected_ids: list[int]


class Encoder:
    def __init__(self, template: ChatTemplate, tokenizer: Tokenizer, prefix: Sequence[int]) -> None:
        self.template = template
        self.tokenizer = tokenizer
        self.prefix = list(prefix)  # what serving puts before the text (BOS, if any)

    def tokens(self, segments: list[tuple[str, bool]]) -> tuple[list[int], list[int]]:
        text = "".join(s for s, _ in segments)
        pieces = self.tokenizer.tokenize(text)
        if sum(len(p.piece) for p in pieces) != len(text.encode("utf-8")):
            raise HearthError(
                "the tokenizer's pieces do not add up to the text, so the answer tokens cannot "
                "be located for the loss"
            )
        spans: list[tuple[int, int]] = []
        at = 0
        for piece, trained in segments:
            size = len(piece.encode("utf-8"))
            if trained:
                spans.append((at, at + size))
            at += size
        ids = list(self.prefix)
        labels = [IGNORE] * len(self.prefix)
        at = 0
        for p in pieces:
            ids.append(p.id)
            labels.append(p.id if any(a <= at < b for a, b in spans) else IGNORE)
            at += len(p.piece)
        return ids, labels

    def example(self, example: Example) -> Encoded:
        ids, labels = self.tokens(self.template.segments(list(example.messages)))
        return Encoded(example.source, ids, labels)

    def pair(self, example: Example) -> EncodedPair:
        """A preference pair as trl's DPO takes it: the prompt's ids, then each answer's."""
        prompt = list(example.messages)
        prompt_ids, _ = self.tokens(
            [(self.template.render(prompt, add_generation_prompt=True), False)]
        )
        full = []
        for answer in (example.chosen, example.rejected):
            chat = [*prompt, {"role": "assistant", "content": answer or ""}]
            ids, labels = self.tokens(self.template.segments(chat))
            last = max(i for i, label in enumerate(labels) if label != IGNORE)
            full.append(ids[: last + 1])  # the answer and its end-of-turn, not what follows
        shared = min(_common(prompt_ids, ids) for ids in full)
        return EncodedPair(example.source, prompt_ids[:shared], full[0][shared:], full[1][shared:])


def _common(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n
