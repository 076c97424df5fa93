"""What every parser shares: raw blocks in, a ``ParsedDocument`` with exact offsets out.

A parser only says what it found (text, kind, page, heading path). Offsets are assigned
here, once, after cleaning and Q&A detection, with ``text = SEPARATOR.join(block texts)``,
so ``doc.text[b.start:b.end] == b.text`` holds for every format by construction.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import PurePath

from hearth.errors import ParseError
from hearth.rag.parse.qa import find_qa
from hearth.types import Block, ParsedDocument

# Blocks never contain a blank line (except code), so the text splits back into its blocks.
SEPARATOR = "\n\n"

# Zero-width characters and C0 controls (extraction debris from PDFs) carry no text.
_INVISIBLE = re.compile("[\u200b\u200c\u200d\u2060\ufeff\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_SPACES = re.compile("[ \t\u00a0\u2002-\u200a\u202f\u205f]+")
_BLANK_LINES = re.compile(r"\n(?:[ \t]*\n)+")


@dataclass(frozen=True)
class RawBlock:
    """A block before offsets: what a format parser emits."""

    text: str
    kind: str = "text"
    page: int | None = None
    headings: tuple[str, ...] = ()


class Outline:
    """The heading path at the current point of a document.

    Levels only need to be comparable (h1 < h2, Title < Heading 1), not contiguous.
    """

    def __init__(self) -> None:
        self._stack: list[tuple[int, str]] = []

    def enter(self, level: int, title: str) -> tuple[str, ...]:
        while self._stack and self._stack[-1][0] >= level:
            self._stack.pop()
        self._stack.append((level, title))
        return self.path

    @property
    def path(self) -> tuple[str, ...]:
        return tuple(title for _, title in self._stack)


def failure(source: str, reason: str) -> ParseError:
    # The file's name, not its path: an upload's path is a temporary file of the server's.
    return ParseError(f"Cannot parse '{PurePath(source).name}': {reason}", param="file")


def default_title(source: str) -> str:
    return PurePath(source).stem or source


def clean(text: str, kind: str = "text") -> str:
    """Normalise whitespace without changing words: one space, no blank lines inside."""
    text = _INVISIBLE.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))
    if kind == "code":
        # Indentation is meaning in code; only trailing space and outer blank lines go.
        lines = [line.rstrip() for line in text.split("\n")]
        return "\n".join(lines).strip("\n")
    # The ideographic space indents Chinese paragraphs; it is layout, not content.
    lines = [_SPACES.sub(" ", line).strip(" \u3000") for line in text.split("\n")]
    return _BLANK_LINES.sub("\n", "\n".join(lines)).strip()


def assemble(
    source: str,
    title: str,
    fmt: str,
    raw: Iterable[RawBlock],
    encoding: str | None = None,
) -> ParsedDocument:
    """Clean, detect Q&A pairs, assign offsets; an empty result is a ``ParseError``."""
    cleaned = []
    for block in raw:
        text = clean(block.text, block.kind)
        if text:
            cleaned.append(RawBlock(text, block.kind, block.page, block.headings))
    blocks: list[Block] = []
    position = 0
    for block in find_qa(cleaned):
        end = position + len(block.text)
        blocks.append(Block(block.text, position, end, block.kind, block.page, block.headings))
        position = end + len(SEPARATOR)
    if not blocks:
        raise failure(source, "the document has no text (is it empty, or a scanned image?)")
    text = SEPARATOR.join(b.text for b in blocks)
    return ParsedDocument(
        source=source,
        title=clean(title).replace("\n", " ") or default_title(source),
        format=fmt,
        text=text,
        blocks=tuple(blocks),
        encoding=encoding,
    )
