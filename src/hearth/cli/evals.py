"""`hearth eval`: measure retrieval and models (C-Eval-style multiple choice)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from hearth.config import Settings, load_settings
from hearth.errors import UserError
from hearth.evals import charts, lm_eval, mc, report
from hearth.evals.retrieval import CUTOFFS, evaluate, load_qa
from hearth.rag.kb import embedder_of, open_store

app = typer.Typer(
    help="Evaluate retrieval quality and models (multiple choice, C-Eval style).",
    no_args_is_help=True,
)
console = Console()


@app.command()
def retrieval(
    kb: str,
    qa_file: Path = typer.Argument(..., help="JSONL: question, document, answer_contains."),
    translate: bool = typer.Option(
        False, help="Search with each question's translation too, as `kb search --translate`."
    ),
    model: str = typer.Option(None, "--model", "-m", help="Chat model that translates."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """hit@1/3/5 and MRR for vector, keyword and hybrid search side by side, over all
    questions and per direction (zh→zh, en→zh, zh→en, en→en).

    Example: hearth eval retrieval handbook qa.jsonl --translate
    """
    from hearth.cli.kb_ask import translations

    qa = load_qa(qa_file)
    settings = load_settings()
    store = open_store(settings.knowledge_url)
    embedder = embedder_of(store.get_kb(kb))
    phrasings = None
    if translate:
        questions = [item.question for item in qa]
        phrasings = asyncio.run(translations(settings, model or settings.default_model, questions))
    scores = evaluate(store, embedder, kb, qa, phrasings=phrasings)
    if as_json:
        rows = [
            {"mode": s.mode, "group": s.group, "questions": s.questions, "mrr": s.mrr}
            | {f"hit@{c}": s.hit_at[c] for c in CUTOFFS}
            for s in scores
        ]
        typer.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    table = Table(title=f"retrieval on {kb}: {len(qa)} questions")
    table.add_column("mode")
    table.add_column("questions")
    for c in CUTOFFS:
        table.add_column(f"hit@{c}", justify="right")
    table.add_column("MRR", justify="right")
    for s in scores:
        label = s.mode if s.group == "all" else f"  {s.group}"
        hits = (f"{s.hit_at[c]:.3f}" for c in CUTOFFS)
        table.add_row(label, str(s.questions), *hits, f"{s.mrr:.3f}")
    console.print(table)


@app.command("mc")
def mc_command(
    model: str = typer.Argument(..., help="A served model: bundled, pulled, remote or an adapter."),
    data: Path = typer.Argument(
        ..., help="Questions: JSONL (or JSON/CSV) with question, A, B, C, D, answer[, subject]."
    ),
    dev: Path = typer.Option(None, "--dev", help="Few-shot examples, same columns."),
    shots: int = typer.Option(0, "--shots", min=0, max=10, help="Examples before each question."),
    mode: str = typer.Option(
        "choice",
        "--mode",
        help="choice: read the A-D distribution (one request per question); "
        "gen: let the model answer and extract the letter.",
    ),
    compare: str = typer.Option(
        None, "--compare", help="A second model on the same questions: paired difference, McNemar."
    ),
    subject: list[str] = typer.Option(None, "--subject", help="Only these subjects (repeatable)."),
    limit: int = typer.Option(0, "--limit", min=0, help="Only the first N questions."),
    chart: Path = typer.Option(None, "--chart", help="Write a per-subject bar chart (PNG)."),
    out: Path = typer.Option(None, "--out", help="Write the full JSON report to a file."),
    export_lm_eval: Path = typer.Option(
        None,
        "--export-lm-eval",
        help="Write an lm-eval task (YAML + data with hearth's exact prompts) to DIR and stop.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the JSON report (with records)."),
) -> None:
    """Multiple-choice accuracy, overall and per subject, on the model as served.

    Reports the mean over questions (with a Wilson 95% interval) and the mean over subjects
    (C-Eval's average), labelled; the JSON holds every question's rendered prompt,
    probabilities and answer.

    Examples:
      hearth eval mc qwen2.5-0.5b-instruct hearth-mc
      hearth eval mc smollm2-135m-instruct hearth-mc --compare qwen2.5-0.5b-instruct --chart mc.png
      hearth eval mc my-model ceval-val.jsonl --dev ceval-dev.jsonl --shots 5
    """
    if mode not in mc.MODES:
        raise UserError(f"--mode must be one of {', '.join(mc.MODES)}; got {mode!r}")
    settings = load_settings()
    questions = _select(mc.load_questions(_dataset(data)), subject, limit)
    if dev is None and shots and not data.exists():
        dev = mc.dev_of(data.name)  # a shipped set brings its own examples
    examples = mc.load_questions(_dataset(dev)) if dev is not None else []
    if shots and not examples:
        raise UserError("--shots needs --dev FILE with the example questions")
    if export_lm_eval is not None:
        path, command = asyncio.run(
            _export(settings, model, questions, examples, shots, export_lm_eval)
        )
        console.print(
            f"wrote {path} ({len(questions)} questions, prompts as rendered for '{model}')"
        )
        console.print(f"run it with:\n  {command}")
        return
    models = [model] + ([compare] if compare else [])
    reports = asyncio.run(
        _run(settings, models, questions, examples, shots, mode, str(data), quiet=as_json)
    )
    result: dict[str, Any] = {"reports": [r.to_json() for r in reports]}
    if compare:
        result["comparison"] = _comparison(reports[0], reports[1])
    if out is not None:
        out.write_text(json.dumps(result, ensure_ascii=False, indent=2), encoding="utf-8")
    if chart is not None:
        charts.chart(reports, chart)
    if as_json:
        typer.echo(json.dumps(result, ensure_ascii=False, indent=2))
        return
    _print(reports, result.get("comparison"))
    if chart is not None:
        console.print(f"chart: {chart}")
    if out is not None:
        console.print(f"report: {out}")


def _dataset(path: Path) -> Path:
    """A file, or the name of a set that ships with hearth (hearth-mc, hearth-mc-dev)."""
    if path.exists():
        return path
    shipped = mc.shipped(path.name)
    if shipped is not None:
        return shipped
    raise UserError(f"no such file: {path} (shipped sets: {', '.join(mc.shipped_names())})")


def _select(
    questions: list[mc.Question], subjects: list[str] | None, limit: int
) -> list[mc.Question]:
    if subjects:
        known = {q.subject for q in questions}
        unknown = [s for s in subjects if s not in known]
        if unknown:
            raise UserError(
                f"no questions in subject(s) {', '.join(unknown)}; the data has: "
                f"{', '.join(sorted(known))}"
            )
        questions = [q for q in questions if q.subject in subjects]
    return questions[:limit] if limit else questions


async def _run(
    settings: Settings,
    models: list[str],
    questions: list[mc.Question],
    dev: list[mc.Question],
    shots: int,
    mode: str,
    data: str,
    *,
    quiet: bool,
) -> list[report.Report]:
    from hearth.engines.registry import ModelRegistry

    registry = ModelRegistry(settings)
    reports = []
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} questions"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        disable=quiet,
    )
    try:
        with progress:
            for name in models:
                task = progress.add_task(f"loading {name}", total=len(questions))
                runner = await registry.get(name)
                progress.update(task, description=name)

                def tick(done: int, total: int, task: Any = task) -> None:
                    progress.update(task, completed=done)

                reports.append(
                    await mc.evaluate(
                        runner,
                        name,
                        questions,
                        dev=dev,
                        shots=shots,
                        mode=mode,
                        data=data,
                        progress=tick,
                    )
                )
    finally:
        await registry.close()
    return reports


async def _export(
    settings: Settings,
    model: str,
    questions: list[mc.Question],
    dev: list[mc.Question],
    shots: int,
    out_dir: Path,
) -> tuple[Path, str]:
    from hearth.engines.registry import ModelRegistry

    registry = ModelRegistry(settings)
    try:
        runner = await registry.get(model)
        prompts = [await runner.engine.render_chat(mc.messages(q, dev, shots)) for q in questions]
        spec = runner.spec
    finally:
        await registry.close()
    path = lm_eval.export(out_dir, model, questions, prompts)
    gguf = Path(spec.path) if spec.path else None
    return path, lm_eval.command(out_dir, gguf)


def _comparison(a: report.Report, b: report.Report) -> dict[str, Any]:
    ids_a = [r.id for r in a.records]
    if ids_a != [r.id for r in b.records]:
        raise UserError("the two reports cover different questions")
    return {"first": a.model, "second": b.model} | report.mcnemar(
        [r.correct for r in a.records], [r.correct for r in b.records]
    )


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def _print(reports: list[report.Report], comparison: dict[str, Any] | None) -> None:
    first = reports[0]
    title = (
        f"{first.questions} questions, {first.mode} mode, {first.shots}-shot "
        f"(accuracy %, chance {_pct(1 / len(report.LETTERS))})"
    )
    table = Table(title=title)
    table.add_column("subject")
    table.add_column("n", justify="right")
    for r in reports:
        table.add_column(escape(r.model), justify="right")
    subjects = sorted({s.subject for r in reports for s in r.subjects()})
    by = [{s.subject: s for s in r.subjects()} for r in reports]
    for name in subjects:
        n = next(b[name].questions for b in by if name in b)
        cells = [_pct(b[name].accuracy) if name in b else "-" for b in by]
        table.add_row(escape(name), str(n), *cells)
    table.add_section()

    def ci(lo_hi: tuple[float, float]) -> str:
        return f" [{_pct(lo_hi[0])}–{_pct(lo_hi[1])}]"

    table.add_row(
        "[b]mean over questions[/]",
        str(first.questions),
        *[_pct(r.accuracy) + ci(report.wilson(r.correct, r.questions)) for r in reports],
    )
    table.add_row(
        "[b]mean over subjects[/]",
        str(len(subjects)),
        *[_pct(r.subject_mean) + ci(r.subject_mean_ci()) for r in reports],
    )
    if any(r.mean_prob_correct is not None for r in reports):
        table.add_row(
            "mean P(correct)",
            "",
            *[
                _pct(r.mean_prob_correct) if r.mean_prob_correct is not None else "-"
                for r in reports
            ],
        )
    if any(r.unparsed for r in reports):
        table.add_row("no letter found", "", *[str(r.unparsed) for r in reports])
    table.add_row("seconds", "", *[f"{r.seconds:.0f}" for r in reports])
    console.print(table)
    if comparison:
        lo, hi = comparison["ci95"]
        console.print(
            f"{escape(comparison['second'])} − {escape(comparison['first'])}: "
            f"{100 * comparison['difference']:+.1f} points (95% CI {100 * lo:+.1f} to "
            f"{100 * hi:+.1f}); discordant {comparison['only_first_right']} vs "
            f"{comparison['only_second_right']}, McNemar exact p = {comparison['p_value']:.3g}"
        )


def before_after(settings: Settings, manifest: Any, eval_data: Path, *, quiet: bool) -> Any:
    """Evaluate a fresh adapter and its base on the same questions (choice mode, 0-shot) and
    keep the result in the adapter's manifest."""
    from hearth.finetune.store import save

    settings = load_settings()  # the adapter was registered after these settings were read
    questions = mc.load_questions(_dataset(eval_data))
    base, adapter = asyncio.run(
        _run(
            settings,
            [manifest.base, manifest.name],
            questions,
            [],
            0,
            "choice",
            str(eval_data),
            quiet=quiet,
        )
    )
    manifest = dataclasses.replace(
        manifest,
        evaluation={
            "data": str(eval_data),
            "base": base.summary(),
            "adapter": adapter.summary(),
            "comparison": _comparison(base, adapter),
        },
    )
    save(settings, manifest)
    if not quiet:
        _print([base, adapter], manifest.evaluation["comparison"])
    return manifest
