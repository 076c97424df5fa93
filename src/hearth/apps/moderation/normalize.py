"""What a character means for matching: one table, the same for listed words and for text.

Each character maps on its own, so every normalised character comes from exactly one
original character and an offset in the text always maps back:

- NFKC and case folding: full width and compatibility forms (ＡＢＣ, ①) become plain;
- traditional Chinese becomes simplified (opencc t2s, one character at a time);
- Chinese numerals and their capital forms (一, 贰, 玖) become ASCII digits;
- noise is deleted: spaces, punctuation, symbols and emoji, format characters (zero-width
  joiners, BOM), variation selectors and combining marks.

Then a run of one repeated CJK character counts once (法法轮轮功 reads as 法轮功). Latin
letters never collapse: "google" and "good" must keep their own letters. The matcher
checks afterwards that a word's own repeats (哈哈) are really there.
"""

from __future__ import annotations

import re
import unicodedata
from bisect import bisect_right
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from opencc import OpenCC

DIGITS = dict(zip("〇零一二三四五六七八九", "00123456789", strict=True))
DIGITS.update(zip("壹贰叁肆伍陆柒捌玖", "123456789", strict=True))

# Unicode category initials that are noise: separators, punctuation, symbols, other
# (control, format, private use, unassigned) and marks.
_NOISE = frozenset("ZPSCM")

# Noise kinds, as bits, for what stands between two matched characters.
SPACE, STOP, MARK = 1, 2, 4
_STOPS = frozenset(",.!?;:。、…｡､，．！？；：\n\r\x85\u2028\u2029")
APOSTROPHES = frozenset("'’ʼ")

_CJK = "\u2e80-\u9fff\uac00-\ud7af\uf900-\ufaff\U00020000-\U0003ffff"
_RUN = re.compile(f"([{_CJK}])\\1+")
_BLOCK = 64  # characters a block, when mapping offsets back to the text


def is_cjk(ch: str) -> bool:
    """Han, kana, hangul and their radicals and symbols' blocks."""
    o = ord(ch)
    return (
        0x2E80 <= o <= 0x9FFF
        or 0xAC00 <= o <= 0xD7AF
        or 0xF900 <= o <= 0xFAFF
        or 0x20000 <= o <= 0x3FFFF
    )


def is_latin(ch: str) -> bool:
    """A letter or digit of a script that writes spaces between words."""
    return ch.isalnum() and not is_cjk(ch)


def is_invisible(ch: str) -> bool:
    """Format characters and marks: they never separate two words."""
    return unicodedata.category(ch) in ("Cf", "Mn", "Me")


def gap_kind(ch: str) -> int:
    """What a noise character says about the text around it."""
    if ch in _STOPS:
        return STOP | (SPACE if ch.isspace() else 0)
    return SPACE if ch.isspace() else MARK


@cache
def _converter() -> OpenCC:
    from opencc import OpenCC

    return OpenCC("t2s")


def _simplified(ch: str) -> str:
    if ord(ch) < 0x2E80:
        return ch
    out: str = _converter().convert(ch)
    return out if len(out) == 1 else ch


def normalise_char(ch: str) -> str:
    """What one character means for matching: "" for noise, usually one character."""
    out = []
    for c in unicodedata.normalize("NFKC", ch).casefold():
        c = _simplified(c)
        c = DIGITS.get(c, c)
        if unicodedata.category(c)[0] not in _NOISE:
            out.append(c)
    return "".join(out)


class _Table(dict[int, str | None]):
    """``str.translate`` table filled on first sight of each character.

    Noise maps to None rather than "": ``str.translate`` keeps its fast ASCII path only
    for deletions written as None.
    """

    def __missing__(self, code: int) -> str | None:
        value = normalise_char(chr(code)) or None
        self[code] = value
        return value


TABLE = _Table()


def collapse(text: str) -> str:
    """Runs of one repeated CJK character as one character."""
    return _RUN.sub(r"\1", text)


def normalise(text: str) -> str:
    """``text`` as the matcher's automaton reads it (no offsets kept)."""
    return collapse(text.translate(TABLE))


class Normalised:
    """A text as the automaton reads it, with the way back to original offsets.

    Line by line: an ASCII line keeps ``str.translate``'s fast path and needs no collapsing,
    so English costs little; a repeat never collapses across a line break (nor does
    ``runs``, for which a line break ends a sentence). Offsets are mapped only on demand."""

    def __init__(self, text: str, start: int = 0) -> None:
        self.text = text
        self._lines: list[tuple[int, str]] = []  # (original offset, translated line)
        self._starts: list[int] = []  # offset of each line in ``normal``
        parts = []
        pos, size = start, 0
        for line in text[start:].split("\n"):
            translated = line.translate(TABLE)
            part = translated if line.isascii() else collapse(translated)
            self._lines.append((pos, translated))
            self._starts.append(size)
            parts.append(part)
            pos += len(line) + 1
            size += len(part)
        self.normal = "".join(parts)
        self._runs: dict[int, tuple[list[int], list[int], list[int], list[int]]] = {}
        self._blocks: dict[int, list[int]] = {}

    def origin(self, i: int, last: bool = False) -> int:
        """Offset in ``text`` of the character behind ``normal[i]``; for a collapsed run,
        of its first occurrence, or with ``last`` of its last."""
        k = bisect_right(self._starts, i) - 1
        first, final = self._expand(k, i - self._starts[k])
        return self._locate(k, final if last else first)

    def _expand(self, k: int, i: int) -> tuple[int, int]:
        # Line k's collapsed offset i as the first and last offsets of its run, translated.
        translated = self._lines[k][1]
        if k not in self._runs:
            at, firsts, lasts, removed = [], [], [], []
            gone = 0
            for m in _RUN.finditer(translated):
                at.append(m.start() - gone)
                firsts.append(m.start())
                lasts.append(m.end() - 1)
                gone += m.end() - m.start() - 1
                removed.append(gone)
            self._runs[k] = (at, firsts, lasts, removed)
        at, firsts, lasts, removed = self._runs[k]
        r = bisect_right(at, i) - 1
        if r >= 0 and at[r] == i:
            return firsts[r], lasts[r]
        shift = removed[r] if r >= 0 else 0
        return i + shift, i + shift

    def _locate(self, k: int, t: int) -> int:
        # Line k's translated offset t as an offset in ``text``: the line's block lengths
        # find the block, so a long line is walked one block, not from its start.
        origin = self._lines[k][0]
        if k not in self._blocks:
            end = self._lines[k + 1][0] - 1 if k + 1 < len(self._lines) else len(self.text)
            sums = [0]
            for b in range(origin, end, _BLOCK):
                sums.append(sums[-1] + len(self.text[b : min(b + _BLOCK, end)].translate(TABLE)))
            self._blocks[k] = sums
        sums = self._blocks[k]
        b = bisect_right(sums, t) - 1
        j, pos = origin + b * _BLOCK, sums[b]
        while True:
            value = TABLE[ord(self.text[j])]
            if value is not None:
                if pos + len(value) > t:
                    return j
                pos += len(value)
            j += 1


@dataclass
class Run:
    """One normalised character of the text, repeated ``count`` times, with where it came from."""

    char: str
    count: int
    first: int  # offset of the original character that gave its first occurrence
    last: int  # ... and its last
    gap: int  # noise kinds (SPACE | STOP | MARK) between the previous run and this one


def runs(text: str, lo: int = 0, hi: int | None = None) -> list[Run]:
    """``text[lo:hi]`` normalised with offsets: the slow, exact path behind every hit."""
    out: list[Run] = []
    gap = 0
    table = TABLE
    end = len(text) if hi is None else hi
    j = lo
    while j < end:
        ch = text[j]
        value = table[ord(ch)]
        if value is None:
            gap |= gap_kind(ch)
            j += 1
            continue
        # A long run of one character (哈哈哈…) is taken in one step.
        n = _repeats(text, j, end) if len(value) == 1 and is_cjk(value) else 1
        for c in value:
            last = out[-1] if out else None
            # A run goes on across spaces and symbols (法 法轮功), not across a sentence's end.
            if last is not None and c == last.char and is_cjk(c) and not gap & STOP:
                last.count += n
                last.last = j + n - 1
            else:
                out.append(Run(c, n, j, j + n - 1, gap if out else 0))
            gap = 0
        j += n
    return out


def _repeats(text: str, j: int, end: int) -> int:
    """How many times ``text[j]`` repeats from ``j`` on, before ``end``."""
    if j + 1 >= end or text[j + 1] != text[j]:
        return 1
    found = _run_of(text[j]).match(text, j, end)
    assert found is not None
    return found.end() - j


@lru_cache(maxsize=1024)
def _run_of(ch: str) -> re.Pattern[str]:
    return re.compile(re.escape(ch) + "+")


def tail(text: str, start: int, n: int) -> int:
    """An offset from which ``text`` holds more than ``n`` runs (or ``start``): a suffix
    that starts earlier is longer than ``n`` normalised characters. Walks back from the
    end, counting a repeat as its run even across a sentence's end, so never too few."""
    seen = 0
    last = ""
    j = len(text)
    while j > start and seen <= n:
        ch = text[j - 1]
        for c in reversed(TABLE[ord(ch)] or ""):
            if c != last or not is_cjk(c):
                seen += 1
            last = c
        j -= 1
        if j > start and text[j - 1] == ch and last and is_cjk(last):
            j = start + len(text[start:j].rstrip(ch))  # the rest of a run at once
    return j
