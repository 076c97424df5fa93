"""Output moderation for a stream: release text only once no listed word can still use it.

After each piece the filter looks for hits from where a hit could still start, then
releases the text up to the first offset that could still grow into a listed word
(``Matcher.hold_from``). A hit that starts before that offset can no longer change: a
longer word from the same start would have made that start a prefix, and so held it.
So the stream's output is what moderating the whole text at once gives, up to MAX_HOLD.
"""

from __future__ import annotations

from dataclasses import replace

from hearth.apps.moderation.matcher import Hit, Matcher, action_of, check_action

_CONTEXT = 64  # characters kept before the released text, for word-boundary checks
# The most text held back at once. A listed phrase is a few dozen characters; a word
# stretched over more than this by noise or repeats (法 + 300 spaces + 轮功) is not caught,
# which keeps a model stuck on "哈 哈 哈 …" from costing time that grows with the square
# of its output.
MAX_HOLD = 256
_TRIM = 4096  # drop released text from the buffer once this much has piled up


class StreamFilter:
    """Output moderation for a stream: feed text pieces as a model produces them, get back
    the text that is safe to send now. Never returns a character that later turns out to
    belong to a listed word."""

    def __init__(self, matcher: Matcher, default_action: str, mask_char: str = "*") -> None:
        self.matcher = matcher
        self.default_action = check_action(default_action)
        self.mask_char = mask_char
        self.hits: list[Hit] = []  # every hit so far, offsets into the whole produced text
        self.blocked: Hit | None = None  # nothing from its start on is ever returned
        self._text = ""  # the produced text from offset self._base on
        self._base = 0
        self._released = 0  # whole-text offset: everything before it has been returned
        self._scan = 0  # whole-text offset: no new hit can start before it
        self._masks: list[Hit] = []  # masked hits not yet fully released

    def action(self, hit: Hit) -> str:
        return action_of(hit, self.default_action)

    def feed(self, piece: str) -> str:
        """The text safe to send now (masked where the action is mask); "" after a block."""
        if self.blocked is not None:
            return ""
        self._text += piece
        return self._advance(final=False)

    def flush(self) -> str:
        """End of stream: everything still held, decided."""
        if self.blocked is not None:
            return ""
        return self._advance(final=True)

    def _advance(self, final: bool) -> str:
        text, base = self._text, self._base
        scan = self._scan - base
        limit = len(text) if final else self.matcher.hold_from(text, scan)
        limit = max(limit, len(text) - MAX_HOLD)
        for found in self.matcher.find(text, scan):
            if found.start >= limit:
                break  # may still change as more text comes
            hit = replace(found, start=found.start + base, end=found.end + base)
            self.hits.append(hit)
            self._scan = hit.end
            if self.action(hit) == "block":
                self.blocked = hit
                limit = found.start
                break
            if self.action(hit) == "mask":
                self._masks.append(hit)
        self._scan = max(self._scan, base + limit)
        out = self._release(base + limit)
        self._trim()
        return out

    def _release(self, upto: int) -> str:
        base, pos = self._base, self._released
        out = []
        for hit in self._masks:
            lo, hi = max(hit.start, pos), min(hit.end, upto)
            if lo < hi:
                out += [self._text[pos - base : lo - base], self.mask_char * (hi - lo)]
                pos = hi
        out.append(self._text[pos - base : upto - base])
        self._masks = [h for h in self._masks if h.end > upto]
        self._released = upto
        return "".join(out)

    def _trim(self) -> None:
        keep = min(self._released, self._scan) - _CONTEXT
        if keep - self._base > _TRIM:
            self._text = self._text[keep - self._base :]
            self._base = keep
