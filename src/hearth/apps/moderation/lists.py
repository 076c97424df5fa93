"""Word lists: one word a line, ``# category`` lines above the words they name, and an
optional action after a tab::

    # 广告引流 / contact diversion
    加微信
    代开发票<TAB>block

A list named NAME is ``NAME.txt`` in the app's moderation folder, or else the example list
of that name shipped with hearth.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from hearth.apps.moderation.normalize import normalise
from hearth.errors import UserError

ACTIONS = ("block", "mask", "review")  # most severe first


@dataclass(frozen=True)
class Word:
    """One listed word and where it came from."""

    text: str  # as written in the list
    category: str  # from the last '# category' line above it ("" if none)
    list: str  # list name (file stem, or "inline")
    action: str | None = None  # None: the app's default for the direction


def _examples() -> dict[str, Path]:
    root = Path(str(resources.files("hearth") / "data" / "moderation"))
    return {p.stem: p for p in sorted(root.glob("*.txt"))}


EXAMPLES: dict[str, Path] = _examples()


def parse_list(name: str, text: str) -> list[Word]:
    """The words of one list file's text; errors name the list and the line."""
    words = []
    category = ""
    for number, raw in enumerate(text.removeprefix("\ufeff").splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            category = line[1:].strip()
            continue
        word, tab, action = line.partition("\t")
        word, action = word.strip(), action.strip()
        if tab and action not in ACTIONS:
            raise UserError(
                f"Moderation list '{name}', line {number}: '{action}' is not an action; "
                f"write the word, a tab and one of {', '.join(ACTIONS)}, or the word alone "
                "to use the app's default."
            )
        if not normalise(word):
            raise UserError(
                f"Moderation list '{name}', line {number}: {word!r} has no letters or digits "
                "once spaces, punctuation and symbols are left out, so it can never match; "
                "delete the line or write the word itself."
            )
        words.append(Word(word, category, name, action or None))
    return words


def load_lists(names: Iterable[str], directory: Path) -> list[Word]:
    """The words of each named list: ``directory/NAME.txt``, else the example list NAME."""
    words: list[Word] = []
    for name in names:
        words += parse_list(name, _read(name, directory))
    return words


def _read(name: str, directory: Path) -> str:
    if not name or name.startswith(".") or any(sep in name for sep in "/\\:"):
        raise UserError(
            f"Moderation list name {name!r} must be a file name without '.txt' and without "
            f"a folder, such as 'ads' for {directory / 'ads.txt'}."
        )
    path = directory / f"{name}.txt"
    if not path.is_file():
        path = EXAMPLES.get(name, path)
    if not path.is_file():
        examples = ", ".join(EXAMPLES) or "none"
        raise UserError(
            f"No moderation list '{name}': {directory / (name + '.txt')} does not exist and "
            f"there is no example list of that name (examples: {examples}). Create the file "
            "with one word a line, or name an example list."
        )
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise UserError(
            f"Moderation list {path} is not UTF-8 text ({e.reason} at byte {e.start}); "
            "save it as UTF-8."
        ) from e
