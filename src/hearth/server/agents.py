"""Agent apps over HTTP: an app with ``tools:`` gets its toolbox (built-ins bound to this
server's knowledge bases and home, MCP servers from config), and each tool call of its
run is recorded under the run's id, next to the model call it belongs to."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from hearth.agents.loop import run_loop
from hearth.agents.tools import (
    Calculator,
    HttpGet,
    KbSearch,
    Outcome,
    Python,
    Tool,
    ToolFailed,
    mcp_tools,
    sandbox_for,
)
from hearth.apps.knowledge import retrieve
from hearth.apps.run import AppCall
from hearth.apps.spec import App
from hearth.errors import ConfigError, InvalidRequest, UpstreamError
from hearth.server.services import Services
from hearth.storage.calllog import ToolRecord
from hearth.storage.conversations import new_id

_MCP_TTL = 60.0  # seconds a server's tool list is reused


async def toolbox(svc: Services, app: App) -> dict[str, Tool]:
    tools: list[Tool] = []
    for kind, options in app.tools:
        if kind == "calculator":
            tools.append(Calculator())
        elif kind == "python":
            hidden = (svc.settings.home,)
            tools.append(Python(sandbox_for(options, hidden)))
        elif kind == "http_get":
            tools.append(
                HttpGet(
                    tuple(options["allow"]),
                    max_bytes=options.get("max_bytes", 200_000),
                    timeout=options.get("timeout", 10),
                )
            )
        elif kind == "kb_search":
            assert app.knowledge is not None
            spec = app.knowledge
            k = options.get("k", spec.k)

            async def search(query: str, k: int, spec: Any = spec) -> list[dict[str, Any]]:
                hits = await retrieve(spec, svc.kb, query)
                return [{"citation": h.citation(), "text": h.chunk.text} for h in hits[:k]]

            tools.append(KbSearch(search, spec.kbs, k))
        elif kind == "mcp":
            tools += await _mcp(svc, options["server"])
    return {t.spec.name: t for t in tools}


async def _mcp(svc: Services, server: str) -> list[Tool]:
    config = svc.settings.mcp.get(server)
    if config is None:
        known = ", ".join(svc.settings.mcp) or "none"
        raise ConfigError(
            f"the app uses MCP server '{server}', which config.toml does not name "
            f"(add [mcp.{server}] with command = [...] or url = ...; named: {known})"
        )
    cache: dict[str, tuple[float, list[Tool]]] = svc.__dict__.setdefault("_mcp_tools", {})
    hit = cache.get(server)
    if hit is not None and time.monotonic() - hit[0] < _MCP_TTL:
        return hit[1]
    try:
        found: list[Tool] = list(await mcp_tools(server, config))
    except ToolFailed as e:
        raise UpstreamError(str(e)) from None
    cache[server] = (time.monotonic(), found)
    return found


async def make_agent(svc: Services, call: AppCall, run_id: str) -> list[dict[str, Any]]:
    """Give ``call`` its tool loop; the returned list fills with the run's tool calls."""
    app = call.app
    tools = await toolbox(svc, app)
    clash = [t.name for t in call.request.tools if t.name in tools]
    if clash:
        raise InvalidRequest(
            f"tools: the app '{app.name}' already has a tool named {clash[0]}; name yours "
            "otherwise",
            param="tools",
        )
    steps: list[dict[str, Any]] = []

    async def on_tool(step: int, position: int, o: Outcome) -> None:
        steps.append(
            {
                "step": step,
                "tool": o.name,
                "arguments": o.arguments,
                "ok": o.ok,
                "result_chars": len(o.result),
                "ms": round(o.ms, 1),
            }
        )
        record = ToolRecord(
            run_id,
            step,
            position,
            time.time(),
            o.name,
            o.arguments,
            len(o.result),
            o.ms,
            o.ok,
            o.result[:2000],
        )
        await asyncio.to_thread(svc.calllog.record_tool, record)

    call.agent = lambda stream_chat: run_loop(  # call.request: with memory, once attached
        call.request, stream_chat, tools, max_steps=app.max_steps, on_tool=on_tool
    )
    return steps


def run_id() -> str:
    return new_id("run")
