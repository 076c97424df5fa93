"""Train a SentencePiece tokenizer (BPE or unigram) on a corpus, reporting progress.

The trainer is C++ and reports only through its log on file descriptor 2, so while it runs
we point fd 2 at a pipe and read its log lines into progress events. The defaults follow
LLaMA's tokenizer: no normalization and whitespace kept as is (code needs its indentation),
and byte fallback, so no text is ever <unk>.
"""

from __future__ import annotations

import os
import re
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from hearth.errors import UserError
from hearth.tokens.corpus import corpus_files, lines, sample_corpus

MODEL_TYPES = ("bpe", "unigram")
_TOO_HIGH = re.compile(r"Vocabulary size too high \((\d+)\)\. Please set it to a value <= (\d+)")
_TOO_LOW = re.compile(r"Vocabulary size is smaller than required_chars\. (\d+) vs (\d+)")
_LOG = re.compile(r"^[IWEF]\d{4} [\d:.]+\s+\d+ [\w.]+:\d+\] (.*)$")


@dataclass(frozen=True)
class Progress:
    stage: str
    done: int = 0
    total: int | None = None


@dataclass(frozen=True)
class Trained:
    model: Path
    vocab: Path
    model_type: str
    vocab_size: int
    sentences: int
    byte_fallback: bool
    split_digits: bool

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "model": str(self.model), "vocab": str(self.vocab)}


class _LogReader:
    """Turns trainer log lines into Progress events; keeps the tail for error messages."""

    def __init__(self, vocab_size: int, emit: Callable[[Progress], None]) -> None:
        self.vocab_size = vocab_size
        self.emit = emit
        self.tail: deque[str] = deque(maxlen=20)
        self.meta = 0
        self.alphabet = 0
        self.seeds = 0

    def line(self, raw: str) -> None:
        self.tail.append(raw)
        m = _LOG.match(raw)
        if not m:
            return
        msg = m.group(1)
        if msg.startswith("Adding meta_piece"):
            self.meta += 1
        elif msg.startswith("Normalizing sentences"):
            self.emit(Progress("normalizing"))
        elif a := re.match(r"Alphabet size=(\d+)", msg):
            self.alphabet = int(a.group(1))
        elif b := re.match(r"Merged: .*merges=(\d+)", msg):
            total = max(self.vocab_size - self.meta - self.alphabet, 1)
            self.emit(Progress("merging", int(b.group(1)), total))
        elif s := re.match(r"Initialized (\d+) seed", msg):
            self.seeds = int(s.group(1))
        elif e := re.match(r"EM sub_iter=\d+ size=(\d+)", msg):
            span = max(self.seeds - self.vocab_size, 1)
            done = min(max(self.seeds - int(e.group(1)), 0), span)
            self.emit(Progress("pruning", done, span))
        elif msg.startswith("Saving model"):
            self.emit(Progress("saving"))


@contextmanager
def _fd2_lines(on_line: Callable[[str], None]) -> Iterator[None]:
    """Send what is written to file descriptor 2 to ``on_line``, line by line."""
    sys.stderr.flush()
    read_end, write_end = os.pipe()

    def pump() -> None:
        with os.fdopen(read_end, encoding="utf-8", errors="replace") as pipe:
            for raw in pipe:
                on_line(raw.rstrip("\n"))

    reader = threading.Thread(target=pump, name="spm-log", daemon=True)
    reader.start()
    saved = os.dup(2)
    os.dup2(write_end, 2)
    os.close(write_end)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)  # closes the pipe's last write end: the reader sees EOF
        os.close(saved)
        reader.join()


class _Reading:
    """The corpus as SentencePiece's sentence iterator, counting what it hands over."""

    def __init__(self, paths: Sequence[Path], emit: Callable[[Progress], None]) -> None:
        self.paths = paths
        self.emit = emit
        self.sentences = 0

    def __iter__(self) -> Iterator[str]:
        total = sum(p.stat().st_size for p in self.paths)
        done = 0
        for line in lines(self.paths):
            self.sentences += 1
            done += len(line.encode()) + 1
            if self.sentences % 1000 == 1:
                self.emit(Progress("reading corpus", min(done, total), total))
            yield line
        self.emit(Progress("reading corpus", total, total))


def train(
    corpus: Sequence[Path],
    out: Path,
    *,
    model_type: str = "bpe",
    vocab_size: int = 8000,
    byte_fallback: bool = True,
    split_digits: bool = False,
    on_progress: Callable[[Progress], None] = lambda p: None,
) -> Trained:
    """Write ``out``.model and ``out``.vocab; the sample corpus when ``corpus`` is empty."""
    if model_type not in MODEL_TYPES:
        raise UserError(f"--type must be one of {', '.join(MODEL_TYPES)}, got {model_type!r}")
    if vocab_size < 1:
        raise UserError(f"--vocab-size must be positive, got {vocab_size}")
    files = corpus_files(corpus) if corpus else sample_corpus()
    if next(lines(files), None) is None:
        raise UserError("the corpus has no text to train on")
    import sentencepiece

    out.parent.mkdir(parents=True, exist_ok=True)
    log = _LogReader(vocab_size, on_progress)
    reading = _Reading(files, on_progress)
    try:
        with _fd2_lines(log.line):
            sentencepiece.SentencePieceTrainer.train(
                sentence_iterator=iter(reading),
                model_prefix=str(out),
                model_type=model_type,
                vocab_size=vocab_size,
                byte_fallback=byte_fallback,
                split_digits=split_digits,
                character_coverage=0.9995,  # SentencePiece's advice for CJK
                normalization_rule_name="identity",
                remove_extra_whitespaces=False,
                allow_whitespace_only_pieces=True,
                max_sentence_length=1 << 16,
                num_threads=os.cpu_count() or 1,
                minloglevel=0,
            )
    except RuntimeError as e:
        raise _user_error(str(e), vocab_size, "\n".join(log.tail)) from e
    return Trained(
        model=out.with_name(out.name + ".model"),
        vocab=out.with_name(out.name + ".vocab"),
        model_type=model_type,
        vocab_size=vocab_size,
        sentences=reading.sentences,
        byte_fallback=byte_fallback,
        split_digits=split_digits,
    )


def _user_error(message: str, vocab_size: int, log: str) -> UserError:
    if m := _TOO_HIGH.search(message):
        return UserError(
            f"--vocab-size {vocab_size} is too large for this corpus: it yields at most "
            f"{m.group(2)} pieces. Use --vocab-size {m.group(2)} or less, or train on more text."
        )
    if m := _TOO_LOW.search(message):
        return UserError(
            f"--vocab-size {vocab_size} is too small: the corpus needs {m.group(2)} pieces for "
            f"its characters and the special and byte pieces. Use --vocab-size {m.group(2)} "
            "or more."
        )
    detail = message.split("] ", 1)[-1]
    return UserError(f"sentencepiece could not train on this corpus: {detail}\n{log}".strip())
