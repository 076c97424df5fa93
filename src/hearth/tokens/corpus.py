"""Corpora for comparing and training tokenizers, split into Chinese, English and code.

A file is one part when nearly all of it reads as one (by its suffix for source code,
otherwise by detection); a file that mixes them is split into blocks at blank lines and
each block goes to the part it reads as. Detection is deliberately simple and explainable:
the share of CJK characters among letters, and how much a block looks like code.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from hearth.errors import UserError

CHINESE, ENGLISH, CODE = "chinese", "english", "code"
PARTS = (CHINESE, ENGLISH, CODE)
CODE_SUFFIXES = frozenset(
    {
        ".py",
        ".pyi",
        ".js",
        ".mjs",
        ".ts",
        ".tsx",
        ".jsx",
        ".java",
        ".kt",
        ".c",
        ".h",
        ".cc",
        ".cpp",
        ".hpp",
        ".cs",
        ".go",
        ".rs",
        ".rb",
        ".php",
        ".swift",
        ".scala",
        ".lua",
        ".sh",
        ".bash",
        ".zsh",
        ".sql",
        ".r",
        ".jl",
        ".html",
        ".css",
        ".scss",
        ".vue",
        ".toml",
        ".yaml",
        ".yml",
    }
)
TEXT_SUFFIXES = frozenset({".txt", ".md", ".rst", ".text", ""})
# A file is "by file" when its main part holds this share of its characters.
WHOLE_FILE = 0.8

_CJK = re.compile(
    r"[\u3000-\u303f\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef\U00020000-\U0003134f]"
)
_LATIN = re.compile(r"[A-Za-z]")
_SYMBOLS = frozenset("{}[]()<>=;_*/\\|&#$@`~^%+")
_CODE_LINE = re.compile(
    r"""^(\s{2,}|\t)\S                # indented
    | [{};:(\[,=\\]\s*$              # ends like a statement or block opener
    | ^\s*(//|--\s|/\*|\#!|\#include|@\w)  # comment markers, shebang, decorator
    | ^\s*(def|class|import|from|return|if|for|while|elif|else|try|except|with|fn|let|const
          |var|function|export|pub|use|package|func|struct|impl|SELECT|FROM|WHERE|JOIN
          |INSERT|UPDATE|CREATE)\b""",
    re.VERBOSE,
)
_BLOCKS = re.compile(r"\n[ \t]*\n")


@dataclass(frozen=True)
class Section:
    part: str  # one of PARTS
    source: str  # the file it came from
    text: str


def sample_corpus() -> list[Path]:
    """The small bilingual corpus shipped with hearth: Chinese, English and code."""
    root = Path(str(resources.files("hearth") / "data" / "corpus"))
    return sorted(root.glob("*.txt"))


def corpus_files(paths: Sequence[Path]) -> list[Path]:
    """Files named, and the text or source files inside directories named."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = [
                p
                for p in sorted(path.rglob("*"))
                if p.is_file()
                and not any(part.startswith(".") for part in p.relative_to(path).parts)
                and p.suffix.lower() in CODE_SUFFIXES | TEXT_SUFFIXES
            ]
            if not found:
                raise UserError(f"{path} holds no text or source files")
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise UserError(f"corpus file {path} does not exist")
    return files


def read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise UserError(f"{path} is not UTF-8 text") from e
    except OSError as e:
        raise UserError(f"cannot read {path}: {e.strerror}") from e


def looks_like_code(block: str) -> bool:
    lines = [line for line in block.splitlines() if line.strip()]
    if not lines:
        return False
    coded = sum(1 for line in lines if _CODE_LINE.search(line)) / len(lines)
    visible = [c for c in block if not c.isspace()]
    symbols = sum(1 for c in visible if c in _SYMBOLS) / max(len(visible), 1)
    return coded >= 0.8 or (coded >= 0.5 and symbols >= 0.03) or symbols >= 0.12


def detect(block: str) -> str:
    """Which part a block of text reads as."""
    if looks_like_code(block):
        return CODE
    cjk = len(_CJK.findall(block))
    latin = len(_LATIN.findall(block))
    return CHINESE if cjk and cjk >= 0.3 * (cjk + latin) else ENGLISH


def split(text: str, source: str = "", suffix: str = "") -> list[Section]:
    """Sections of one file: the whole file when it is one part, else its blocks."""
    if suffix.lower() in CODE_SUFFIXES:
        return [Section(CODE, source, text)]
    blocks = [b for b in _BLOCKS.split(text) if b.strip()]
    parts = [detect(b) for b in blocks]
    sizes = {p: sum(len(b) for b, q in zip(blocks, parts, strict=True) if q == p) for p in PARTS}
    main = max(PARTS, key=lambda p: sizes[p])
    if sizes[main] >= WHOLE_FILE * sum(sizes.values()):
        return [Section(main, source, text)]
    return [Section(p, source, b) for b, p in zip(blocks, parts, strict=True)]


def load_corpus(paths: Sequence[Path] = ()) -> list[Section]:
    """Sections of the files given, or of the sample corpus when none are."""
    sections = []
    for path in corpus_files(paths) if paths else sample_corpus():
        text = read_text(path)
        if text.strip():
            sections += split(text, str(path), path.suffix)
    if not sections:
        raise UserError("the corpus is empty: give files or directories with some text in them")
    return sections


def lines(paths: Iterable[Path]) -> Iterator[str]:
    """Non-empty lines of the files, the unit SentencePiece trains on."""
    for path in paths:
        for line in read_text(path).splitlines():
            if line.strip():
                yield line
