"""Agent apps over HTTP: the app's tool loop with this server's knowledge bases, home and
MCP servers; each tool call recorded in the call log under the run's id."""

from __future__ import annotations

import asyncio
from typing import Any

from hearth.apps.agent import attach_agent
from hearth.apps.run import AppCall
from hearth.server.services import Services
from hearth.storage.calllog import ToolRecord
from hearth.storage.conversations import new_id


async def make_agent(svc: Services, call: AppCall, run_id: str) -> list[dict[str, Any]]:
    async def record(rec: ToolRecord) -> None:
        await asyncio.to_thread(svc.calllog.record_tool, rec)

    return await attach_agent(
        call,
        run_id,
        kb=lambda: svc.kb,
        home=svc.settings.home,
        mcp=svc.settings.mcp,
        record=record,
    )


def run_id() -> str:
    return new_id("run")


async def agent_run(svc: Services, call: AppCall) -> tuple[str, list[dict[str, Any]]] | None:
    """The run id and tools of an agent app's call, its tool loop attached; None when the
    app has no tools or the call is answered without the model (refused, canned)."""
    if not call.app.tools or call.refusal is not None or call.canned is not None:
        return None
    rid = run_id()
    return rid, await make_agent(svc, call, rid)
