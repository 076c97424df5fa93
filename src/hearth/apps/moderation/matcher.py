"""Finding listed words: one Aho-Corasick automaton over the normalised words.

The fast path translates the text with the shared table, collapses CJK repeats and runs the
automaton; only a candidate pays for offsets and the checks that keep false hits out:

- a word whose first (last) character is a Latin letter or digit must start (end) a word
  of the text: "ass" is not in "class", "sex" not in "Essex" nor in "son's ex-wife";
- whitespace between two Latin letters is accepted only when the letters are spaced out
  one by one ("s e x"), not when it joins real words ("has ex");
- sentence punctuation or a line break inside a CJK match rejects it for a two-character
  word (开发。票价 is not 发票) and for a longer one unless every character stands apart;
- a word's own repeats must be there (哈哈 needs two 哈; 哈哈哈 is fine).

The automaton reads UTF-8 bytes (as latin-1 text): pyahocorasick searches a node's
children one by one, and a root with thousands of CJK characters below it made every step
slow; with bytes no node has more than a couple of hundred children.
"""

from __future__ import annotations

import gc
import unicodedata
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from typing import Any

from hearth.apps.moderation.lists import ACTIONS, Word
from hearth.apps.moderation.normalize import (
    APOSTROPHES,
    SPACE,
    STOP,
    TABLE,
    Normalised,
    Run,
    collapse,
    is_invisible,
    is_latin,
    runs,
    tail,
)
from hearth.errors import UserError


@dataclass(frozen=True)
class Hit:
    """A listed word found in a text."""

    start: int  # offsets into the original text (end exclusive)
    end: int
    text: str  # the original span, noise characters included
    word: Word


@dataclass(frozen=True, slots=True)
class _Entry:
    """A word as the checks need it."""

    word: Word
    counts: tuple[int, ...]  # how often each collapsed character repeats in the word itself
    apart: tuple[bool, ...]  # whether the word itself has noise before each character
    latin_start: bool
    latin_end: bool


def _entry(word: Word) -> tuple[str, _Entry]:
    plain = word.text.translate(TABLE)
    if plain == word.text and collapse(plain) == plain:
        # Most words: each character means itself, no noise, no repeats.
        ones, closed = _plain(len(plain))
        return plain, _Entry(word, ones, closed, is_latin(plain[0]), is_latin(plain[-1]))
    rs = runs(word.text)
    if not rs:
        raise UserError(
            f"Moderation word {word.text!r} (list '{word.list}') has no letters or digits; "
            "remove it."
        )
    key = "".join(r.char for r in rs)
    counts = tuple(r.count for r in rs)
    apart = tuple(bool(r.gap) for r in rs)
    return key, _Entry(word, counts, apart, is_latin(rs[0].char), is_latin(rs[-1].char))


@cache
def _plain(n: int) -> tuple[tuple[int, ...], tuple[bool, ...]]:
    return (1,) * n, (False,) * n


_SEVERITY = {"block": 0, "mask": 1, None: 2, "review": 3}


def _rank(entry: _Entry) -> tuple[int, int]:
    # Several words can share one key (哈 and 哈哈, or one word in two lists): the most
    # specific first, then the most severe action (None, the app's default, after mask).
    return -sum(entry.counts), _SEVERITY[entry.word.action]


def _utf8(text: str) -> str:
    return text.encode("utf-8").decode("latin-1")


def _automaton(keyed: dict[str, list[_Entry]]) -> Any:
    import ahocorasick

    automaton = ahocorasick.Automaton()
    for key, entries in keyed.items():
        encoded = _utf8(key)
        automaton.add_word(encoded, (len(encoded), key, sorted(entries, key=_rank)))
    automaton.make_automaton()
    return automaton


@contextmanager
def _no_collection() -> Iterator[None]:
    # A build allocates a few objects a word and frees none, so the garbage collections it
    # sets off find nothing and cost as much as the build (100k words: 1.4 s, 0.9 s without).
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class Matcher:
    """Every listed word, found in one pass over a text."""

    def __init__(self, words: Iterable[Word]) -> None:
        self.words = tuple(words)
        self._automaton = None
        with _no_collection():
            keyed: dict[str, list[_Entry]] = {}
            for word in self.words:
                key, entry = _entry(word)
                keyed.setdefault(key, []).append(entry)
            if keyed:
                self._automaton = _automaton(keyed)
        self._longest = max(map(len, keyed), default=0)

    @property
    def empty(self) -> bool:
        return self._automaton is None

    def find(self, text: str, start: int = 0) -> list[Hit]:
        """Non-overlapping hits, leftmost first and longest at each start. With ``start``,
        hits start at or after it; the text before it is context for word boundaries."""
        if self._automaton is None or start >= len(text):
            return []
        normalised = Normalised(text, start)
        raw = normalised.normal.encode("utf-8")
        found = list(self._automaton.iter(raw.decode("latin-1")))
        if not found:
            return []
        # Byte offsets (end exclusive) -> character offsets in the normalised text.
        spans = [(end + 1 - n, end + 1, key, entries) for end, (n, key, entries) in found]
        chars = _char_offsets(raw, normalised.normal, [b for s in spans for b in s[:2]])
        hits = []
        for lo_b, hi_b, key, entries in spans:
            lo = normalised.origin(chars[lo_b])
            hi = normalised.origin(chars[hi_b] - 1, last=True) + 1
            hits += self._check(text, lo, hi, key, entries)
        return _leftmost_longest(hits)

    def _check(self, text: str, lo: int, hi: int, key: str, entries: list[_Entry]) -> list[Hit]:
        # The automaton reads 发。发 as one run of 发; the checks read two, each a candidate.
        span = runs(text, lo, hi)
        chars = "".join(r.char for r in span)
        hits = []
        for i in range(len(span) - len(key) + 1):
            j = i + len(key)
            inside = (i and span[i - 1].last == span[i].first) or (
                j < len(span) and span[j].first == span[j - 1].last
            )  # starts or ends inside one character's expansion: 1 is not in ⑩
            if chars.startswith(key, i) and not inside:
                hit = self._accepted(text, span[i : i + len(key)], entries)
                hits += [hit] if hit else []
        return hits

    def _accepted(self, text: str, span: list[Run], entries: list[_Entry]) -> Hit | None:
        lo, hi = span[0].first, span[-1].last + 1
        while hi < len(text) and unicodedata.category(text[hi]) in ("Mn", "Me"):
            hi += 1  # the last character's combining marks belong to the hit
        for entry in entries:
            if _accept(entry, span, text, lo, hi):
                return Hit(lo, hi, text[lo:hi], entry.word)
        return None

    def mask(self, text: str, hits: Iterable[Hit], char: str = "*") -> str:
        """``text`` with each hit's original span replaced by ``char`` repeated."""
        out = []
        pos = 0
        for hit in sorted(hits, key=lambda h: h.start):
            if hit.start >= pos:
                out += [text[pos : hit.start], char * (hit.end - hit.start)]
                pos = hit.end
        out.append(text[pos:])
        return "".join(out)

    def hold_from(self, text: str, start: int = 0) -> int:
        """The smallest offset i >= ``start`` such that ``text[i:]`` could still grow into a
        listed word (it is a prefix of one, or a whole word whose acceptance depends on
        what follows); ``len(text)`` when nothing needs holding."""
        if self._automaton is None:
            return len(text)
        # Only the last few characters can be the start of a word: no longer than the longest.
        rs = runs(text, tail(text, start, self._longest))
        normal = "".join(r.char for r in rs)
        for i, r in enumerate(rs):
            if i and rs[i - 1].first == r.first:
                continue  # inside one character's expansion: no word starts here
            if is_latin(r.char) and _joined_before(text, r.first):
                continue  # inside a Latin word: a Latin word cannot start here
            rest = _utf8(normal[i:])
            if self._automaton.longest_prefix(rest) == len(rest):
                return r.first
        return len(text)


def _accept(entry: _Entry, span: list[Run], text: str, lo: int, hi: int) -> bool:
    """Whether a candidate span is really the word (see the module's docstring)."""
    if any(r.count < n for r, n in zip(span, entry.counts, strict=True)):
        return False
    open_gaps = [i for i in range(1, len(span)) if not entry.apart[i]]
    spaced_out = all(span[i].gap for i in open_gaps)
    for i in open_gaps:
        gap = span[i].gap
        if is_latin(span[i - 1].char) and is_latin(span[i].char):
            if gap & (SPACE | STOP) and not spaced_out:
                return False  # "has ex" joins two words; "s e x" spells one
        elif gap & STOP and (len(span) == 2 or not spaced_out):
            return False  # 开发。票价: two words of two sentences
    if entry.latin_start and _joined_before(text, lo):
        return False
    return not (entry.latin_end and _joined_after(text, hi))


def _joined_before(text: str, i: int) -> bool:
    """Whether the visible character before ``text[i]`` continues a Latin word."""
    j = _visible(text, i - 1, -1)
    if j < 0:
        return False
    if text[j] in APOSTROPHES:  # son's: the apostrophe joins only between letters
        k = _visible(text, j - 1, -1)
        return k >= 0 and is_latin(text[k])
    return is_latin(text[j])


def _joined_after(text: str, i: int) -> bool:
    """Whether the visible character at or after ``text[i]`` continues a Latin word."""
    j = _visible(text, i, 1)
    if j >= len(text):
        return False
    if text[j] in APOSTROPHES:
        k = _visible(text, j + 1, 1)
        return k < len(text) and is_latin(text[k])
    return is_latin(text[j])


def _visible(text: str, j: int, step: int) -> int:
    while 0 <= j < len(text) and is_invisible(text[j]):
        j += step
    return j


def _leftmost_longest(hits: list[Hit]) -> list[Hit]:
    out: list[Hit] = []
    for hit in sorted(hits, key=lambda h: (h.start, -h.end)):
        if not out or hit.start >= out[-1].end:
            out.append(hit)
    return out


def _char_offsets(raw: bytes, normal: str, offsets: list[int]) -> dict[int, int]:
    """Character offsets in ``normal`` of byte offsets in its UTF-8 form ``raw``."""
    if normal.isascii():
        return {b: b for b in offsets}
    out = {}
    pos = chars = 0
    for b in sorted(set(offsets)):
        chars += len(raw[pos:b].decode("utf-8"))
        pos = b
        out[b] = chars
    return out


def action_of(hit: Hit, default: str) -> str:
    """The hit's own action, or ``default`` for the direction."""
    return hit.word.action or default


def check_action(action: str) -> str:
    if action not in ACTIONS:
        raise UserError(f"Moderation action {action!r} must be one of {', '.join(ACTIONS)}.")
    return action


def moderate(matcher: Matcher, text: str, default_action: str) -> tuple[str, list[Hit], Hit | None]:
    """A whole text at once: the text with masked (and blocked) words masked, every hit,
    and the first hit whose action is block (None if none)."""
    check_action(default_action)
    hits = matcher.find(text)
    blocking = next((h for h in hits if action_of(h, default_action) == "block"), None)
    # Blocked words are masked too, for a caller that shows the text anyway.
    masked = [h for h in hits if action_of(h, default_action) != "review"]
    return matcher.mask(text, masked), hits, blocking
