"""The ``steps:`` of an app file: a chain of model calls (and template-only steps), each able
to read the app's inputs, ``{{ input }}`` and earlier steps' outputs (``{{ steps.opening }}``).

What a step needs is read off its templates (``steps.X``) plus its own ``needs:`` list; steps
run in dependency order and steps that do not need each other run at the same time. The
last step listed answers the chain, so no other step may need it. A model step is an app of
one variant (its own prompt, model, knowledge and output schema, the app's moderation), so it
runs through the same ``prepare``/``run`` as any app call.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hearth.apps.source import Lines, Problem, template_line
from hearth.apps.templates import TemplateProblem, Templates

if TYPE_CHECKING:
    from hearth.apps.spec import App, Input, ModerationSpec

# Variables a step's templates may read besides the app's inputs and the app builtins.
STEP_VARIABLES = ("steps", "inputs")


@dataclass(frozen=True)
class Step:
    id: str
    needs: tuple[str, ...]
    app: App | None = None  # a model step
    templates: Templates | None = None  # a render step: its one template, "steps.N.render"
    render: str | None = None

    @property
    def model(self) -> str | None:
        return self.app.variant(None).model if self.app is not None else None


def build_steps(
    data: dict[str, Any],
    inputs: dict[str, Input],
    moderation: ModerationSpec | None,
    base: Path | None,
    problems: list[Problem],
    lines: Lines,
) -> tuple[Step, ...]:
    from hearth.apps.spec import BUILTINS, DEFAULT, App, Variant, knowledge_of, output_of

    raw: list[dict[str, Any]] = data.get("steps") or []
    ids = [s["id"] for s in raw]
    steps: list[Step] = []
    allowed = set(inputs) | set(BUILTINS) | set(STEP_VARIABLES)
    for i, s in enumerate(raw):
        where = f"steps.{i}"
        line = lines.get(("steps", i))
        if ids.index(s["id"]) != i:
            problems.append(Problem(f"{where}.id", f"step id '{s['id']}' is used twice", line))
        if ("prompt" in s) == ("render" in s):
            problems.append(
                Problem(
                    where,
                    "a step has a 'prompt' (a model call) or a 'render' template "
                    "(text without a model), one of the two",
                    line,
                )
            )
            continue
        sources: dict[str, str] = {}
        for part in ("system", "prompt", "render"):
            if part in s:
                sources[f"{where}.{part}"] = s[part]
        knowledge = knowledge_of(s["knowledge"], sources, f"{where}.") if "knowledge" in s else None
        output = (
            output_of(s["output"], ("steps", i, "output"), base, problems, lines)
            if "output" in s
            else None
        )
        try:
            templates = Templates(sources)
        except TemplateProblem as e:
            at = template_line(lines, e.where, e.line)
            problems.append(Problem(e.where, e.message.split(": ", 1)[-1], at))
            continue
        needs = set(s.get("needs", []))
        for name in sources:
            at = lines.get(tuple(int(p) if p.isdigit() else p for p in name.split(".")))
            for u in templates.undeclared(name):
                if u.name not in allowed:
                    problems.append(
                        Problem(
                            name,
                            f"undefined variable '{u.name}' (template line "
                            f"{u.line}); declare it under 'inputs' or read "
                            "steps.ID or inputs.NAME",
                            at,
                        )
                    )
                elif u.name == "context" and knowledge is None:
                    problems.append(
                        Problem(name, "'context' needs a 'knowledge:' section in this step", at)
                    )
            needs |= templates.fields(name, "steps")
        for n in sorted(needs):
            if n == s["id"]:
                problems.append(Problem(where, f"step '{n}' reads its own output", line))
            elif n not in ids:
                problems.append(
                    Problem(
                        where,
                        f"step '{s['id']}' reads steps.{n}, but there is no step "
                        f"'{n}'; steps: {', '.join(ids)}",
                        line,
                    )
                )
        needs &= set(ids) - {s["id"]}
        if "render" in s:
            steps.append(
                Step(s["id"], tuple(sorted(needs)), templates=templates, render=f"{where}.render")
            )
            continue
        variant = Variant(
            name=s["id"],
            model=s.get("model"),
            system=f"{where}.system" if "system" in s else None,
            user=f"{where}.prompt",
            sampling=dict(s.get("sampling", {})),
        )
        app = App(
            name=data["app"],
            description=data.get("description", ""),
            inputs=inputs,
            variants={DEFAULT: {}},
            templates=templates,
            knowledge=knowledge,
            moderation=moderation,
            output=output,
            fixed=variant,
        )
        steps.append(Step(s["id"], tuple(sorted(needs)), app=app))
    if len(steps) == len(raw):
        _check_graph(steps, problems, lines)
    return tuple(steps)


def _check_graph(steps: list[Step], problems: list[Problem], lines: Lines) -> None:
    if not steps:
        return
    final = steps[-1]
    for i, s in enumerate(steps):
        if final.id in s.needs:
            problems.append(
                Problem(
                    f"steps.{i}",
                    f"step '{s.id}' needs '{final.id}', the last "
                    "step, which answers the chain; move it last or drop the "
                    "dependency",
                    lines.get(("steps", i)),
                )
            )
    try:
        layers(steps)
    except ValueError as e:
        problems.append(Problem("steps", str(e), lines.get(("steps",))))


def layers(steps: tuple[Step, ...] | list[Step]) -> list[list[Step]]:
    """Steps grouped so that each group needs only earlier groups: a group runs at once."""
    done: set[str] = set()
    left = list(steps)
    out: list[list[Step]] = []
    while left:
        ready = [s for s in left if set(s.needs) <= done]
        if not ready:
            cycle = " -> ".join(s.id for s in left)
            raise ValueError(f"steps need each other in a cycle: {cycle}")
        out.append(ready)
        done |= {s.id for s in ready}
        left = [s for s in left if s.id not in done]
    return out
