"""`hearth apps`: app files — list, show, validate, add, rm, run and test them."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from hearth.apps.agent import attach_agent
from hearth.apps.guard import Guard
from hearth.apps.run import AppCall, prepare
from hearth.apps.run import run as run_app
from hearth.apps.schema import APP_SCHEMA
from hearth.apps.source import AppInvalid
from hearth.apps.spec import App, TestCase, parse_app
from hearth.apps.store import AppStore
from hearth.apps.testing import Outcome, as_json, matrix, run_tests
from hearth.config import Settings, load_settings
from hearth.engines.registry import ModelRegistry
from hearth.errors import UserError
from hearth.rag.kb import open_store
from hearth.rag.stores.base import Store
from hearth.types import GenerationParams, Message

app = typer.Typer(
    help="Apps: one business scenario per YAML file — prompts per model, inputs, knowledge, "
    "moderation, an output schema and tests. The server serves each as a model id; files in "
    "$HEARTH_HOME/apps are re-read when they change.",
    no_args_is_help=True,
)
console = Console()
err = Console(stderr=True)


def _store(settings: Settings) -> AppStore:
    """The apps directory; with a PostgreSQL database, the replicas' shared apps too (the
    connection lives as long as this command)."""
    from hearth.storage.db import dialect_of

    if dialect_of(settings.db_url) != "postgresql":
        return AppStore(settings.home / "apps")
    from hearth.storage.appfiles import SharedAppFiles
    from hearth.storage.calllog import open_calllog

    return AppStore(settings.home / "apps", SharedAppFiles(open_calllog(settings.db_url).db))


def _load(ref: str, settings: Settings) -> App:
    """An installed app by name, or an app file by path (to try one before adding it)."""
    path = Path(ref)
    if path.suffix in (".yaml", ".yml", ".json") and path.is_file():
        return parse_app(path.read_text(encoding="utf-8-sig"), source=str(path), base=path.parent)
    return _store(settings).get(ref)


@app.command("list")
def list_apps(as_json_: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """The installed apps, and files that do not parse."""
    store = _store(load_settings())
    apps, broken = store.all(), store.broken()
    if as_json_:
        data = [
            {"app": a.name, "description": a.description, "models": a.models(),
             "variants": list(a.variants), "tests": len(a.tests)}
            for a in apps
        ]  # fmt: skip
        typer.echo(json.dumps(data, ensure_ascii=False, indent=2))
        return
    if not apps and not broken:
        console.print(f"No apps in {store.directory}. Add one: `hearth apps add FILE.yaml`.")
        return
    table = Table(title=f"apps in {store.directory}")
    for col in ("app", "description", "models", "knowledge", "schema", "tests"):
        table.add_column(col)
    for a in apps:
        table.add_row(
            a.name,
            a.description,
            ", ".join(a.models()) or "(default model)",
            ", ".join(a.knowledge.kbs) if a.knowledge else "-",
            "yes" if a.output else "-",
            str(len(a.tests)),
        )
    console.print(table)
    for name, e in broken.items():
        err.print(f"[red]invalid:[/] {escape(name)}: {escape(e.message)}")


@app.command("show")
def show(name: str, as_json_: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """An app's file as written, with its variants and prompt versions."""
    a = _load(name, load_settings())
    if as_json_:
        typer.echo(json.dumps(a.raw, ensure_ascii=False, indent=2))
        return
    console.print(
        f"[bold]{a.name}[/] {escape(a.description)}" + (f"  ({a.path})" if a.path else "")
    )
    for key in a.variants:
        v = a.variant(None if key == "default" else key)
        console.print(
            f"  variant [cyan]{key}[/] -> model {v.model or '(default)'}, version {a.version(v)}"
        )
    console.print()
    console.print(escape(a.text), highlight=False)


@app.command("schema")
def schema() -> None:
    """The JSON Schema of an app file (for editors: yaml-language-server, VS Code)."""
    typer.echo(json.dumps(APP_SCHEMA, ensure_ascii=False, indent=2))


@app.command("validate")
def validate(files: list[Path] = typer.Argument(..., help="App files to check.")) -> None:
    """Check app files: schema, templates, variables, output schema. Exit 1 on a problem."""
    failed = 0
    for path in files:
        try:
            a = parse_app(path.read_text(encoding="utf-8-sig"), source=str(path), base=path.parent)
        except OSError as e:
            err.print(f"[red]✗[/] {path}: cannot read: {e.strerror}")
            failed += 1
        except AppInvalid as e:
            failed += 1
            err.print(f"[red]✗[/] {path}")
            for p in e.problems:
                err.print(f"    {escape(str(p))}")
        else:
            console.print(f"[green]✓[/] {path}: app '{a.name}', variants {', '.join(a.variants)}")
    if failed:
        raise typer.Exit(1)


@app.command("add")
def add(
    file: Path = typer.Argument(..., help="The app file (YAML or JSON)."),
    force: bool = typer.Option(False, "--force", help="Replace an app of the same name."),
) -> None:
    """Validate an app file and install it into $HEARTH_HOME/apps (a running server picks
    it up at once). A schema file it names is copied beside it."""
    settings = load_settings()
    store = _store(settings)
    try:
        text = file.read_text(encoding="utf-8-sig")
    except OSError as e:
        raise UserError(f"cannot read {file}: {e.strerror}") from None
    a = parse_app(text, source=str(file), base=file.parent)
    if store.find(a.name) is not None and not force:
        raise UserError(f"app '{a.name}' exists; add --force to replace it")
    ref = a.raw.get("output", {}).get("schema")
    if isinstance(ref, str):
        target = store.directory / ref
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(file.parent / ref, target)
    a, created = store.put(text)
    console.print(f"{'added' if created else 'replaced'} app '{a.name}' -> {a.path}")
    console.print(f'use it as model "{a.name}" (or "{a.name}@MODEL") on /v1/chat/completions')


@app.command("rm")
def rm(name: str) -> None:
    """Remove an installed app."""
    _store(load_settings()).delete(name)
    console.print(f"removed app '{name}'")


def _vars(pairs: list[str], a: App) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        key, eq, value = pair.partition("=")
        if not eq:
            raise UserError(f"--var takes KEY=VALUE; got {pair!r}", param="var")
        spec = a.inputs.get(key)
        if spec is not None and spec.type != "string":
            try:
                out[key] = json.loads(value)
                continue
            except json.JSONDecodeError:
                pass
        out[key] = value
    return out


class _Local:
    """Models, moderation and knowledge in this process, for run and test."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.registry = ModelRegistry(settings)
        self.guard = Guard(settings.home / "moderation")
        self._kb: Store | None = None

    def kb(self) -> Store:
        if self._kb is None:
            self._kb = open_store(self.settings.knowledge_url)
        return self._kb

    async def run(
        self, a: App, model: str | None, variables: dict[str, Any], text: str,
        params: GenerationParams, echo: bool = False,
    ) -> tuple[str, AppCall]:  # fmt: skip
        chosen = a.variant(model).model or self.settings.default_model
        self.registry.spec(chosen)
        runner = await self.registry.get(chosen)
        call = await prepare(
            a, model=chosen, messages=[Message("user", text)], variables=variables,
            params=params, engine=runner.engine, guard=self.guard, kb=self.kb,
        )  # fmt: skip
        if call.refusal is not None:
            raise call.refusal
        if a.tools and call.canned is None:
            await attach_agent(
                call, "local", kb=self.kb, home=self.settings.home, mcp=self.settings.mcp
            )
        out = ""
        async for d in runner.stream(lambda: run_app(call, runner.engine)):
            out += d.text
            if echo and d.text:
                console.print(d.text, end="", markup=False, highlight=False)
        return out, call

    async def close(self) -> None:
        await self.registry.close()
        if self._kb is not None:
            self._kb.close()


@app.command("run")
def run(
    name: str = typer.Argument(..., help="An installed app, or an app file."),
    input_: str = typer.Option("", "--input", "-i", help="The user's message ({{ input }})."),
    var: list[str] = typer.Option([], "--var", "-v", help="A variable, KEY=VALUE; repeat."),
    model: str | None = typer.Option(None, "--model", "-m", help="Run this model's variant."),
    max_tokens: int | None = typer.Option(None, "--max-tokens", min=1),
    as_json_: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Run an app once, in this process, and print its answer."""
    settings = load_settings()
    a = _load(name, settings)

    async def go() -> tuple[str, AppCall]:
        local = _Local(settings)
        try:
            params = GenerationParams(max_tokens=max_tokens)
            return await local.run(a, model, _vars(var, a), input_, params, echo=not as_json_)
        finally:
            await local.close()

    text, call = asyncio.run(go())
    if as_json_:
        out = {
            "app": a.name, "model": call.model, "variant": call.variant.name,
            "prompt_version": call.version,
            "output": call.value if a.output is not None else text,
            "finish_reason": call.finish_reason, "retries": call.retries,
            "sources": call.sources, "moderation": [f.as_dict() for f in call.flags],
        }  # fmt: skip
        typer.echo(json.dumps(out, ensure_ascii=False, indent=2))
        return
    console.print()
    for s in call.sources:
        console.print(f"[bold][{s['n']}][/] {escape(str(s['citation']))}")
    for f in call.flags:
        console.print(
            f"[yellow]moderation:[/] {f.direction} {f.action} "
            f"({f.hit.word.list}/{f.hit.word.category})"
        )


@app.command("test")
def test(
    name: str = typer.Argument(..., help="An installed app, or an app file."),
    model: list[str] = typer.Option([], "--model", "-m", help="Only these models; repeat."),
    as_json_: bool = typer.Option(False, "--json", help="Print the results as JSON."),
) -> None:
    """Run every test case against every variant's model (the business × model matrix);
    print pass/fail per assertion; exit 1 if any fails."""
    settings = load_settings()
    a = _load(name, settings)
    if not a.tests:
        raise UserError(f"app '{a.name}' has no tests; add a 'tests:' list to its file")
    models = model or matrix(a, settings.default_model)

    async def go() -> list[Outcome]:
        local = _Local(settings)

        async def one(case: TestCase, m: str) -> tuple[str, AppCall]:
            return await local.run(a, m, case.vars, case.input, GenerationParams(seed=0))

        try:
            return await run_tests(a, models, one)
        finally:
            await local.close()

    outcomes = asyncio.run(go())
    if as_json_:
        typer.echo(json.dumps(as_json(outcomes), ensure_ascii=False, indent=2))
    else:
        _table(a, outcomes)
    if not all(o.passed for o in outcomes):
        raise typer.Exit(1)


def _table(a: App, outcomes: list[Outcome]) -> None:
    table = Table(title=f"hearth apps test {a.name}")
    for col in ("case", "model", "variant", "assertion", "result", "detail"):
        table.add_column(col)
    for o in outcomes:
        rows = [(v.label, v.passed, v.detail) for v in o.verdicts] or [
            ("(no assertions)", True, "")
        ]
        if o.error is not None:
            rows = [("runs", False, o.error)]
        for label, ok, detail in rows:
            mark = "[green]pass[/]" if ok else "[red]FAIL[/]"
            table.add_row(o.case.name, o.model, o.variant, escape(label), mark, escape(detail[:80]))
    console.print(table)
    passed = sum(o.passed for o in outcomes)
    console.print(f"{passed}/{len(outcomes)} cases passed")


@app.command("runs")
def runs(
    name: str = typer.Argument(..., help="An app with steps."),
    limit: int = typer.Option(10, "--limit", "-n", min=1, help="How many recent runs."),
    as_json_: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Recent runs of a chain app, from the call log: each step's model, tokens, latency
    and status, tied by the run id."""
    from hearth.storage.calllog import open_calllog

    log = open_calllog(load_settings().db_url)
    try:
        found = log.runs(name, limit)
    finally:
        log.close()
    if as_json_:
        data = [{"run_id": r[0].run_id, "steps": [
            {"step": c.step, "model": c.model, "prompt_tokens": c.prompt_tokens,
             "completion_tokens": c.completion_tokens, "latency_ms": round(c.latency_ms, 1),
             "status": c.status, "error": c.error} for c in r]} for r in found]  # fmt: skip
        typer.echo(json.dumps(data, ensure_ascii=False, indent=2))
        return
    if not found:
        console.print(f"no runs of '{name}' yet; run it with POST /v1/apps/{name}/run")
        return
    table = Table(title=f"hearth apps runs {name}")
    for col in ("run", "step", "model", "prompt", "completion", "ms", "status"):
        table.add_column(col)
    for r in found:
        for c in r:
            status = c.status if c.status == "ok" else f"[red]{c.status}[/] {escape(c.error or '')}"
            row = (c.run_id or "", c.step or "", c.model, str(c.prompt_tokens),
                   str(c.completion_tokens), f"{c.latency_ms:.0f}", status[:80])  # fmt: skip
            table.add_row(*row)
    console.print(table)
