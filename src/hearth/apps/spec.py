"""The app file: YAML (or JSON) read into an ``App``, checked against ``APP_SCHEMA`` and
then for what a schema cannot say — templates that compile, variables they may read, an
output schema the decoder can enforce. Every problem names its field and line."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import jsonschema

from hearth.apps.schema import APP_SCHEMA
from hearth.apps.source import AppInvalid, Lines, Problem, dotted, load, template_line
from hearth.apps.steps import Step, build_steps
from hearth.apps.templates import TemplateProblem, Templates
from hearth.conversations.memory import Policy, parse_policy
from hearth.engines.json_schema import unenforced
from hearth.errors import UserError

DEFAULT = "default"
# Variables every template may read besides the app's inputs.
BUILTINS = ("input", "context", "sources", "app", "model")
_VALIDATOR = jsonschema.Draft202012Validator(APP_SCHEMA)


@dataclass(frozen=True)
class Input:
    name: str
    type: str = "string"
    required: bool = False
    default: Any = None
    description: str = ""
    enum: tuple[Any, ...] = ()


@dataclass(frozen=True)
class Variant:
    """A variant as it runs: its own fields with the default variant's beneath them."""

    name: str  # the key in ``variants``
    model: str | None
    system: str | None  # template names in ``App.templates``
    user: str
    sampling: dict[str, Any]


@dataclass(frozen=True)
class Knowledge:
    kbs: tuple[str, ...]
    k: int = 4
    query: str = "knowledge.query"  # template name
    mode: str = "hybrid"
    max_tokens: int | None = None
    gate: bool = False


@dataclass(frozen=True)
class ModerationSpec:
    lists: tuple[str, ...] = ()
    words: tuple[tuple[str, str, str | None], ...] = ()  # (word, category, action)
    input: str = "block"
    output: str = "mask"
    reply: str | None = None


@dataclass(frozen=True)
class OutputSpec:
    schema: dict[str, Any]
    retries: int = 2


@dataclass(frozen=True)
class Assertion:
    type: str
    value: Any = None


@dataclass(frozen=True)
class TestCase:
    name: str
    vars: dict[str, Any]
    input: str
    asserts: tuple[Assertion, ...]


@dataclass(frozen=True)
class App:
    name: str
    description: str
    inputs: dict[str, Input]
    variants: dict[str, dict[str, Any]]  # as written
    templates: Templates
    knowledge: Knowledge | None = None
    moderation: ModerationSpec | None = None
    output: OutputSpec | None = None
    tests: tuple[TestCase, ...] = ()
    memory: Policy | None = None  # what a conversation with this app remembers
    steps: tuple[Step, ...] = ()  # a chain: run in dependency order, the last one answers
    text: str = ""  # the file as written
    path: Path | None = None
    raw: dict[str, Any] = field(default_factory=dict)
    fixed: Variant | None = None  # one step of a chain: its one variant, on any model
    tools: tuple[tuple[str, dict[str, Any]], ...] = ()  # (kind, options): an agent
    max_steps: int = 5
    tool_choice: str = "auto"  # the first turn's: "required" makes the model call a tool

    def variant(self, model: str | None) -> Variant:
        """The variant for ``model``: its own fields over ``default``'s. ``None``: the app's
        own choice, the default variant on its model."""
        if self.fixed is not None:
            return replace(self.fixed, model=model or self.fixed.model)
        default = DEFAULT if DEFAULT in self.variants else next(iter(self.variants))
        if model is None:
            key = default
            chosen = self.variants[key].get("model") or (None if key == DEFAULT else key)
        else:
            if model not in self.variants and DEFAULT not in self.variants:
                raise UserError(
                    f"app '{self.name}' has no variant for model '{model}' and no 'default' "
                    f"one; its variants: {', '.join(self.variants)}",
                    param="model",
                )
            key = model if model in self.variants else DEFAULT
            alias = self.variants[key].get("model") if key == model else None
            chosen = alias or model
        base = self.variants.get(DEFAULT, {})
        own = self.variants[key]
        return Variant(
            name=key,
            model=chosen,
            system=self._template(key, "system"),
            user=self._template(key, "user") or self._template(default, "user") or "",
            sampling={**base.get("sampling", {}), **own.get("sampling", {})},
        )

    def _template(self, key: str, part: str) -> str | None:
        for k in (key, DEFAULT):
            name = f"variants.{k}.{part}"
            if name in self.templates.sources:
                return name
        return None

    def version(self, variant: Variant) -> str:
        """A short hash of everything that shapes this variant's prompt."""
        src = self.templates.sources
        parts = {
            "system": src.get(variant.system or "", ""),
            "user": src.get(variant.user, ""),
            "query": src.get(self.knowledge.query, "") if self.knowledge else "",
            "schema": self.output.schema if self.output else None,
            "sampling": variant.sampling,
        }
        blob = json.dumps(parts, sort_keys=True, ensure_ascii=False).encode()
        return hashlib.sha256(blob).hexdigest()[:12]

    def models(self) -> list[str]:
        """Every model a variant names (the business × model matrix's columns)."""
        out = []
        for key in self.variants:
            model = self.variant(None if key == DEFAULT else key).model
            if model and model not in out:
                out.append(model)
        return out


def _message(error: Any) -> str:
    """jsonschema's words, made specific where its own are vague (a ``oneOf`` of tools)."""
    path = list(error.absolute_path)
    if error.validator == "oneOf" and len(path) == 2 and path[0] == "tools":
        if isinstance(error.instance, dict) and error.context:
            deepest = max(error.context, key=lambda e: len(e.relative_path))
            if deepest.relative_path:  # inside a known tool's options
                where = ".".join(str(p) for p in deepest.relative_path)
                return f"{where}: {deepest.message}"
        return (
            f"{error.instance!r} is not a tool; use calculator, kb_search, python, "
            "{http_get: {allow: [host, ...]}} or {mcp: SERVER} (optionally with options, "
            "e.g. {python: {cpu_seconds: 5}})"
        )
    return str(error.message)


def parse_app(text: str, *, source: str = "app", base: Path | None = None) -> App:
    """Read and check an app file; ``base`` is where a relative schema file is found."""
    data, lines = load(text, source)
    problems = [
        Problem(dotted(e.absolute_path), _message(e), lines.get(tuple(e.absolute_path)))
        for e in sorted(_VALIDATOR.iter_errors(data), key=lambda e: list(e.absolute_path))
    ]
    if "variants" not in data and "steps" not in data:
        problems.append(
            Problem("", "'variants' is a required property (or 'steps', for a chain)", 1)
        )
    if problems:
        raise AppInvalid(source, problems)
    return _build(data, text, source, base, lines)


def _build(
    data: dict[str, Any],
    text: str,
    source: str,
    base: Path | None,
    lines: Lines,
) -> App:
    problems: list[Problem] = []
    inputs = {
        name: Input(
            name=name,
            type=spec.get("type", "string"),
            required=bool(spec.get("required", False)),
            default=spec.get("default"),
            description=spec.get("description", ""),
            enum=tuple(spec.get("enum", ())),
        )
        for name, spec in (data.get("inputs") or {}).items()
    }
    for name in inputs:
        if name in BUILTINS:
            problems.append(
                Problem(
                    f"inputs.{name}",
                    f"'{name}' is set by hearth; name the input otherwise",
                    lines.get(("inputs", name)),
                )
            )
    sources: dict[str, str] = {}
    data.setdefault("variants", {DEFAULT: {}})  # a chain without variants: the default model
    for key, variant in data["variants"].items():
        for part in ("system", "user"):
            if part in variant:
                sources[f"variants.{key}.{part}"] = variant[part]
    if DEFAULT in data["variants"] and "user" not in data["variants"][DEFAULT]:
        sources[f"variants.{DEFAULT}.user"] = "{{ input }}"
    elif DEFAULT not in data["variants"]:
        first = next(iter(data["variants"]))
        sources.setdefault(f"variants.{first}.user", "{{ input }}")
    knowledge = knowledge_of(data["knowledge"], sources) if "knowledge" in data else None
    try:
        templates = Templates(sources)
    except TemplateProblem as e:
        raise AppInvalid(
            source,
            [Problem(e.where, e.message.split(": ", 1)[-1], template_line(lines, e.where, e.line))],
        ) from None
    allowed = set(inputs) | set(BUILTINS)
    for name in sources:
        for u in templates.undeclared(name):
            if u.name not in allowed:
                known = ", ".join(sorted(inputs)) or "none"
                problems.append(
                    Problem(
                        name,
                        f"undefined variable '{u.name}' (template line {u.line}); declare it "
                        f"under 'inputs' (declared: {known}) or use one of {', '.join(BUILTINS)}",
                        template_line(lines, name, u.line),
                    )
                )
            elif u.name == "context" and knowledge is None:
                problems.append(
                    Problem(
                        name,
                        "'context' holds knowledge-base chunks; add a 'knowledge:' section",
                        template_line(lines, name, u.line),
                    )
                )
    output = (
        output_of(data["output"], ("output",), base, problems, lines) if "output" in data else None
    )
    moderation = None
    if "moderation" in data:
        m = data["moderation"]
        words = tuple(
            (w, "", None)
            if isinstance(w, str)
            else (w["word"], w.get("category", ""), w.get("action"))
            for w in m.get("words", [])
        )
        moderation = ModerationSpec(
            tuple(m.get("lists", [])),
            words,
            m.get("input", "block"),
            m.get("output", "mask"),
            m.get("reply"),
        )
    tests = tuple(
        TestCase(
            name=t.get("name") or f"case {i + 1}",
            vars=t.get("vars") or {},
            input=t.get("input", ""),
            asserts=tuple(Assertion(a["type"], a.get("value")) for a in t.get("assert", [])),
        )
        for i, t in enumerate(data.get("tests") or [])
    )
    for i, case in enumerate(tests):
        for j, a in enumerate(case.asserts):
            if a.type == "schema" and output is None:
                problems.append(
                    Problem(
                        f"tests.{i}.assert.{j}",
                        "a 'schema' assertion needs 'output.schema'",
                        lines.get(("tests", i, "assert", j)),
                    )
                )
    memory = parse_policy(data["memory"]) if "memory" in data else None
    steps = build_steps(data, inputs, moderation, base, problems, lines)
    tools = tools_of(data.get("tools") or [], knowledge, output, steps, problems, lines)
    if ("max_steps" in data or "tool_choice" in data) and not tools:
        problems.append(
            Problem(
                "max_steps",
                "'max_steps' and 'tool_choice' shape an agent run; add 'tools:'",
                lines.get(("max_steps",)),
            )
        )
    if problems:
        raise AppInvalid(source, problems)
    return App(
        name=data["app"],
        description=data.get("description", ""),
        inputs=inputs,
        variants=data["variants"],
        templates=templates,
        knowledge=knowledge,
        moderation=moderation,
        output=output,
        tests=tests,
        memory=memory,
        steps=steps,
        text=text,
        raw=data,
        tools=tools,
        max_steps=data.get("max_steps", 5),
        tool_choice=data.get("tool_choice", "auto"),
    )


def tools_of(
    raw: list[Any],
    knowledge: Knowledge | None,
    output: OutputSpec | None,
    steps: tuple[Step, ...],
    problems: list[Problem],
    lines: Lines,
) -> tuple[tuple[str, dict[str, Any]], ...]:
    """The ``tools:`` section as (kind, options) pairs, checked against the rest."""
    out: list[tuple[str, dict[str, Any]]] = []
    for i, item in enumerate(raw):
        kind, options = (item, {}) if isinstance(item, str) else next(iter(item.items()))
        if kind == "mcp":
            options = {"server": options}
        options = options or {}
        where, line = f"tools.{i}", lines.get(("tools", i))
        if kind == "http_get" and not options.get("allow"):
            problems.append(
                Problem(
                    where, "http_get needs an allow-list: {http_get: {allow: [host, ...]}}", line
                )
            )
        if kind == "kb_search" and knowledge is None:
            problems.append(
                Problem(
                    where, "kb_search searches the app's knowledge bases; add 'knowledge:'", line
                )
            )
        if (kind, options) in out:
            problems.append(Problem(where, f"'{kind}' is listed twice", line))
        out.append((kind, options))
    if out and steps:
        problems.append(
            Problem("tools", "a chain's steps cannot have tools yet", lines.get(("tools",)))
        )
    if out and output is not None:
        problems.append(
            Problem(
                "tools", "an agent answers in text; drop 'output' or 'tools'", lines.get(("tools",))
            )
        )
    return tuple(out)


def knowledge_of(kn: dict[str, Any], sources: dict[str, str], prefix: str = "") -> Knowledge:
    """A ``knowledge:`` section; its query template joins ``sources``."""
    query = f"{prefix}knowledge.query"
    sources[query] = kn.get("query", "{{ input }}")
    kbs = kn["kb"] if isinstance(kn["kb"], list) else [kn["kb"]]
    return Knowledge(
        tuple(kbs),
        kn.get("k", 4),
        query,
        kn.get("mode", "hybrid"),
        kn.get("max_tokens"),
        kn.get("gate", False),
    )


def output_of(
    out: dict[str, Any],
    path: tuple[Any, ...],
    base: Path | None,
    problems: list[Problem],
    lines: Lines,
) -> OutputSpec:
    """An ``output:`` section, its schema read from a file inside the app's folder if named."""
    return OutputSpec(_schema(out["schema"], base, problems, lines, path), out.get("retries", 2))


def _schema(
    value: dict[str, Any] | str,
    base: Path | None,
    problems: list[Problem],
    lines: Lines,
    path: tuple[Any, ...] = ("output",),
) -> dict[str, Any]:
    where, line = dotted([*path, "schema"]), lines.get((*path, "schema"))
    if isinstance(value, str):
        file = Path(value) if base is None else base / value
        if base is not None and not file.resolve().is_relative_to(base.resolve()):
            problems.append(Problem(where, "a schema file must lie in the app's folder", line))
            return {}
        try:
            value = json.loads(file.read_text(encoding="utf-8"))
        except OSError as e:
            problems.append(Problem(where, f"cannot read schema file {file}: {e.strerror}", line))
            return {}
        except json.JSONDecodeError as e:
            problems.append(Problem(where, f"{file} is not JSON: {e}", line))
            return {}
        if not isinstance(value, dict):
            problems.append(Problem(where, f"{file} does not hold a JSON object", line))
            return {}
    try:
        jsonschema.validators.validator_for(value).check_schema(value)
    except jsonschema.SchemaError as e:
        at = "/".join(str(p) for p in e.absolute_path) or "(root)"
        problems.append(Problem(where, f"not a valid JSON Schema: at {at}: {e.message}", line))
        return value
    why = unenforced(value)
    if why is not None:
        problems.append(
            Problem(
                where,
                f"the decoder cannot enforce {why}; drop or change it so every answer is "
                "guaranteed to match",
                line,
            )
        )
    return value
