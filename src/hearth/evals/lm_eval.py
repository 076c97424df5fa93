"""The same questions and prompts as an lm-eval task, to cross-check ``hearth eval mc``."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from hearth.evals.mc import Question

TASK = "hearth_mc"


def export(
    out_dir: Path, model: str, questions: Sequence[Question], prompts: Sequence[str]
) -> Path:
    """An lm-eval task over the same questions and the exact prompts hearth sends
    (rendered by ``model``'s chat template): ``multiple_choice`` over the continuations
    A–D with no delimiter, scored by ``acc`` (the highest log-likelihood letter), which is
    what ``choice`` mode computes from the served distribution."""
    out_dir.mkdir(parents=True, exist_ok=True)
    data = out_dir / f"{TASK}.jsonl"
    with data.open("w", encoding="utf-8") as f:
        for q, prompt in zip(questions, prompts, strict=True):
            row = {"id": q.id, "subject": q.subject, "prompt": prompt, "answer": q.answer}
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    yaml = out_dir / f"{TASK}.yaml"
    yaml.write_text(
        "# Written by `hearth eval mc --export-lm-eval`: the questions with the prompts\n"
        f"# hearth renders for model '{model}' (its own chat template), scored by lm-eval.\n"
        f"task: {TASK}\n"
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


def command(out_dir: Path, gguf: Path | None) -> str:
    model_args = (
        f"pretrained={gguf.parent},gguf_file={gguf.name},dtype=float32"
        if gguf is not None
        else "pretrained=HF_MODEL_DIR"
    )
    return (
        f"lm_eval --model hf --model_args {model_args} --include_path {out_dir} "
        f"--tasks {TASK} --device cpu --batch_size 8"
    )
