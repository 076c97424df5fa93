"""Markdown through ``markdown-it-py``: headings give the section path, fences are code,
pipe tables are tables, a list (nested ones flattened) is one block with one line per item.

Text is taken from the parsed inline tokens, not the source, so ``**bold**`` and link
targets do not reach the index while the words do.
"""

from __future__ import annotations

import re

from markdown_it import MarkdownIt
from markdown_it.token import Token

from hearth.rag.parse.document import Outline, RawBlock, assemble
from hearth.rag.parse.text import decode
from hearth.types import ParsedDocument

_FRONT_MATTER = re.compile(r"\A---[ \t]*\n.*?\n(?:---|\.\.\.)[ \t]*(?:\n|\Z)", re.DOTALL)
_TAG = re.compile(r"<[^>]+>")
_HIDDEN_HTML = re.compile(r"<!--.*?-->|<(script|style)\b.*?</\1\s*>", re.DOTALL | re.IGNORECASE)


def inline_text(token: Token) -> str:
    parts: list[str] = []
    for child in token.children or ():
        if child.type in ("text", "code_inline"):
            parts.append(child.content)
        elif child.type in ("softbreak", "hardbreak"):
            parts.append("\n")  # line structure carries Q:/A: pairs and list-like text
        elif child.type == "image":
            parts.append(child.content)  # the alt text
    return "".join(parts)


class _Walker:
    """One pass over the token stream, in document order."""

    def __init__(self) -> None:
        self.outline = Outline()
        self.blocks: list[RawBlock] = []
        self.title = ""
        self.lists: list[str] = []  # open lists: "" for bullets, "1" for ordered
        self.list_lines: list[str] = []
        self.item_marker = ""
        self.rows: list[list[str]] | None = None

    def emit(self, text: str, kind: str = "text") -> None:
        self.blocks.append(RawBlock(text, kind, headings=self.outline.path))

    def walk(self, tokens: list[Token]) -> None:
        for index, token in enumerate(tokens):
            kind = token.type
            if kind == "heading_open":
                text = inline_text(tokens[index + 1]).replace("\n", " ").strip()
                if text:
                    if token.tag == "h1" and not self.title:
                        self.title = text
                    self.outline.enter(int(token.tag[1:]), text)
                    self.emit(text, "heading")
            elif kind in ("bullet_list_open", "ordered_list_open"):
                self.lists.append("1" if kind == "ordered_list_open" else "")
            elif kind in ("bullet_list_close", "ordered_list_close"):
                self.lists.pop()
                if not self.lists:
                    self.emit("\n".join(self.list_lines))
                    self.list_lines = []
            elif kind == "list_item_open":
                self.item_marker = f"{token.info or '1'}. " if self.lists[-1] else "- "
            elif kind == "table_open":
                self.rows = []
            elif kind == "tr_open" and self.rows is not None:
                self.rows.append([])
            elif kind == "table_close" and self.rows is not None:
                self.emit(
                    "\n".join(" | ".join(cells) for cells in self.rows if any(cells)), "table"
                )
                self.rows = None
            elif kind == "inline" and tokens[index - 1].type != "heading_open":
                self.inline(token)
            elif kind in ("fence", "code_block"):
                self.emit(token.content, "code")
            elif kind == "html_block":
                self.emit(_TAG.sub(" ", _HIDDEN_HTML.sub(" ", token.content)))

    def inline(self, token: Token) -> None:
        text = inline_text(token)
        if self.rows is not None:
            self.rows[-1].append(text.replace("\n", " ").strip())
        elif self.lists:
            # One line per item; nesting depth is not kept (blocks are cleaned of indentation).
            marker, self.item_marker = self.item_marker, ""
            self.list_lines.append(marker + text)
        else:
            self.emit(text)


def parse_markdown(data: bytes, source: str) -> ParsedDocument:
    text, encoding = decode(data, source)
    text = _FRONT_MATTER.sub("", text.lstrip("\ufeff"), count=1)
    walker = _Walker()
    walker.walk(MarkdownIt("commonmark").enable("table").parse(text))
    return assemble(source, walker.title, "md", walker.blocks, encoding)
