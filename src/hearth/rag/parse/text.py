"""Plain text: detect the encoding, cut paragraphs, find Chinese chapter headings.

Chinese files still arrive in GBK/GB18030 from older Windows tools, so detection is not an
afterthought: byte-order marks first, then strict UTF-8, then GBK/GB18030 when the decoded
text really looks like Chinese, then ``charset-normalizer`` for everything else.
"""

from __future__ import annotations

import codecs
import re

from charset_normalizer import from_bytes

from hearth.rag.parse.document import Outline, RawBlock, assemble, clean, failure
from hearth.rag.parse.qa import QUESTION
from hearth.types import ParsedDocument

_BOMS = (  # UTF-32 before UTF-16: the UTF-32-LE mark begins with the UTF-16-LE one
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)

# Legacy Chinese encodings decode almost any byte string, so a reading is believed only when
# its non-ASCII characters look like Chinese: for GBK, mostly GB2312 (common hanzi and
# punctuation; Latin-1 or Big5 bytes read as GBK land largely outside it); for Big5, mostly
# CJK ideographs and punctuation (Korean or Japanese bytes read as Big5 are not). EUC-KR
# Korean also reads as plausible GB2312; but Korean puts spaces between words and Chinese
# does not, so a reading with many spaces between two hanzi is rejected.
_GB_SHARE = 0.8
_BIG5_SHARE = 0.9
_SPACED_HANZI = 0.05
_HAN = re.compile("[\u3000-\u303f\u4e00-\u9fff\uff00-\uffef]")
_HANZI = re.compile("[\u4e00-\u9fff]")
_HANZI_SPACE_HANZI = re.compile("[\u4e00-\u9fff] (?=[\u4e00-\u9fff])")
# Among the single-byte code pages charset-normalizer finds equally plausible, the one
# Western Windows text is really in.
_WESTERN = "cp1252"


def _wide(text: str) -> list[str]:
    return [c for c in text if ord(c) > 0x7F]


def _gb2312_share(text: str) -> float:
    wide = _wide(text)
    common = 0
    for char in wide:
        try:
            common += len(char.encode("gb2312")) == 2
        except UnicodeEncodeError:
            continue
    return common / len(wide) if wide else 0.0


def _han_share(text: str) -> float:
    wide = _wide(text)
    return sum(1 for c in wide if _HAN.match(c)) / len(wide) if wide else 0.0


_CHINESE = (
    ("gbk", _gb2312_share, _GB_SHARE),  # GBK before GB18030: the narrower, commoner name
    ("gb18030", _gb2312_share, _GB_SHARE),
    ("big5", _han_share, _BIG5_SHARE),
)


def decode(data: bytes, source: str) -> tuple[str, str]:
    """The text and the name of the encoding it was read with."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            try:
                return data.decode(encoding), encoding
            except UnicodeDecodeError as exc:
                raise failure(source, f"it starts with a {encoding} mark but {exc}") from exc
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    for encoding, share, threshold in _CHINESE:
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError:
            continue
        hanzi = len(_HANZI.findall(text))
        spaced = len(_HANZI_SPACE_HANZI.findall(text))
        if share(text) >= threshold and spaced <= hanzi * _SPACED_HANZI:
            return text, encoding
    matches = list(from_bytes(data))
    if not matches:
        raise failure(source, "it is not text in any encoding hearth can detect (binary?)")
    calm = [m for m in matches if m.chaos <= matches[0].chaos]
    best = next((m for m in calm if m.encoding == _WESTERN), matches[0])
    return str(best), best.encoding


# Chinese section numbering, outermost first. A document's heading kinds are ranked in the
# order it first uses them, so "一、" under "第一章" nests and "一、" alone is top level.
_NUMERAL = "[一二三四五六七八九十百零〇两\\d]+"
_CHAPTERS = (
    re.compile(f"^第{_NUMERAL}[部篇编]"),
    re.compile(f"^第{_NUMERAL}章"),
    re.compile(f"^第{_NUMERAL}节"),
    re.compile("^[一二三四五六七八九十]+、"),
    re.compile("^[（(][一二三四五六七八九十]+[)）]"),
)
_PLAIN = len(_CHAPTERS)  # an unnumbered heading line above a paragraph of prose
_HEADING_MAX = 40
_ENDS_SENTENCE = tuple("。！？；，：.!?;,:")
_ENDS_PROSE = tuple('。！？.!?”"）)')
_LIST_ITEM = re.compile(r"^\s*(?:[-*•·]|\d{1,3}[.、)）])")


def _heading_kind(line: str, body: str) -> int | None:
    """The heading kind of a short unpunctuated ``line`` standing above ``body``, if any.

    A numbered line is a heading on its own; an unnumbered one only above prose, so that
    a list of short lines is not read as a stack of headings.
    """
    if len(line) > _HEADING_MAX or line.endswith(_ENDS_SENTENCE) or QUESTION.match(line):
        return None
    for rank, pattern in enumerate(_CHAPTERS):
        if pattern.match(line):
            return rank
    if body.endswith(_ENDS_PROSE) and not _LIST_ITEM.match(line) and not line.isdigit():
        return _PLAIN
    return None


def paragraphs(text: str) -> list[str]:
    """Blank lines end paragraphs; so does a line indented with ideographic spaces."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = re.sub(r"\n(?=[\u3000]{1,4}\S)", "\n\n", text)
    return [p for p in (clean(part) for part in re.split(r"\n[ \t\u3000]*\n", text)) if p]


def parse_text(data: bytes, source: str) -> ParsedDocument:
    text, encoding = decode(data, source)
    parts = paragraphs(text)
    title = ""
    outline = Outline()
    ranks: list[int] = []  # heading kinds in order of first use
    raw: list[RawBlock] = []
    for index, paragraph in enumerate(parts):
        line, _, body = paragraph.partition("\n")
        following = body or (parts[index + 1] if index + 1 < len(parts) else "")
        kind = _heading_kind(line, following) if following else None
        if index == 0 and kind in (None, _PLAIN) and _is_title(line, following):
            title = line
            raw.append(RawBlock(line, "heading", headings=outline.enter(0, line)))
            if body:
                raw.append(RawBlock(body, headings=outline.path))
            continue
        if kind is None or (kind == _PLAIN and not body):
            # An unnumbered heading must sit directly on its text, not a blank line above.
            raw.append(RawBlock(paragraph, headings=outline.path))
            continue
        if kind not in ranks:
            ranks.append(kind)
        path = outline.enter(ranks.index(kind) + 1, line)
        raw.append(RawBlock(line, "heading", headings=path))
        if body:
            raw.append(RawBlock(body, headings=path))
    return assemble(source, title, "txt", raw, encoding)


def _is_title(line: str, following: str) -> bool:
    """A short first line with no sentence punctuation, with text after it."""
    return (
        bool(following)
        and len(line) <= _HEADING_MAX * 2
        and not line.endswith(_ENDS_SENTENCE)
        and not QUESTION.match(line)
    )
