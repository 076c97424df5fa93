"""`hearth eval mc` pieces on the scripted engine: loading and its problems, letter
extraction, statistics, and a whole run through the registry."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from hearth.config import load_settings
from hearth.engines.registry import ModelRegistry
from hearth.errors import UserError
from hearth.evals import mc, report

Q = {"question": "1+1=?", "A": "1", "B": "2", "C": "3", "D": "4", "answer": "B"}


def test_bad_questions_are_all_reported_by_line(tmp_path: Path) -> None:
    path = tmp_path / "q.jsonl"
    rows = [Q, {**Q, "answer": "E"}, {**Q, "C": ""}, "{oops"]
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows))
    with pytest.raises(UserError) as e:
        mc.load_questions(path)
    assert "q.jsonl:4" in str(e.value)
    path.write_text("\n".join(json.dumps(r) for r in rows[:3]))
    with pytest.raises(UserError) as e:
        mc.load_questions(path)
    assert "q.jsonl:2" in str(e.value) and "q.jsonl:3" in str(e.value)


@pytest.mark.parametrize(
    ("text", "letter"),
    [("答案：C", "C"), ("The answer is D.", "D"), ("B. 2", "B"), ("我选A", "A"), ("It is 4", "D")],
)
def test_letters_are_extracted_from_free_answers(text: str, letter: str) -> None:
    q = mc.Question("x", "s", "1+1=?", ("1", "2", "3", "4"), "B")
    assert mc.extract_letter(text, q) == letter


def test_wilson_and_mcnemar() -> None:
    lo, hi = report.wilson(50, 100)
    assert lo == pytest.approx(0.404, abs=1e-3) and hi == pytest.approx(0.596, abs=1e-3)
    same = report.mcnemar([True, False] * 10, [True, False] * 10)
    assert same["p_value"] == 1.0 and same["difference"] == 0
    better = report.mcnemar([False] * 12, [True] * 12)
    assert better["difference"] == 1.0 and better["p_value"] < 0.001


def test_a_run_on_the_scripted_engine_scores_per_subject(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text(
        '[models.right]\nengine = "fake"\nscript = ["B", "D"]\n', encoding="utf-8"
    )
    questions = [
        mc.Question("1", "math", "1+1=?", ("1", "2", "3", "4"), "B"),
        mc.Question("2", "语文", "一加三？", ("一", "二", "三", "四"), "D"),
    ]

    async def go() -> report.Report:
        registry = ModelRegistry(load_settings(home=tmp_path, env={}))
        try:
            runner = await registry.get("right")
            return await mc.evaluate(runner, "right", questions, mode="choice")
        finally:
            await registry.close()

    scored = asyncio.run(go())
    assert scored.accuracy == 1.0 and scored.subject_mean == 1.0
    assert [r.prediction for r in scored.records] == ["B", "D"]
    assert "答案：" in scored.records[1].prompt and "Answer:" in scored.records[0].prompt
    assert abs(sum(scored.records[0].probs.values()) - 1) < 1e-9  # type: ignore[union-attr]
