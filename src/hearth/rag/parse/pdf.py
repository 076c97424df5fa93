"""PDF through ``pypdf``: text per page, lines rejoined into paragraphs, page numbers kept.

A PDF has no paragraphs, only positioned lines. A line ends its paragraph when it ends a
sentence and stops short of the page's full width, when it is much shorter than that, or
when the next line opens a list item or a question/answer. Lines inside a paragraph are
joined without a space next to Chinese characters and with one between words. A short
unpunctuated line standing alone above text is a heading. Page-number lines and running
headers or footers repeated on most pages are dropped. No OCR: a scanned PDF is an error.
"""

from __future__ import annotations

import functools
import io
import logging
import re
import struct
import unicodedata
import zlib
from collections import Counter

from pypdf import PdfReader
from pypdf.errors import DependencyError, PyPdfError

from hearth.rag.parse.document import Outline, RawBlock, assemble, failure
from hearth.rag.parse.qa import ANSWER, QUESTION
from hearth.types import ParsedDocument

# pypdf logs what it repairs ("EOF marker not found", ...) as warnings. Unless the
# application routes logging somewhere, Python would print them over the progress bar; a
# PDF it cannot read is reported by name anyway, as a ParseError.
logging.getLogger("pypdf").addHandler(logging.NullHandler())

# pypdf reports malformed files with its own errors and, deeper in, with whatever its
# decoders hit; all of them mean "this file is broken", which is a ParseError to the caller.
_BROKEN = (PyPdfError, ValueError, KeyError, IndexError, TypeError, zlib.error, struct.error)

_PAGE_NUMBER = re.compile(
    r"^\s*(?:[-–—]\s*\d+\s*[-–—]|\d+|第\s*\d+\s*页(?:\s*[/／共]\s*\d+\s*页?)?|"
    r"page\s+\d+(?:\s+of\s+\d+)?|\d+\s*/\s*\d+)\s*$",
    re.IGNORECASE,
)
_STARTS_ITEM = re.compile(
    r"^\s*(?:[-•·▪●◦*]\s|\d{1,3}[.、)）]\s*\S|[（(]?[一二三四五六七八九十]+[、)）]|第\S{1,4}[章节条])"
)
_ENDS_PARAGRAPH = tuple("。！？；：.!?:;”」』）)")
_CJK = re.compile(r"[\u3000-\u303f\u3400-\u4dbf\u4e00-\u9fff\uff00-\uffef]")
_FULL_LINE = 0.8  # a line this close to the widest one on its page probably wraps
_SHORT_LINE = 0.5  # a line this short ends its paragraph even without punctuation
_NUMBERED = re.compile(r"^(\d+(?:\.\d+)*)\.?\s")


def _width(line: str) -> int:
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in line)


def _join(left: str, right: str) -> str:
    if not left:
        return right
    if _CJK.match(left[-1]) or _CJK.match(right[0]) or (left[-1] == "-" and right[0].isalnum()):
        return left + right
    return f"{left} {right}"


def paragraphs(lines: list[str]) -> list[tuple[str, bool]]:
    """(paragraph, could be a heading) for the lines of one page."""
    widest = max((_width(line) for line in lines), default=0)
    out: list[tuple[str, bool]] = []
    current: list[str] = []

    def end() -> None:
        if current:
            text = functools.reduce(_join, current, "")
            single = len(current) == 1 and _width(text) < widest * _SHORT_LINE
            out.append((text, single and not text.endswith(_ENDS_PARAGRAPH)))
            current.clear()

    for line in lines:
        line = line.strip()
        if not line:
            end()
            continue
        if _STARTS_ITEM.match(line) or QUESTION.match(line) or ANSWER.match(line):
            end()
        current.append(line)
        width = _width(line)
        if width < widest * _SHORT_LINE or (
            width < widest * _FULL_LINE and line.endswith(_ENDS_PARAGRAPH)
        ):
            end()
    end()
    return out


def _blocks(pages: list[list[str]], title: str) -> list[RawBlock]:
    """Paragraphs with their pages; a short unpunctuated line before text is a heading.

    Levels come from numbering ("2." under "1", "2.1" under "2."); the document title, when
    it opens the text, sits above them all.
    """
    found = [
        (text, candidate, number)
        for number, lines in enumerate(pages, 1)
        for text, candidate in paragraphs(lines)
    ]
    outline = Outline()
    raw = []
    for index, (text, candidate, page) in enumerate(found):
        following = found[index + 1] if index + 1 < len(found) else None
        if candidate and following is not None and not following[1]:
            numbered = _NUMBERED.match(text)
            level = 0 if text == title else 1 + (numbered.group(1).count(".") if numbered else 0)
            raw.append(RawBlock(text, "heading", page, outline.enter(level, text)))
        else:
            raw.append(RawBlock(text, page=page, headings=outline.path))
    return raw


def _running_lines(pages: list[list[str]]) -> set[str]:
    """Header/footer lines: the same first or last line (digits aside) on most pages."""
    if len(pages) < 3:
        return set()
    counts: Counter[str] = Counter()
    for lines in pages:
        edges = {_shape(line) for line in (lines[:1] + lines[-1:]) if line.strip()}
        counts.update(edges)
    return {shape for shape, n in counts.items() if n >= len(pages) * 0.6}


def _shape(line: str) -> str:
    return re.sub(r"\d+", "#", line.strip())


def _read(reader: PdfReader, source: str) -> list[list[str]]:
    if reader.is_encrypted:
        try:
            opened = reader.decrypt("")  # many "encrypted" PDFs only restrict printing
        except DependencyError as exc:
            raise failure(
                source, "it is encrypted with AES; install `cryptography` to read it"
            ) from exc
        if not opened:
            raise failure(
                source,
                "it is encrypted with a password; save an unprotected copy "
                "(for example `qpdf --decrypt in.pdf out.pdf`) and add that",
            )
    pages = []
    for page in reader.pages:
        text = page.extract_text() or ""
        pages.append([line for line in text.split("\n") if not _PAGE_NUMBER.match(line)])
    return pages


def parse_pdf(data: bytes, source: str) -> ParsedDocument:
    try:
        reader = PdfReader(io.BytesIO(data))
        pages = _read(reader, source)
        title = (reader.metadata.title if reader.metadata else None) or ""
    except _BROKEN as exc:
        raise failure(source, f"it is not a readable PDF ({exc})") from exc
    running = _running_lines(pages)
    kept = [[line for line in lines if _shape(line) not in running] for lines in pages]
    raw = _blocks(kept, title)
    if not raw:
        raise failure(source, "no text could be extracted (a scanned PDF? run OCR on it first)")
    return assemble(source, title, "pdf", raw)
