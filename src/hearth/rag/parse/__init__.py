"""Read a file into a ``ParsedDocument``: its blocks with exact offsets into its text.

``parse(path)`` picks the parser by suffix. Every parser returns ``text`` as its blocks
joined by ``"\\n\\n"`` (``document.SEPARATOR``), so ``doc.text[b.start:b.end] == b.text``
for every block; question/answer pairs become blocks of kind "qa" in every format. A file
that cannot be read raises ``ParseError`` naming the file and the reason. Each format's
library is imported only when a file of that format is parsed.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from hearth.rag.parse.document import SEPARATOR, failure
from hearth.types import ParsedDocument

__all__ = ["FORMATS", "SEPARATOR", "SUPPORTED", "parse"]

FORMATS: dict[str, str] = {
    ".pdf": "pdf",
    ".docx": "docx",
    ".md": "md",
    ".markdown": "md",
    ".txt": "txt",
    ".text": "txt",
    ".html": "html",
    ".htm": "html",
}
SUPPORTED: frozenset[str] = frozenset(FORMATS)

Parser = Callable[[bytes, str], ParsedDocument]


def _parser(fmt: str) -> Parser:
    if fmt == "pdf":
        from hearth.rag.parse.pdf import parse_pdf

        return parse_pdf
    if fmt == "docx":
        from hearth.rag.parse.docx import parse_docx

        return parse_docx
    if fmt == "md":
        from hearth.rag.parse.markdown import parse_markdown

        return parse_markdown
    if fmt == "html":
        from hearth.rag.parse.html import parse_html

        return parse_html
    from hearth.rag.parse.text import parse_text

    return parse_text


def parse(path: Path, data: bytes | None = None) -> ParsedDocument:
    """Parse ``data`` (or the file at ``path``); ``path`` names it either way."""
    source = str(path)
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        supported = ", ".join(sorted(SUPPORTED))
        hint = " (save it as .docx first)" if path.suffix.lower() == ".doc" else ""
        raise failure(
            source,
            f"unsupported file type '{path.suffix or '(no suffix)'}'{hint}; supported: {supported}",
        )
    if data is None:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise failure(source, exc.strerror or str(exc)) from exc
    if not data.strip():
        raise failure(source, "the file is empty")
    return _parser(fmt)(data, source)
