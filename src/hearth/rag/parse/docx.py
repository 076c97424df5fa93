"""Word documents through ``python-docx``: paragraphs and tables in document order.

Heading styles ("Heading 1", "标题 1", "Title") give the section path. A table becomes one
block of kind "table", one line per row with cells joined by " | ", its first row first, so
the splitter can repeat that header line when a long table must be cut.
"""

from __future__ import annotations

import io
import re
import zipfile

import docx
from docx.opc.exceptions import OpcError
from docx.table import Table
from docx.text.paragraph import Paragraph

from hearth.rag.parse.document import Outline, RawBlock, assemble, failure
from hearth.types import ParsedDocument

# A .docx is a zip of XML parts; each layer has its own way of saying the file is broken
# (lxml's XMLSyntaxError is a SyntaxError).
_BROKEN = (zipfile.BadZipFile, OpcError, SyntaxError, KeyError, ValueError)
_HEADING_STYLE = re.compile(r"^(?:heading|标题)\s*(\d)$", re.IGNORECASE)


def _level(paragraph: Paragraph) -> int | None:
    name = paragraph.style.name if paragraph.style is not None else ""
    if not name:
        return None
    if name.lower() in ("title", "标题"):
        return 0
    match = _HEADING_STYLE.match(name.strip())
    return int(match.group(1)) if match else None


def table_lines(table: Table) -> list[str]:
    lines = []
    for row in table.rows:
        cells: list[str] = []
        seen: list[object] = []
        for cell in row.cells:
            # A merged cell is reported once per grid column it spans; keep it once.
            if any(cell._tc is other for other in seen):
                continue
            seen.append(cell._tc)
            cells.append(" ".join(p.text.strip() for p in cell.paragraphs if p.text.strip()))
        if any(cells):
            lines.append(" | ".join(cells))
    return lines


def parse_docx(data: bytes, source: str) -> ParsedDocument:
    try:
        document = docx.Document(io.BytesIO(data))
        title = document.core_properties.title or ""
        outline = Outline()
        raw: list[RawBlock] = []
        for item in document.iter_inner_content():
            if isinstance(item, Table):
                text = "\n".join(table_lines(item))
                raw.append(RawBlock(text, "table", headings=outline.path))
                continue
            level = _level(item)
            text = item.text
            if level is not None and text.strip():
                title = title or text.strip()
                heading = text.replace("\n", " ").strip()
                raw.append(RawBlock(heading, "heading", headings=outline.enter(level, heading)))
            else:
                raw.append(RawBlock(text, headings=outline.path))
    except _BROKEN as exc:
        raise failure(
            source, f"it is not a readable .docx file ({type(exc).__name__}: {exc})"
        ) from exc
    return assemble(source, title, "docx", raw)
