"""Multiple-choice evaluation in C-Eval's format, scored on the served model.

Data: one question per JSONL line (or a JSON array, or a CSV with a header) with C-Eval's
columns ``question, A, B, C, D, answer`` and optional ``id``, ``subject``, ``explanation``.
A ``--dev`` file of the same shape gives few-shot examples, taken from the question's own
subject first, as C-Eval does.

The prompt is a chat rendered by the model's own template (the one serving uses): an
instruction, the question and its options, ending ``答案：`` for Chinese questions and
``Answer:`` for others; few-shot examples come before it as earlier user/assistant turns
whose answers are the bare letter.

Modes:
- ``choice``: one request per question returns the distribution over A–D of the first
  answer token (the engine's ``choice_probs``); the prediction is the most likely letter.
  Nothing is generated, so no answer is ever unparseable.
- ``gen``: the model answers freely (greedy) and the letter is extracted from its text; an
  answer with no letter counts as wrong and is reported as ``unparsed``.

Accuracy is reported both ways, labelled: the mean over questions (each question counts
once) and the mean over subjects (each subject counts once, as C-Eval's leaderboard
averages). The first carries a Wilson 95% interval; the second a normal-approximation one.
Two models on the same questions are compared by their paired difference and an exact
McNemar test.
"""

from __future__ import annotations

import csv
import json
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from hearth.errors import UserError, listing
from hearth.evals.report import LETTERS, Record, Report
from hearth.types import ChatRequest, GenerationParams, Message

MODES = ("choice", "gen")
_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")

INSTRUCTION = {
    "zh": "以下是单项选择题，请直接给出正确答案的选项字母。",
    "en": (
        "The following is a multiple choice question. Answer with the letter of the correct option."
    ),
}
CUE = {"zh": "答案：", "en": "Answer:"}


SHIPPED = "hearth-mc"  # the bilingual set that ships with hearth, with "hearth-mc-dev"


def _shipped_dir() -> Path:
    return Path(str(resources.files("hearth") / "data" / "evals"))


def shipped_names() -> list[str]:
    return sorted(p.stem for p in _shipped_dir().glob("*.jsonl"))


def shipped(name: str) -> Path | None:
    """A question set that ships with hearth, by name (``hearth-mc``, ``hearth-mc-dev``)."""
    stem = name.removesuffix(".jsonl")
    path = _shipped_dir() / f"{stem}.jsonl"
    return path if path.is_file() else None


def dev_of(name: str) -> Path | None:
    """The shipped few-shot file that goes with a shipped set."""
    stem = Path(name).name.removesuffix(".jsonl")
    return shipped(f"{stem}-dev") if shipped(stem) is not None else None


@dataclass(frozen=True)
class Question:
    id: str
    subject: str
    question: str
    options: tuple[str, str, str, str]
    answer: str
    explanation: str = ""

    @property
    def language(self) -> str:
        return "zh" if _CJK.search(self.question + "".join(self.options)) else "en"


# -- data ------------------------------------------------------------------------------
def load_questions(path: Path) -> list[Question]:
    """Read a question file; every bad record is reported by file and line at once."""
    if not path.is_file():
        raise UserError(f"no such file: {path}")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from e
    records = list(_records(path, text))
    out: list[Question] = []
    problems: list[str] = []
    seen: set[str] = set()
    for line, record in records:
        where = f"{path.name}:{line}"
        try:
            q = _question(record, default_id=f"{path.stem}-{len(out) + 1}")
        except ValueError as e:
            problems.append(f"{where}: {e}")
            continue
        if q.id in seen:
            problems.append(f"{where}: id {q.id!r} appears twice")
            continue
        seen.add(q.id)
        out.append(q)
    if problems:
        raise UserError(f"{len(problems)} bad question(s) in {path}:{listing(problems)}")
    if not out:
        raise UserError(f"{path}: no questions (expected JSONL with question, A, B, C, D, answer)")
    return out


def _records(path: Path, text: str) -> list[tuple[int, Any]]:
    if path.suffix.lower() == ".csv":
        rows = csv.DictReader(text.splitlines())
        return [(i + 2, row) for i, row in enumerate(rows)]
    stripped = text.lstrip()
    if stripped.startswith("["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise UserError(f"{path.name}:{e.lineno}: not valid JSON ({e.msg})") from e
        return [(1, r) for r in data]
    out: list[tuple[int, Any]] = []
    bad: list[str] = []
    for i, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            out.append((i, json.loads(line)))
        except json.JSONDecodeError as e:
            bad.append(f"{path.name}:{i}: not valid JSON ({e.msg} at column {e.colno})")
    if bad:
        raise UserError(f"{len(bad)} unreadable line(s) in {path}:{listing(bad)}")
    return out


def _question(record: Any, *, default_id: str) -> Question:
    if not isinstance(record, dict):
        raise ValueError(f"expected an object with question, A, B, C, D, answer; got {record!r}")
    missing = [k for k in ("question", *LETTERS) if not str(record.get(k) or "").strip()]
    if missing:
        raise ValueError(f"missing or empty: {', '.join(missing)}")
    answer = str(record.get("answer") or "").strip().upper()
    if answer not in LETTERS:
        raise ValueError(f"answer must be one of A, B, C, D; got {record.get('answer')!r}")
    opts = tuple(str(record[k]).strip() for k in LETTERS)
    return Question(
        id=str(record.get("id") or default_id),
        subject=str(record.get("subject") or "all").strip() or "all",
        question=str(record["question"]).strip(),
        options=(opts[0], opts[1], opts[2], opts[3]),
        answer=answer,
        explanation=str(record.get("explanation") or "").strip(),
    )


# -- prompts ---------------------------------------------------------------------------
def block(q: Question) -> str:
    lang = q.language
    lines = [INSTRUCTION[lang], "", q.question]
    lines += [f"{letter}. {text}" for letter, text in zip(LETTERS, q.options, strict=True)]
    lines.append(CUE[lang])
    return "\n".join(lines)


def shots_for(q: Question, dev: Sequence[Question], n: int) -> list[Question]:
    """``n`` dev examples, the question's own subject first, then others, in file order."""
    if n <= 0:
        return []
    same = [d for d in dev if d.subject == q.subject and d.id != q.id]
    other = [d for d in dev if d.subject != q.subject and d.id != q.id]
    return (same + other)[:n]


def messages(q: Question, dev: Sequence[Question] = (), shots: int = 0) -> list[Message]:
    """The chat for ``q``: ``shots`` dev examples as earlier turns, then the question."""
    out: list[Message] = []
    for s in shots_for(q, dev, shots):
        out.append(Message("user", block(s)))
        out.append(Message("assistant", s.answer))
    out.append(Message("user", block(q)))
    return out


_PATTERNS = [
    re.compile(r"答案\s*(?:是|为|應為|应为|选|:|：)?\s*[:：]?\s*[\(（]?\s*([ABCD])(?![A-Za-z])"),
    re.compile(r"(?i)answer\s*(?:is|:)?\s*[:：]?\s*\(?\s*([ABCD])(?![A-Za-z])"),
    re.compile(r"^\s*[\(（]?\s*([ABCD])\s*(?:[\)）.．:：、,，]|$|\s)"),
    re.compile(r"(?:选|選|option|choice)\s*[\(（]?\s*([ABCD])(?![A-Za-z])", re.IGNORECASE),
    re.compile(r"(?<![A-Za-z])([ABCD])(?![A-Za-z])"),
]


def extract_letter(text: str, q: Question | None = None) -> str | None:
    """The letter a free answer chose: an explicit "答案：B" / "answer is B" first, then a
    leading letter, then a lone capital A–D; failing those, the one option whose text the
    answer quotes."""
    for pattern in _PATTERNS:
        m = pattern.search(text)
        if m:
            return m.group(1)
    if q is not None:
        quoted = [letter for letter, opt in zip(LETTERS, q.options, strict=True) if opt in text]
        if len(quoted) == 1:
            return quoted[0]
    return None


# -- running ---------------------------------------------------------------------------
async def evaluate(
    runner: Any,
    model: str,
    questions: Sequence[Question],
    *,
    dev: Sequence[Question] = (),
    shots: int = 0,
    mode: str = "choice",
    data: str = "",
    max_tokens: int = 64,
    progress: Callable[[int, int], None] | None = None,
) -> Report:
    """Score ``questions`` on a loaded model (a registry :class:`Runner`): the same engine,
    GGUF and adapter that serving uses."""
    if mode not in MODES:
        raise UserError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
    engine = runner.engine
    if mode == "choice" and not hasattr(engine, "choice_probs"):
        raise UserError(
            f"model '{model}' cannot report answer probabilities (its engine has no token "
            "distribution to read); evaluate it with --mode gen"
        )
    if shots > 0 and not dev:
        raise UserError("--shots needs a --dev file of example questions")
    started = time.monotonic()
    report = Report(model=model, mode=mode, shots=shots, data=data)
    for i, q in enumerate(questions):
        chat = messages(q, dev, shots)
        prompt = await engine.render_chat(chat)
        if mode == "choice":
            probs = await _choice(runner, prompt)
            prediction: str | None = max(LETTERS, key=lambda c: probs[c])
            output = None
        else:
            probs = None
            output = await _generate(runner, chat, max_tokens)
            prediction = extract_letter(output, q)
        report.records.append(
            Record(
                id=q.id,
                subject=q.subject,
                answer=q.answer,
                prediction=prediction,
                correct=prediction == q.answer,
                prompt=prompt,
                probs=probs,
                output=output,
            )
        )
        if progress is not None:
            progress(i + 1, len(questions))
    report.seconds = time.monotonic() - started
    return report


async def _choice(runner: Any, prompt: str) -> dict[str, float]:
    deadline = time.monotonic() + runner.timeout
    async with runner.slot(deadline):
        probs: dict[str, float] = await runner.engine.choice_probs(prompt, list(LETTERS))
    return probs


async def _generate(runner: Any, chat: list[Message], max_tokens: int) -> str:
    request = ChatRequest(
        messages=chat, params=GenerationParams(max_tokens=max_tokens, temperature=0.0, seed=0)
    )
    runner.engine.check(request)
    parts: list[str] = []
    async for delta in runner.stream(lambda: runner.engine.stream_chat(request)):
        parts.append(delta.text)
    return "".join(parts)
