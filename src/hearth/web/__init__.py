"""The browser UI, served by ``hearth serve`` at ``/``: Jinja2 pages whose scripts talk to
the HTTP API only (the same endpoints any client uses), vendored JS in ``static/vendor``
(see its THIRD_PARTY.md), and one message catalogue per language in ``messages/``."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape

HERE = Path(__file__).resolve().parent
LANGUAGES = ("en", "zh")

router = APIRouter(include_in_schema=False)
static = StaticFiles(directory=HERE / "static")
_env = Environment(
    loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["html"])
)


@cache
def catalogue(lang: str) -> dict[str, str]:
    data: dict[str, str] = json.loads((HERE / "messages" / f"{lang}.json").read_text("utf-8"))
    return data


def language(request: Request) -> str:
    """``?lang=``, then the ``lang`` cookie, then the browser's Accept-Language."""
    chosen = request.query_params.get("lang") or request.cookies.get("lang")
    if chosen in LANGUAGES:
        return chosen
    for part in request.headers.get("accept-language", "").split(","):
        tag = part.split(";")[0].strip().lower()
        if tag.startswith("zh"):
            return "zh"
        if tag.startswith("en"):
            return "en"
    return "en"


def page(request: Request, template: str, **context: Any) -> Response:
    lang = language(request)
    messages = catalogue(lang)
    html = _env.get_template(template).render(
        lang=lang,
        other="zh" if lang == "en" else "en",
        t=lambda key, **kw: messages[key].format(**kw) if kw else messages[key],
        messages_json=json.dumps(messages, ensure_ascii=False).replace("<", "\\u003c"),
        **context,
    )
    response = HTMLResponse(html)
    if request.query_params.get("lang") in LANGUAGES:
        response.set_cookie("lang", lang, max_age=365 * 86400, samesite="lax")
    return response


@router.get("/")
async def home(request: Request) -> Response:
    return RedirectResponse("/chat" + (f"?{request.url.query}" if request.url.query else ""))


@router.get("/chat")
async def chat(request: Request) -> Response:
    return page(request, "chat.html", active="chat")


@router.get("/usage")
async def usage(request: Request) -> Response:
    return page(request, "usage.html", active="usage")


@router.get("/apps")
async def apps(request: Request) -> Response:
    return page(request, "apps.html", active="apps")


@router.get("/kb")
async def knowledge(request: Request) -> Response:
    return page(request, "kb.html", active="kb")


@router.get("/keys")
async def keys(request: Request) -> Response:
    return page(request, "keys.html", active="keys")
