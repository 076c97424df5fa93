"""An app with ``tools:`` as an agent: its toolbox (built-ins bound to the knowledge bases
and home it runs with, MCP servers from config) and the tool loop attached to its call.
The server and ``hearth apps run/test`` both attach agents through here."""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from hearth.agents.loop import run_loop
from hearth.agents.tools import (
    Calculator,
    HttpGet,
    KbSearch,
    McpTool,
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
from hearth.rag.stores.base import Store
from hearth.storage.calllog import ToolRecord

_MCP_TTL = 60.0  # seconds a server's tool list is reused
_mcp_cache: dict[str, tuple[float, list[McpTool]]] = {}

Record = Callable[[ToolRecord], Awaitable[None]]


async def toolbox(
    app: App, *, kb: Callable[[], Store], home: Path, mcp: dict[str, dict[str, Any]]
) -> dict[str, Tool]:
    tools: list[Tool] = []
    for kind, options in app.tools:
        if kind == "calculator":
            tools.append(Calculator())
        elif kind == "python":
            tools.append(Python(sandbox_for(options, (home,))))
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

            async def search(query: str, k: int, spec: Any = spec) -> list[dict[str, Any]]:
                hits = await retrieve(spec, kb(), query)
                return [{"citation": h.citation(), "text": h.chunk.text} for h in hits[:k]]

            tools.append(KbSearch(search, spec.kbs, options.get("k", spec.k)))
        elif kind == "mcp":
            tools += await _mcp(options["server"], mcp)
    return {t.spec.name: t for t in tools}


async def _mcp(server: str, servers: dict[str, dict[str, Any]]) -> list[McpTool]:
    config = servers.get(server)
    if config is None:
        known = ", ".join(servers) or "none"
        raise ConfigError(
            f"the app uses MCP server '{server}', which config.toml does not name "
            f"(add [mcp.{server}] with command = [...] or url = ...; named: {known})"
        )
    key = server + json.dumps(config, sort_keys=True)
    hit = _mcp_cache.get(key)
    if hit is not None and time.monotonic() - hit[0] < _MCP_TTL:
        return hit[1]
    try:
        found = await mcp_tools(server, config)
    except ToolFailed as e:
        raise UpstreamError(str(e)) from None
    _mcp_cache[key] = (time.monotonic(), found)
    return found


async def attach_agent(
    call: AppCall,
    run_id: str,
    *,
    kb: Callable[[], Store],
    home: Path,
    mcp: dict[str, dict[str, Any]],
    record: Record | None = None,
) -> list[dict[str, Any]]:
    """Give ``call`` its tool loop; the returned list fills with the run's tool calls as
    they happen (and each goes to ``record``)."""
    app = call.app
    tools = await toolbox(app, kb=kb, home=home, mcp=mcp)
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
        if record is not None:
            await record(
                ToolRecord(
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
            )

    request = call.request
    if request.tool_choice == "auto" and request.tool_name is None:
        call.request = replace(request, tool_choice=app.tool_choice)  # the app's default
    call.agent = lambda stream_chat: run_loop(  # call.request: with memory, once attached
        call.request, stream_chat, tools, max_steps=app.max_steps, on_tool=on_tool
    )
    return steps
