"""Data to tokens with the base model's own tokenizer and chat template (check and run).

The base is started as the server would start it (``tokens.model.open_model``); its
``/props`` give the GGUF's chat template, BOS and EOS. What ``hearth finetune check``
reports and what ``run`` trains on come from the same :func:`prepare`.
"""

from __future__ import annotations

import hashlib
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hearth.config import Settings
from hearth.errors import UserError
from hearth.finetune.data import Dataset, Example, Problem, load
from hearth.finetune.encode import IGNORE, Encoded, EncodedPair, Encoder
from hearth.finetune.template import ChatTemplate, from_props

DEFAULT_MAX_LEN = 1024


@dataclass
class Prepared:
    data: Dataset
    template: ChatTemplate
    encoded: list[Encoded] = field(default_factory=list)
    pairs: list[EncodedPair] = field(default_factory=list)
    too_long: list[str] = field(default_factory=list)  # sources over max_len, left out
    lengths: list[int] = field(default_factory=list)
    check_prompts: list[list[int]] = field(default_factory=list)
    sample: list[tuple[str, bool]] = field(default_factory=list)  # one rendered example
    data_sha256: str = ""

    @property
    def tokens(self) -> int:
        return sum(self.lengths)

    @property
    def trained_tokens(self) -> int:
        return sum(e.trained for e in self.encoded) + sum(
            len(p.chosen_ids) + len(p.rejected_ids) for p in self.pairs
        )

    def summary(self) -> dict[str, Any]:
        lengths = self.lengths or [0]
        return {
            "files": self.data.formats,
            "examples": len(self.data.examples),
            "usable": len(self.encoded) + len(self.pairs),
            "problems": [{"at": p.source, "message": p.message} for p in self.data.problems],
            "tokens": {
                "total": self.tokens,
                "trained": self.trained_tokens,
                "max": max(lengths),
                "mean": round(statistics.fmean(lengths), 1),
            },
            "too_long": self.too_long,
            "template_sha256": self.template.sha256,
            "data_sha256": self.data_sha256,
        }


def data_sha256(paths: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        try:
            digest.update(path.read_bytes())
        except OSError:
            digest.update(b"\0missing\0" + str(path).encode())
    return digest.hexdigest()


def prepare(
    settings: Settings, base: str, paths: list[Path], *, max_len: int = DEFAULT_MAX_LEN
) -> Prepared:
    from hearth.tokens.model import open_model

    data = load(paths)
    tokenizer = open_model(base, settings)
    try:
        template = from_props(tokenizer.props())
        encoder = Encoder(template, tokenizer, tokenizer.prefix())
        out = Prepared(data, template, data_sha256=data_sha256(paths))
        for example in data.examples:
            _encode(out, encoder, example, max_len)
        for example in data.examples[:3]:
            prompt = _prompt(example)
            text = template.render(prompt, add_generation_prompt=True)
            out.check_prompts.append(encoder.tokens([(text, False)])[0])
    finally:
        tokenizer.close()
    return out


def _encode(out: Prepared, encoder: Encoder, example: Example, max_len: int) -> None:
    try:
        if example.preference:
            pair = encoder.pair(example)
            length = len(pair.prompt_ids) + max(len(pair.chosen_ids), len(pair.rejected_ids))
            if length > max_len:
                out.too_long.append(example.source)
            else:
                out.pairs.append(pair)
        else:
            encoded = encoder.example(example)
            length = len(encoded.input_ids)
            if length > max_len:
                out.too_long.append(example.source)
            elif encoded.trained == 0:
                out.data.problems.append(Problem(example.source, "no answer tokens to train on"))
                return
            else:
                out.encoded.append(encoded)
            if not out.sample:
                out.sample = encoder.template.segments(list(example.messages))
    except UserError as e:
        out.data.problems.append(Problem(example.source, str(e)))
        return
    out.lengths.append(length)


def _prompt(example: Example) -> list[dict[str, str]]:
    """The chat up to its last user message: what the model answers at serving time."""
    messages = list(example.messages)
    if not example.preference:
        messages = messages[:-1]
    return messages


__all__ = ["DEFAULT_MAX_LEN", "IGNORE", "Prepared", "prepare"]
