"""An app's moderation, bound: its lists and inline words as one matcher (built once per
change of the list files), the input check, and the record of every hit."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from hearth.apps.spec import ModerationSpec
from hearth.errors import UserError

if TYPE_CHECKING:
    from hearth.apps.moderation import Hit, Matcher

SEVERITY = {"review": 0, "mask": 1, "block": 2}


class ContentFiltered(UserError):
    """Input blocked by moderation. Like Azure OpenAI's: code ``content_filter``; the
    message names the category, never the word list."""

    code = "content_filter"

    def __init__(self, categories: list[str]) -> None:
        named = ", ".join(f"'{c}'" for c in categories if c) or "a listed word"
        super().__init__(
            f"The input was refused by this app's content policy (category {named}). "
            "Rephrase it and try again.",
            param="messages",
        )
        self.categories = categories


@dataclass(frozen=True)
class Flag:
    """A hit and what was done about it."""

    hit: Hit
    direction: str  # "input" | "output"
    action: str  # "block" | "mask" | "review"

    def as_dict(self) -> dict[str, str]:
        w = self.hit.word
        return {
            "list": w.list,
            "category": w.category,
            "action": self.action,
            "direction": self.direction,
        }


class Guard:
    """Matchers for apps' moderation sections, cached by their lists' files and words."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._cache: dict[tuple[object, ...], Matcher] = {}
        self._lock = threading.Lock()

    def _stamp(self, names: tuple[str, ...]) -> tuple[object, ...]:
        from hearth.apps.moderation import EXAMPLES

        out: list[object] = []
        for name in names:
            path = self.directory / f"{name}.txt"
            try:
                st = path.stat()
                out.append((name, st.st_mtime_ns, st.st_size))
            except OSError:
                out.append((name, str(EXAMPLES.get(name, ""))))
        return tuple(out)

    def matcher(self, spec: ModerationSpec) -> Matcher:
        # Imported here: building an automaton is moderation's business, not every import's.
        from hearth.apps.moderation import Matcher, Word, load_lists

        key = (self._stamp(spec.lists), spec.words)
        with self._lock:
            found = self._cache.get(key)
        if found is not None:
            return found
        words = load_lists(spec.lists, self.directory)
        words += [Word(w, category, "inline", action) for w, category, action in spec.words]
        matcher = Matcher(words)
        with self._lock:
            if len(self._cache) > 256:
                self._cache.clear()
            self._cache[key] = matcher
        return matcher


def check_input(
    matcher: Matcher, text: str, default: str, flags: list[Flag]
) -> tuple[str, Flag | None]:
    """``text`` with masked words masked, and the first blocking flag if any; every hit is
    appended to ``flags``."""
    hits = matcher.find(text)
    if not hits:
        return text, None
    blocking = None
    masked = []
    for hit in hits:
        action = hit.word.action or default
        flag = Flag(hit, "input", action)
        flags.append(flag)
        if action == "block" and blocking is None:
            blocking = flag
        elif action == "mask":
            masked.append(hit)
    return matcher.mask(text, masked), blocking
