"""HTML through BeautifulSoup (stdlib parser): the main text only, in document order.

Scripts, styles, navigation, headers, footers, sidebars and hidden elements are removed
before reading, because retrieval that matches a site menu on every page is noise. When the
page marks its content (``<main>``, ``role=main``, ``<article>``) only that is read.
"""

from __future__ import annotations

import codecs
import re

from bs4 import BeautifulSoup, Tag
from bs4.element import Comment, Declaration, Doctype, NavigableString, ProcessingInstruction

from hearth.rag.parse.document import Outline, RawBlock, assemble
from hearth.rag.parse.text import decode
from hearth.types import ParsedDocument

_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9._-]+)""", re.I)
# Browsers read pages labelled GB2312 as GBK, and such pages do use GBK-only characters.
_ALIASES = {"gb2312": "gbk", "x-gbk": "gbk", "utf8": "utf-8"}

# Elements that never hold the page's text. Not <form>: ASP.NET wraps whole pages in one.
_NEVER_TEXT = frozenset(
    {"script", "style", "noscript", "template", "svg", "canvas", "iframe", "object", "embed"}
    | {"nav", "aside", "button", "select", "input", "textarea", "dialog", "menu"}
)
_ROLES = {"navigation", "banner", "contentinfo", "complementary", "search", "menu", "dialog"}
_BOILERPLATE = re.compile(
    r"(?:^|[-_\s])(?:nav|navbar|menu|footer|sidebar|breadcrumbs?|cookies?|banner|ads?|advert\w*|"
    r"share|social|skip-link|toc)(?:$|[-_\s])",
    re.I,
)
_HEADINGS = {f"h{n}": n for n in range(1, 7)}
_BLOCKS = frozenset(
    {"p", "div", "section", "article", "main", "header", "footer", "blockquote", "figure"}
    | {"figcaption", "address", "details", "summary", "dl", "dt", "dd", "hr", "center"}
    | {"fieldset", "form"}
)
_CJK = "\u3000-\u303f\u3400-\u4dbf\u4e00-\u9fff\uff00-\uffef"
# A line break in the source between two Chinese characters is layout, not a space.
_CJK_BREAK = re.compile(f"(?<=[{_CJK}])[ \t\r\f]*\n\\s*(?=[{_CJK}])")
_WHITESPACE = re.compile(r"[ \t\r\n\f\u00a0]+")
_BR = "\u2028"  # stands for <br> while source whitespace is collapsed


def _decode(data: bytes, source: str) -> tuple[str, str]:
    declared = _META_CHARSET.search(data[:4096])
    if declared and not data.startswith(
        (codecs.BOM_UTF8, codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
    ):
        name = declared.group(1).decode("ascii").lower()
        name = _ALIASES.get(name, name)
        try:
            return data.decode(name), name
        except (LookupError, UnicodeDecodeError):
            pass  # a wrong or unknown label: detect instead, like a browser would
    return decode(data, source)


def _collapse(text: str) -> str:
    text = _WHITESPACE.sub(" ", _CJK_BREAK.sub("", text))
    return text.replace(f" {_BR}", _BR).replace(f"{_BR} ", _BR).replace(_BR, "\n").strip()


def _boilerplate(tag: Tag) -> bool:
    if tag.name in _NEVER_TEXT:
        return True
    if tag.name in ("header", "footer") and tag.find_parent(["main", "article"]) is None:
        return True
    attrs = tag.attrs or {}
    if "hidden" in attrs or str(attrs.get("aria-hidden", "")).lower() == "true":
        return True
    if str(attrs.get("role", "")).lower() in _ROLES:
        return True
    style = str(attrs.get("style", "")).replace(" ", "").lower()
    if "display:none" in style or "visibility:hidden" in style:
        return True
    names = " ".join([*tag.get_attribute_list("class"), str(attrs.get("id", ""))])
    return bool(_BOILERPLATE.search(names))


def _root(soup: BeautifulSoup) -> Tag | BeautifulSoup:
    for found in (soup.find("main"), soup.select_one('[role="main"]')):
        if isinstance(found, Tag):
            return found
    articles = [a for a in soup.find_all("article") if isinstance(a, Tag)]
    if articles:
        return max(articles, key=lambda a: len(a.get_text()))
    return soup.body or soup


class _Reader:
    def __init__(self) -> None:
        self.outline = Outline()
        self.blocks: list[RawBlock] = []
        self.buffer: list[str] = []
        self.first_h1 = ""

    def flush(self) -> None:
        text = _collapse("".join(self.buffer))
        self.buffer = []
        if text:
            self.blocks.append(RawBlock(text, headings=self.outline.path))

    def visit(self, node: Tag | BeautifulSoup) -> None:
        for child in node.children:
            if isinstance(child, Comment | Declaration | Doctype | ProcessingInstruction):
                continue
            if isinstance(child, NavigableString):
                self.buffer.append(str(child))
            elif isinstance(child, Tag):
                self.element(child)

    def element(self, tag: Tag) -> None:
        name = tag.name
        if name == "br":
            self.buffer.append(_BR)
        elif name in _HEADINGS:
            self.flush()
            text = _collapse(tag.get_text(" ")).replace("\n", " ")
            if text:
                self.first_h1 = self.first_h1 or (text if name == "h1" else "")
                path = self.outline.enter(_HEADINGS[name], text)
                self.blocks.append(RawBlock(text, "heading", headings=path))
        elif name == "pre":
            self.flush()
            self.blocks.append(RawBlock(tag.get_text(), "code", headings=self.outline.path))
        elif name == "table":
            self.flush()
            rows = [" | ".join(_cells(tr)) for tr in tag.find_all("tr")]
            table = "\n".join(row for row in rows if row.strip(" |"))
            self.blocks.append(RawBlock(table, "table", headings=self.outline.path))
        elif name in ("ul", "ol"):
            self.flush()
            self.blocks.append(RawBlock("\n".join(_list_lines(tag)), headings=self.outline.path))
        elif name in _BLOCKS or name == "li":
            self.flush()
            self.visit(tag)
            self.flush()
        else:
            self.visit(tag)


def _cells(row: Tag) -> list[str]:
    cells = row.find_all(["th", "td"])
    return [_collapse(c.get_text(" ")).replace("\n", " ") for c in cells if isinstance(c, Tag)]


def _list_lines(listing: Tag) -> list[str]:
    """One line per item, nested lists flattened in place."""
    lines: list[str] = []
    ordered = listing.name == "ol"
    items = [li for li in listing.find_all("li", recursive=False) if isinstance(li, Tag)]
    for number, item in enumerate(items, 1):
        own: list[str] = []
        nested: list[str] = []
        for child in item.children:
            if isinstance(child, Tag) and child.name in ("ul", "ol"):
                nested.extend(_list_lines(child))
            elif isinstance(child, Tag):
                own.append(_BR if child.name == "br" else child.get_text(" "))
            elif isinstance(child, NavigableString) and not isinstance(child, Comment):
                own.append(str(child))
        marker = f"{number}. " if ordered else "- "
        text = _collapse("".join(own)).replace("\n", " ")
        if text:
            lines.append(marker + text)
        lines.extend(nested)
    return lines


def parse_html(data: bytes, source: str) -> ParsedDocument:
    text, encoding = _decode(data, source)
    soup = BeautifulSoup(text, "html.parser")
    title = soup.title.get_text(" ").strip() if soup.title else ""
    for tag in soup.find_all(True):
        # A removed ancestor's descendants are detached; skip them, they are gone already.
        if isinstance(tag, Tag) and not tag.decomposed and _boilerplate(tag):
            tag.decompose()
    reader = _Reader()
    reader.visit(_root(soup))
    reader.flush()
    return assemble(source, title or reader.first_h1, "html", reader.blocks, encoding)
