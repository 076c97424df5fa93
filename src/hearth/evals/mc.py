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
import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from hearth.errors import UserError
from hearth.types import ChatRequest, GenerationParams, Message

LETTERS = ("A", "B", "C", "D")
MODES = ("choice", "gen")
Z95 = 1.959963984540054
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
def load_questions(path: Path, *, need_answer: bool = True) -> list[Question]:
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
            q = _question(record, default_id=f"{path.stem}-{len(out) + 1}", need=need_answer)
        except ValueError as e:
            problems.append(f"{where}: {e}")
            continue
        if q.id in seen:
            problems.append(f"{where}: id {q.id!r} appears twice")
            continue
        seen.add(q.id)
        out.append(q)
    if problems:
        shown = "\n  ".join(problems[:10])
        more = f"\n  … and {len(problems) - 10} more" if len(problems) > 10 else ""
        raise UserError(f"{len(problems)} bad question(s) in {path}:\n  {shown}{more}")
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
        shown = "\n  ".join(bad[:10])
        raise UserError(f"{len(bad)} unreadable line(s) in {path}:\n  {shown}")
    return out


def _question(record: Any, *, default_id: str, need: bool) -> Question:
    if not isinstance(record, dict):
        raise ValueError(f"expected an object with question, A, B, C, D, answer; got {record!r}")
    missing = [k for k in ("question", *LETTERS) if not str(record.get(k) or "").strip()]
    if missing:
        raise ValueError(f"missing or empty: {', '.join(missing)}")
    answer = str(record.get("answer") or "").strip().upper()
    if answer not in LETTERS and (need or answer):
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
def block(q: Question, *, instruction: bool = True) -> str:
    lang = q.language
    lines = [INSTRUCTION[lang], ""] if instruction else []
    lines.append(q.question)
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


def messages(q: Question, shots: Sequence[Question]) -> list[Message]:
    out: list[Message] = []
    for s in shots:
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


# -- statistics ------------------------------------------------------------------------
def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    if n == 0:
        return (0.0, 1.0)
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def mcnemar(a: Sequence[bool], b: Sequence[bool]) -> dict[str, Any]:
    """Paired comparison of two models' right/wrong on the same questions: the difference
    in accuracy (b − a) with a 95% interval, the discordant counts, and the exact two-sided
    McNemar p-value (a binomial test on the discordant pairs)."""
    from scipy.stats import binomtest

    n = len(a)
    only_a = sum(1 for x, y in zip(a, b, strict=True) if x and not y)
    only_b = sum(1 for x, y in zip(a, b, strict=True) if y and not x)
    discordant = only_a + only_b
    p = 1.0 if discordant == 0 else float(binomtest(only_b, discordant, 0.5).pvalue)
    diff = (only_b - only_a) / n if n else 0.0
    se = math.sqrt(max(0.0, discordant - (only_b - only_a) ** 2 / n)) / n if n else 0.0
    return {
        "difference": diff,
        "ci95": [diff - Z95 * se, diff + Z95 * se],
        "only_first_right": only_a,
        "only_second_right": only_b,
        "p_value": p,
        "test": "exact McNemar (two-sided binomial test on discordant pairs)",
    }


# -- running ---------------------------------------------------------------------------
@dataclass
class Record:
    id: str
    subject: str
    answer: str
    prediction: str | None
    correct: bool
    prompt: str
    probs: dict[str, float] | None = None
    output: str | None = None


@dataclass
class SubjectScore:
    subject: str
    questions: int
    correct: int

    @property
    def accuracy(self) -> float:
        return self.correct / self.questions if self.questions else 0.0


@dataclass
class Report:
    model: str
    mode: str
    shots: int
    data: str
    records: list[Record] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def questions(self) -> int:
        return len(self.records)

    @property
    def correct(self) -> int:
        return sum(r.correct for r in self.records)

    @property
    def accuracy(self) -> float:
        return self.correct / self.questions if self.records else 0.0

    def subjects(self) -> list[SubjectScore]:
        by: dict[str, SubjectScore] = {}
        for r in self.records:
            s = by.setdefault(r.subject, SubjectScore(r.subject, 0, 0))
            s.questions += 1
            s.correct += int(r.correct)
        return sorted(by.values(), key=lambda s: s.subject)

    @property
    def subject_mean(self) -> float:
        subjects = self.subjects()
        return sum(s.accuracy for s in subjects) / len(subjects) if subjects else 0.0

    def subject_mean_ci(self) -> tuple[float, float]:
        subjects = self.subjects()
        if not subjects:
            return (0.0, 1.0)
        var = sum(s.accuracy * (1 - s.accuracy) / s.questions for s in subjects)
        half = Z95 * math.sqrt(var) / len(subjects)
        m = self.subject_mean
        return (max(0.0, m - half), min(1.0, m + half))

    @property
    def unparsed(self) -> int:
        return sum(1 for r in self.records if r.prediction is None)

    @property
    def mean_prob_correct(self) -> float | None:
        probs = [r.probs[r.answer] for r in self.records if r.probs is not None]
        return sum(probs) / len(probs) if probs else None

    def summary(self) -> dict[str, Any]:
        lo, hi = wilson(self.correct, self.questions)
        slo, shi = self.subject_mean_ci()
        return {
            "model": self.model,
            "mode": self.mode,
            "shots": self.shots,
            "data": self.data,
            "questions": self.questions,
            "correct": self.correct,
            "accuracy_over_questions": self.accuracy,
            "accuracy_over_questions_ci95": [lo, hi],
            "accuracy_over_subjects": self.subject_mean,
            "accuracy_over_subjects_ci95": [slo, shi],
            "chance": 1 / len(LETTERS),
            "unparsed": self.unparsed,
            "mean_prob_correct": self.mean_prob_correct,
            "seconds": round(self.seconds, 1),
            "subjects": [
                {
                    "subject": s.subject,
                    "questions": s.questions,
                    "correct": s.correct,
                    "accuracy": s.accuracy,
                    "ci95": list(wilson(s.correct, s.questions)),
                }
                for s in self.subjects()
            ],
        }

    def to_json(self) -> dict[str, Any]:
        return self.summary() | {"records": [asdict(r) for r in self.records]}


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
        chat = messages(q, shots_for(q, dev, shots))
        prompt = await engine.render_chat(chat)
        if mode == "choice":
            probs = await _choice(runner, engine, prompt)
            prediction: str | None = max(LETTERS, key=lambda c: probs[c])
            output = None
        else:
            probs = None
            output = await _generate(runner, engine, chat, max_tokens)
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


async def _choice(runner: Any, engine: Any, prompt: str) -> dict[str, float]:
    deadline = time.monotonic() + runner.timeout
    async with runner.slot(deadline):
        probs: dict[str, float] = await engine.choice_probs(prompt, list(LETTERS))
    return probs


async def _generate(runner: Any, engine: Any, chat: list[Message], max_tokens: int) -> str:
    request = ChatRequest(
        messages=chat, params=GenerationParams(max_tokens=max_tokens, temperature=0.0, seed=0)
    )
    engine.check(request)
    parts: list[str] = []
    async for delta in runner.stream(lambda: engine.stream_chat(request)):
        parts.append(delta.text)
    return "".join(parts)


# -- chart -----------------------------------------------------------------------------
def chart(reports: Sequence[Report], path: Path) -> Path:
    """Accuracy per subject, one bar per model, with 95% intervals and the chance line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import font_manager

    # Subject names may be Chinese: prefer a CJK font where one is installed.
    have = {f.name for f in font_manager.fontManager.ttflist}
    cjk = [
        f for f in ("WenQuanYi Micro Hei", "Noto Sans CJK SC", "Source Han Sans SC") if f in have
    ]
    plt.rcParams["font.sans-serif"] = [*cjk, "DejaVu Sans"]
    subjects = sorted({s.subject for r in reports for s in r.subjects()})
    labels = [*subjects, "over questions", "over subjects"]
    width = 0.8 / max(1, len(reports))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(labels) * max(1, len(reports)) ** 0.5), 4.5))
    for i, r in enumerate(reports):
        by = {s.subject: s for s in r.subjects()}
        values, lows, highs = [], [], []
        for name in subjects:
            s = by.get(name)
            acc = s.accuracy if s else 0.0
            lo, hi = wilson(s.correct, s.questions) if s else (0.0, 0.0)
            values.append(acc)
            lows.append(acc - lo)
            highs.append(hi - acc)
        lo, hi = wilson(r.correct, r.questions)
        values.append(r.accuracy)
        lows.append(r.accuracy - lo)
        highs.append(hi - r.accuracy)
        slo, shi = r.subject_mean_ci()
        values.append(r.subject_mean)
        lows.append(r.subject_mean - slo)
        highs.append(shi - r.subject_mean)
        xs = [x + (i - (len(reports) - 1) / 2) * width for x in range(len(labels))]
        ax.bar(xs, values, width, yerr=[lows, highs], capsize=2, label=r.model)
    ax.axhline(1 / len(LETTERS), color="grey", linestyle="--", linewidth=1, label="chance")
    ax.set_xticks(range(len(labels)), labels, rotation=35, ha="right")
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy")
    mode = ", ".join(sorted({f"{r.mode}, {r.shots}-shot" for r in reports}))
    ax.set_title(f"multiple choice ({mode}), 95% intervals")
    ax.legend(fontsize="small")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


# -- lm-eval export --------------------------------------------------------------------
LM_EVAL_TASK = "hearth_mc"


def export_lm_eval(
    out_dir: Path, model: str, questions: Sequence[Question], prompts: Sequence[str]
) -> Path:
    """An lm-eval task over the same questions and the exact prompts hearth sends
    (rendered by ``model``'s chat template): ``multiple_choice`` over the continuations
    A–D with no delimiter, scored by ``acc`` (the highest log-likelihood letter), which is
    what ``choice`` mode computes from the served distribution."""
    out_dir.mkdir(parents=True, exist_ok=True)
    data = out_dir / f"{LM_EVAL_TASK}.jsonl"
    with data.open("w", encoding="utf-8") as f:
        for q, prompt in zip(questions, prompts, strict=True):
            row = {"id": q.id, "subject": q.subject, "prompt": prompt, "answer": q.answer}
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    yaml = out_dir / f"{LM_EVAL_TASK}.yaml"
    yaml.write_text(
        "# Written by `hearth eval mc --export-lm-eval`: the questions with the prompts\n"
        f"# hearth renders for model '{model}' (its own chat template), scored by lm-eval.\n"
        f"task: {LM_EVAL_TASK}\n"
        "dataset_path: json\n"
        "dataset_kwargs:\n"
        "  data_files:\n"
        f"    test: {json.dumps(str(data.resolve()))}\n"
        "test_split: test\n"
        "output_type: multiple_choice\n"
        'doc_to_text: "{{prompt}}"\n'
        'doc_to_choice: ["A", "B", "C", "D"]\n'
        "doc_to_target: \"{{['A', 'B', 'C', 'D'].index(answer)}}\"\n"
        'target_delimiter: ""\n'
        "metric_list:\n"
        "  - metric: acc\n"
        "    aggregation: mean\n"
        "    higher_is_better: true\n"
        "metadata:\n"
        "  version: 1.0\n",
        encoding="utf-8",
    )
    return yaml


def lm_eval_command(out_dir: Path, gguf: Path | None) -> str:
    model_args = (
        f"pretrained={gguf.parent},gguf_file={gguf.name},dtype=float32"
        if gguf is not None
        else "pretrained=HF_MODEL_DIR"
    )
    return (
        f"lm_eval --model hf --model_args {model_args} --include_path {out_dir} "
        f"--tasks {LM_EVAL_TASK} --device cpu --batch_size 8"
    )
