"""Split a parsed document into chunks measured in the embedding model's own tokens.

Cut points, strongest first: block boundaries (paragraphs, tables, Q&A pairs), line ends,
sentence ends (Chinese 。！？；… and English . ! ? with their closing quotes), clause marks
(，、：and , ; : before a space), then the gaps between words or Chinese characters. A
``.``, ``,`` or ``:`` between two non-spaces never cuts, so "3.14", "1,000", "v2.0", URLs and
e-mail addresses stay whole; only a single "word" longer than the whole budget is cut
inside, because the budget is a hard limit of the embedder.

A block that fits the budget is never cut. Small blocks are packed together, but a change
of section (heading path) starts a new chunk. A block too big to fit is cut, and the pieces
of a table or Q&A pair after the first repeat its first line (the header row, the
question). A chunk that continues text of the same section starts with the last sentences
(about ``overlap`` tokens) of the one before.

Every chunk's ``text`` is ``prefix + doc.text[start:end]``, where the prefix is empty except
for a repeated header/question line; ``tokens`` is ``count_tokens(text) <= max_tokens``.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable
from dataclasses import dataclass

from hearth.errors import InvalidRequest
from hearth.types import Chunk, ParsedDocument

CountTokens = Callable[[str], int]

BLOCK, LINE, SENTENCE, CLAUSE, WORD = range(5)

_CLOSERS = "\"'”’」』）)】》〉]}"
# Characters that may be cut between, one by one: Han, kana, hangul, CJK punctuation.
_CJK = (
    "\u2e80-\u2fdf\u3000-\u303f\u3040-\u30ff\u3100-\u31bf\u3400-\u4dbf\u4e00-\u9fff"
    "\uac00-\ud7af\uf900-\ufaff\ufe30-\ufe4f\uff01-\uff0f\uff1a-\uff20\uff3b-\uff40\uff5b-\uff65"
)
_CJK_CHAR = re.compile(f"[{_CJK}]")
_SENTENCE_ZH = re.compile(f"[。！？；…]+[{re.escape(_CLOSERS)}]*")
_SENTENCE_EN = re.compile(f"[.!?]+[{re.escape(_CLOSERS)}]*(?=\\s|$|[{_CJK}])")
_CLAUSE = re.compile(r"[，、：﹐﹑]+|[,;:](?=\s)")
_SPACE = re.compile(r"\s+")
_NO_CUT_AFTER = set("（([【《〈「『“‘")
_NO_CUT_BEFORE = set("，。、；：！？）)]】》〉」』”’…％‰")
_ABBREVIATIONS = {"e.g", "i.e", "etc", "vs", "mr", "mrs", "ms", "dr", "prof", "no", "fig", "st"}
_WORD_BEFORE = re.compile(r"([\w.]+)$")


def boundaries(text: str) -> dict[int, int]:
    """Cut positions inside ``text`` with their strength (lower is stronger)."""
    cuts: dict[int, int] = {}

    def add(position: int, level: int) -> None:
        if 0 < position < len(text) and cuts.get(position, WORD + 1) > level:
            cuts[position] = level

    for match in re.finditer("\n", text):
        add(match.start(), LINE)
    for match in _SENTENCE_ZH.finditer(text):
        add(match.end(), SENTENCE)
    for match in _SENTENCE_EN.finditer(text):
        if not _not_a_sentence_end(text, match.start()):
            add(match.end(), SENTENCE)
    for match in _CLAUSE.finditer(text):
        add(match.end(), CLAUSE)
    for match in _SPACE.finditer(text):
        add(match.start(), WORD)
    for index in range(1, len(text)):
        left, right = text[index - 1], text[index]
        if left.isspace() or right.isspace() or left in _NO_CUT_AFTER or right in _NO_CUT_BEFORE:
            continue
        if _CJK_CHAR.match(left) or _CJK_CHAR.match(right):
            add(index, WORD)
    return cuts


def _not_a_sentence_end(text: str, dot: int) -> bool:
    """An abbreviation ("e.g.", "Dr."), an initial ("J.") or a list number ("1." at line start)."""
    if text[dot] != "." or text[dot : dot + 2] == "..":
        return False
    word = _WORD_BEFORE.search(text, 0, dot)
    if word is None:
        return False
    token = word.group(1)
    if token.lower().rstrip(".") in _ABBREVIATIONS or (len(token) == 1 and token.isupper()):
        return True
    line_start = text.rfind("\n", 0, word.start()) + 1
    return token.isdigit() and not text[line_start : word.start()].strip()


@dataclass
class _Open:
    """The chunk being filled."""

    start: int
    end: int
    prefix: str
    last_block: int
    content: bool  # holds more than headings
    tail: int | None  # where the trailing run of plain text begins: the overlap source


class _Splitter:
    def __init__(
        self, doc: ParsedDocument, count: CountTokens, max_tokens: int, overlap: int
    ) -> None:
        self.doc = doc
        self.count = count
        self.max_tokens = max_tokens
        self.overlap = overlap
        self.empty = count("")  # special tokens the counter adds to any text
        self.starts = [b.start for b in doc.blocks]
        self.cuts: dict[int, list[tuple[int, int]]] = {}
        self.open: _Open | None = None
        self.chunks: list[tuple[str, int, int, int]] = []  # prefix, start, end, last block

    def fits(self, prefix: str, start: int, end: int) -> bool:
        return self.count(prefix + self.doc.text[start:end]) <= self.max_tokens

    def block_cuts(self, index: int) -> list[tuple[int, int]]:
        """Sorted (absolute position, level) cut points of one block, computed once."""
        if index not in self.cuts:
            block = self.doc.blocks[index]
            found = boundaries(block.text)
            self.cuts[index] = sorted((block.start + p, level) for p, level in found.items())
        return self.cuts[index]

    def cuts_within(self, index: int, start: int, end: int) -> list[tuple[int, int]]:
        """The cut points of block ``index`` strictly inside ``(start, end)``."""
        cuts = self.block_cuts(index)
        low = bisect.bisect_right(cuts, (start, WORD + 1))
        return cuts[low : bisect.bisect_left(cuts, (end, -1), low)]

    def pieces(self, index: int, start: int, end: int, level: int) -> list[tuple[int, int]]:
        """``[start, end)`` cut at the weakest level needed for every piece to fit alone."""
        if self.fits("", start, end):
            return [(start, end)]
        if level > WORD:
            return self.hard_cut(start, end)
        points = [p for p, lv in self.cuts_within(index, start, end) if lv <= level]
        out: list[tuple[int, int]] = []
        for left, right in zip([start, *points], [*points, end], strict=True):
            span = self.strip(left, right)
            if span is not None:
                out.extend(self.pieces(index, *span, level + 1))
        return out

    def strip(self, start: int, end: int) -> tuple[int, int] | None:
        text = self.doc.text
        while start < end and text[start].isspace():
            start += 1
        while end > start and text[end - 1].isspace():
            end -= 1
        return (start, end) if start < end else None

    def hard_cut(self, start: int, end: int) -> list[tuple[int, int]]:
        """One word longer than the budget: the longest prefixes that fit, in turn."""
        out = []
        while start < end:
            low, high = start + 1, end  # find the largest cut that fits
            if not self.fits("", start, low):
                raise InvalidRequest(
                    f"max_tokens={self.max_tokens} cannot hold even one character; raise it",
                    param="max_tokens",
                )
            while low < high:
                middle = (low + high + 1) // 2
                low, high = (middle, high) if self.fits("", start, middle) else (low, middle - 1)
            out.append((start, low))
            start = low
        return out

    def run(self) -> None:
        for index, block in enumerate(self.doc.blocks):
            current = self.open
            if current and current.content and self.section(current.last_block) != block.headings:
                self.close()
            if self.fits("", block.start, block.end):
                self.add(index, block.start, block.end, fresh=True)
                continue
            level = SENTENCE if block.kind in ("text", "heading") else LINE
            for number, (start, end) in enumerate(
                self.pieces(index, block.start, block.end, level)
            ):
                self.add(index, start, end, fresh=number == 0)
        self.close()

    def section(self, index: int) -> tuple[str, ...]:
        return self.doc.blocks[index].headings

    def add(self, index: int, start: int, end: int, *, fresh: bool) -> None:
        """Put ``[start, end)`` of block ``index`` in the open chunk or in a new one.

        ``fresh`` marks the first piece of a block: a block that does not fit whole starts
        its own chunk, unless the open one holds only the headings above it.
        """
        block = self.doc.blocks[index]
        current = self.open
        whole = fresh and start == block.start and end == block.end
        if (
            current is not None
            and (whole or not fresh or not current.content)
            and self.fits(current.prefix, current.start, end)
        ):
            current.end = end
            current.last_block = index
            current.content = current.content or block.kind != "heading"
            if block.kind != "text":
                current.tail = None
            elif current.tail is None:
                current.tail = start
            return
        previous = self.close()
        prefix = ""
        if not fresh and block.kind in ("table", "qa"):
            header = block.text.split("\n", 1)[0] + "\n"
            prefix = header if self.fits(header, start, end) else ""
        begin = start
        if previous is not None and block.kind == "text" and not prefix:
            same = self.section(previous.last_block) == block.headings
            if same and previous.tail is not None:
                begin = self.overlap_start(previous.tail, previous.end, start, end)
        tail = begin if block.kind == "text" else None
        self.open = _Open(begin, end, prefix, index, block.kind != "heading", tail)

    def close(self) -> _Open | None:
        current, self.open = self.open, None
        if current is not None:
            self.chunks.append((current.prefix, current.start, current.end, current.last_block))
        return current

    def overlap_start(self, tail: int, previous_end: int, start: int, end: int) -> int:
        """The earliest sentence (else clause) start in ``[tail, previous_end)`` whose text
        to ``previous_end`` is within ``overlap`` tokens and leaves the new chunk fitting."""
        if self.overlap <= 0:
            return start
        first = bisect.bisect_right(self.starts, tail) - 1
        last = bisect.bisect_right(self.starts, previous_end - 1) - 1
        points: list[tuple[int, int]] = [(tail, BLOCK)]
        for index in range(first, last + 1):
            points.append((self.doc.blocks[index].start, BLOCK))
            points.extend(self.cuts_within(index, tail, previous_end))
        for level in (SENTENCE, CLAUSE):
            best = start
            candidates = sorted({p for p, lv in points if tail <= p < previous_end and lv <= level})
            for point in reversed(candidates):
                span = self.strip(point, previous_end)
                if span is None:
                    continue
                overlap = self.count(self.doc.text[span[0] : previous_end]) - self.empty
                if overlap > self.overlap or not self.fits("", span[0], end):
                    break
                best = span[0]
            if best != start:
                return best
        return start

    def page(self, position: int) -> int | None:
        return self.doc.blocks[bisect.bisect_right(self.starts, position) - 1].page


def split(
    doc: ParsedDocument,
    name: str,
    count_tokens: CountTokens,
    max_tokens: int = 256,
    overlap: int = 32,
) -> list[Chunk]:
    """Chunks of ``doc`` (named ``name`` in its knowledge base), each within ``max_tokens``
    of ``count_tokens`` (the embedding model's tokenizer)."""
    if overlap < 0 or overlap >= max_tokens:
        raise InvalidRequest(
            f"overlap must be between 0 and max_tokens ({max_tokens}), got {overlap}",
            param="overlap",
        )
    if max_tokens <= count_tokens(""):
        raise InvalidRequest(
            f"max_tokens={max_tokens} leaves no room for text in this tokenizer; raise it",
            param="max_tokens",
        )
    splitter = _Splitter(doc, count_tokens, max_tokens, overlap)
    splitter.run()
    chunks = []
    for index, (prefix, start, end, last_block) in enumerate(splitter.chunks):
        text = prefix + doc.text[start:end]
        chunks.append(
            Chunk(
                document=name,
                index=index,
                text=text,
                start=start,
                end=end,
                tokens=count_tokens(text),
                page=splitter.page(start),
                headings=doc.blocks[last_block].headings,
            )
        )
    return chunks
