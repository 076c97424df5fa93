"""``hearth apps test``: every test case of an app against every variant's model (the
business × model matrix), each answer checked by the case's assertions, as promptfoo does."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from hearth.apps.output import extract, problem
from hearth.apps.run import AppCall
from hearth.apps.spec import App, Assertion, TestCase
from hearth.errors import HearthError


@dataclass(frozen=True)
class Verdict:
    assertion: Assertion
    passed: bool
    detail: str = ""

    @property
    def label(self) -> str:
        a = self.assertion
        return a.type if a.value is None else f"{a.type} {json.dumps(a.value, ensure_ascii=False)}"


@dataclass
class Outcome:
    case: TestCase
    model: str
    variant: str = ""
    text: str = ""
    error: str | None = None
    seconds: float = 0.0
    verdicts: list[Verdict] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.error is None and all(v.passed for v in self.verdicts)


def check(a: Assertion, text: str, call: AppCall | None) -> Verdict:
    """One assertion against one answer."""
    value = a.value
    if a.type == "schema":
        schema = call.app.output.schema if call and call.app.output else {}
        _, why = problem(text, schema)
        return Verdict(a, why is None, why or "")
    if a.type == "is-json":
        try:
            json.loads(extract(text))
        except json.JSONDecodeError as e:
            return Verdict(a, False, str(e))
        return Verdict(a, True)
    if a.type in ("contains", "not-contains", "icontains"):
        needles = value if isinstance(value, list) else [value]
        hay = text.lower() if a.type == "icontains" else text
        found = [n for n in needles if (str(n).lower() if a.type == "icontains" else str(n)) in hay]
        if a.type == "not-contains":
            return Verdict(a, not found, f"found {found[0]!r}" if found else "")
        return Verdict(a, bool(found), "" if found else "not found")
    if a.type == "equals":
        same = text.strip() == str(value).strip()
        return Verdict(a, same, "" if same else "differs")
    if a.type in ("regex", "not-regex"):
        try:
            match = re.search(str(value), text) is not None
        except re.error as e:
            return Verdict(a, False, f"bad pattern: {e}")
        return Verdict(a, match if a.type == "regex" else not match)
    if a.type == "max-length":
        return Verdict(a, len(text) <= int(value), f"{len(text)} characters")
    if a.type == "not-moderated":
        hits = [f for f in (call.flags if call else []) if f.direction == "output"]
        return Verdict(a, not hits, f"{len(hits)} output hit(s)" if hits else "")
    return Verdict(a, False, f"unknown assertion type {a.type!r}")


RunOne = Callable[[TestCase, str], Awaitable[tuple[str, AppCall | None]]]


def matrix(app: App, default: str) -> list[str]:
    """The models a test run covers by default: every variant's, or ``default`` alone."""
    return app.models() or [default]


async def run_tests(app: App, models: list[str], run_one: RunOne) -> list[Outcome]:
    """Each case on each model; an error in one cell is that cell's failure, not the run's."""
    outcomes = []
    for model in models:
        for case in app.tests:
            out = Outcome(case, model, app.variant(model).name)
            start = time.perf_counter()
            try:
                out.text, call = await run_one(case, model)
            except HearthError as e:
                out.error = e.message
            else:
                out.verdicts = [check(a, out.text, call) for a in case.asserts]
                if call is not None and call.refusal is not None:
                    out.error = call.refusal.message
            out.seconds = time.perf_counter() - start
            outcomes.append(out)
    return outcomes


def as_json(outcomes: list[Outcome]) -> list[dict[str, Any]]:
    return [
        {
            "case": o.case.name,
            "model": o.model,
            "variant": o.variant,
            "passed": o.passed,
            "error": o.error,
            "seconds": round(o.seconds, 3),
            "output": o.text,
            "assertions": [
                {"assertion": v.label, "passed": v.passed, "detail": v.detail} for v in o.verdicts
            ],
        }
        for o in outcomes
    ]
