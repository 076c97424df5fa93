"""Question-and-answer pairs, found in any format and kept as one block of kind "qa".

FAQ documents are the commonest knowledge-base input, and a splitter that separates a
question from its answer makes both halves useless for retrieval. A pair starts at a line
that opens with a question marker (``Q:``, ``问：``, ``问题：``, ``Question 3:``) and runs up
to the next question line; it counts only when an answer line (``A:``, ``答：``,
``回答：``, ``Answer:``) follows, in the same block or opening the next one.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # document.py imports this module; only the type is needed here
    from hearth.rag.parse.document import RawBlock

# An optional list marker before the question word: "- Q:", "1. 问：", "（2）问题：".
_LEAD = r"^[ \t]*(?:[-*•·]\s*|\d{1,3}[.、)）]\s*|[（(]\d{1,3}[)）]\s*)?"
QUESTION = re.compile(_LEAD + r"(?:Q(?:uestion)?|问题?)[ \t]*\d{0,3}[ \t]*[:：]", re.IGNORECASE)
ANSWER = re.compile(_LEAD + r"(?:A(?:nswer)?|答案?|回答)[ \t]*\d{0,3}[ \t]*[:：]", re.IGNORECASE)


def _segments(text: str) -> list[str]:
    """The text cut before every question line."""
    segments: list[list[str]] = [[]]
    for line in text.split("\n"):
        if QUESTION.match(line) and segments[-1]:
            segments.append([])
        segments[-1].append(line)
    return ["\n".join(lines) for lines in segments if lines]


def _answered(segment: str) -> bool:
    return any(ANSWER.match(line) for line in segment.split("\n")[1:])


def find_qa(blocks: list[RawBlock]) -> list[RawBlock]:
    """Blocks with every question/answer pair made into its own "qa" block."""
    out: list[RawBlock] = []
    pending: RawBlock | None = None  # a question whose answer may open the next block
    for block in blocks:
        if block.kind != "text":
            if pending is not None:
                out.append(pending)
                pending = None
            out.append(block)
            continue
        for segment in _segments(block.text):
            if pending is not None:
                if ANSWER.match(segment) and pending.headings == block.headings:
                    out.append(replace(pending, text=f"{pending.text}\n{segment}", kind="qa"))
                    pending = None
                    continue
                out.append(pending)
                pending = None
            piece = replace(block, text=segment)
            if not QUESTION.match(segment):
                out.append(piece)
            elif _answered(segment):
                out.append(replace(piece, kind="qa"))
            else:
                pending = piece
    if pending is not None:
        out.append(pending)
    return out
