"""Scores of a multiple-choice run: per-question records, accuracy over questions and over
subjects with 95% intervals, and the paired comparison of two models."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

LETTERS = ("A", "B", "C", "D")
Z95 = 1.959963984540054


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
