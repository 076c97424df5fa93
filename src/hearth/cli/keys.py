"""`hearth keys`: API keys for the server, with scopes, rate limits and budgets."""

from __future__ import annotations

import datetime as dt
import json
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from hearth.config import load_settings
from hearth.errors import UserError
from hearth.storage.calllog import CallLog, open_calllog
from hearth.storage.keys import ApiKey, KeyStore

app = typer.Typer(
    help="API keys: once any key exists, every endpoint but /health needs one. Keys carry "
    "a scope (models, knowledge bases), limits (requests and tokens per minute, a budget) "
    "and an expiry; a running server sees a change within a second.",
    no_args_is_help=True,
)
console = Console()
_DURATION = re.compile(r"^(\d+)\s*([dhm])$")
_UNIT = {"d": 86400, "h": 3600, "m": 60}


@contextmanager
def _opened() -> Iterator[tuple[KeyStore, CallLog]]:
    log = open_calllog(load_settings().db_url)
    try:
        yield KeyStore(log.db), log
    finally:
        log.close()


def _list(value: str | None) -> list[str] | None:
    return None if value is None else [v.strip() for v in value.split(",") if v.strip()]


def parse_expiry(text: str, now: float | None = None) -> float:
    """``2027-01-31`` (usable through that UTC day), an ISO date-time (UTC unless it has a
    zone) or a duration from now: ``30d``, ``12h``, ``90m``."""
    now = time.time() if now is None else now
    match = _DURATION.match(text.strip())
    if match:
        return now + int(match.group(1)) * _UNIT[match.group(2)]
    try:
        if len(text.strip()) == 10:
            day = dt.date.fromisoformat(text.strip())
            when = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), dt.UTC)
        else:
            when = dt.datetime.fromisoformat(text.strip())
            when = when if when.tzinfo else when.replace(tzinfo=dt.UTC)
    except ValueError as e:
        raise UserError(
            f"--expires takes a date (2027-01-31), a date and time (2027-01-31T18:00) or a "
            f"duration (30d, 12h, 90m); got {text!r}"
        ) from e
    if when.timestamp() <= now:
        raise UserError(f"--expires {text} is already past")
    return when.timestamp()


def _when(ts: float | None) -> str:
    if ts is None:
        return "never"
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def _emit(data: Any) -> None:
    typer.echo(json.dumps(data, ensure_ascii=False, indent=2))


@app.command()
def create(
    name: str = typer.Argument(..., help="Who or what uses the key, e.g. ci-bot or alice."),
    models: str = typer.Option(None, help="Comma-separated models (and apps) it may use."),
    kbs: str = typer.Option(None, help="Comma-separated knowledge bases it may use."),
    rpm: int = typer.Option(None, help="Requests per minute."),
    tpm: int = typer.Option(None, help="Tokens (prompt + completion) per minute."),
    budget: float = typer.Option(None, help="Total cost it may spend, in the price currency."),
    expires: str = typer.Option(None, help="2027-01-31, 2027-01-31T18:00, or 30d / 12h / 90m."),
    admin: bool = typer.Option(False, help="May manage keys and knowledge bases, see all usage."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON (the key under 'key')."),
) -> None:
    """Create a key and print it once: only its hash is stored.

    Example: hearth keys create ci-bot --models qwen2.5-0.5b-instruct --rpm 60 --budget 5
    """
    settings = load_settings()
    wanted = _list(models)
    unknown = [m for m in wanted or [] if m not in settings.models]
    if unknown:
        raise UserError(
            f"unknown model(s) {', '.join(unknown)}; known: {', '.join(settings.models)}"
        )
    when = parse_expiry(expires) if expires else None
    with _opened() as (store, _):
        key, secret = store.create(
            name,
            models=wanted,
            kbs=_list(kbs),
            rpm=rpm,
            tpm=tpm,
            budget=budget,
            expires=when,
            admin=admin,
        )
    if as_json:
        _emit(key.public() | {"key": secret})
        return
    console.print(f"created {'admin ' if admin else ''}key [bold]{key.id}[/] ({key.name})")
    typer.echo(secret)
    console.print(
        "[yellow]This is the only time the key is shown; store it now.[/] Send it as "
        "'Authorization: Bearer <key>' (OpenAI SDK: api_key=...)."
    )


@app.command("list")
def list_keys(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Every key, revoked and expired ones included, with what each has spent."""
    with _opened() as (store, log):
        keys = store.all()
        spent = {r.key: r.cost for r in log.usage(by=("key",))}
    if as_json:
        _emit([k.public() | {"spent": spent.get(k.id, 0.0)} for k in keys])
        return
    if not keys:
        console.print(
            "No keys: the server is open to anyone who can reach it. "
            "Create one with `hearth keys create NAME --admin`."
        )
        return
    table = Table(title="hearth keys")
    for col in ("id", "name", "key", "state", "scope", "limits", "spent", "expires"):
        table.add_column(col)
    for k in keys:
        table.add_row(
            k.id,
            k.name + (" (admin)" if k.admin else ""),
            k.hint,
            k.state(),
            _scope(k),
            _limits(k),
            f"{spent.get(k.id, 0.0):.4f}",
            _when(k.expires),
        )
    console.print(table)


def _scope(k: ApiKey) -> str:
    models = "all models" if k.models is None else "models: " + ", ".join(k.models)
    kbs = "all kbs" if k.kbs is None else "kbs: " + ", ".join(k.kbs)
    return f"{models}; {kbs}"


def _limits(k: ApiKey) -> str:
    parts = [f"{k.rpm} rpm" if k.rpm else "", f"{k.tpm} tpm" if k.tpm else ""]
    if k.budget is not None:
        parts.append(f"budget {k.budget:g}")
    return ", ".join(p for p in parts if p) or "none"


@app.command()
def revoke(
    key: str = typer.Argument(..., help="The key's id (key_…), its name, or the key itself."),
) -> None:
    """Revoke a key; a running server refuses it within a second."""
    with _opened() as (store, _):
        revoked = store.revoke(key)
    console.print(f"revoked [bold]{revoked.id}[/] ({revoked.name}, {revoked.hint})")


@app.command()
def usage(
    key: str = typer.Argument(None, help="One key (id, name or the key); default: every key."),
    since: str = typer.Option(None, help="First day to include, YYYY-MM-DD (UTC)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Calls, tokens and cost per key, and what is left of each budget."""
    from hearth.cli.usage import parse_day

    with _opened() as (store, log):
        keys = {k.id: k for k in store.all()}
        only = store.find(key).id if key else None
        rows = log.usage(parse_day(since), by=("key",), key_id=only)
    data = []
    for r in rows:
        k = keys.get(r.key or "")
        budget = k.budget if k else None
        data.append(
            {
                "key": r.key or None,
                "name": k.name if k else "(no key)",
                "calls": r.calls,
                "errors": r.errors,
                "prompt_tokens": r.prompt_tokens,
                "completion_tokens": r.completion_tokens,
                "cost": r.cost,
                "budget": budget,
                "budget_left": None if budget is None else budget - r.cost,
            }
        )
    if as_json:
        _emit(data)
        return
    if not data:
        console.print("No calls logged for these keys yet.")
        return
    table = Table(title="usage by key")
    for col in ("key", "name", "calls", "errors", "prompt", "completion", "cost", "budget left"):
        table.add_column(col, justify="left" if col in ("key", "name") else "right")
    for d in data:
        left = d["budget_left"]
        table.add_row(
            str(d["key"] or "-"),
            str(d["name"]),
            str(d["calls"]),
            str(d["errors"]),
            str(d["prompt_tokens"]),
            str(d["completion_tokens"]),
            f"{d['cost']:.4f}",
            "" if left is None else f"{left:.4f}",
        )
    console.print(table)
