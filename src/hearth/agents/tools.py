"""Tools an app may call: the built-ins (``calculator``, ``kb_search``, ``python``,
``http_get``) and the tools of MCP servers. A tool takes JSON arguments and answers text
for the model; a failure is text too (``error: ...``), so the model can recover."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx
import simpleeval  # type: ignore[import-untyped]

from hearth.agents.sandbox import Limits, Sandbox
from hearth.types import ToolSpec

BUILTIN = ("calculator", "kb_search", "python", "http_get")
RESULT_CHARS = 8000  # a tool's answer handed to the model, at most


class ToolFailed(Exception):
    """A tool could not do what it was asked; the message goes back to the model."""


class Tool(Protocol):
    spec: ToolSpec

    async def __call__(self, arguments: dict[str, Any]) -> str: ...


@dataclass
class Outcome:
    name: str
    arguments: str
    result: str
    ok: bool
    ms: float


async def invoke(tool: Tool, arguments: str) -> Outcome:
    """Run ``tool`` on ``arguments`` (JSON text); any failure becomes an ``error:`` text."""
    start = time.perf_counter()
    try:
        args = json.loads(arguments) if arguments.strip() else {}
        if not isinstance(args, dict):
            raise ToolFailed("the arguments must be a JSON object")
        result, ok = await tool(args), True
    except json.JSONDecodeError:
        result, ok = "error: the arguments are not valid JSON", False
    except ToolFailed as e:
        result, ok = f"error: {e}", False
    except Exception as e:  # noqa: BLE001 - a tool's own bug must not end the run
        result, ok = f"error: {type(e).__name__}: {e}", False
    if len(result) > RESULT_CHARS:
        result = result[:RESULT_CHARS] + f"\n… ({len(result) - RESULT_CHARS} more characters)"
    return Outcome(tool.spec.name, arguments, result, ok, (time.perf_counter() - start) * 1000)


def _need(args: dict[str, Any], key: str) -> str:
    value = args.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ToolFailed(f"'{key}' is required (a non-empty string)")
    return value


# -- calculator -----------------------------------------------------------------------------
_MATH_NAMES = "sqrt exp log log10 log2 sin cos tan asin acos atan floor ceil factorial pi e"
_MATH = {name: getattr(math, name) for name in _MATH_NAMES.split()}


class Calculator:
    spec = ToolSpec(
        "calculator",
        "Evaluate an arithmetic expression exactly, e.g. '(3 + 4) * 12 / 5' or "
        "'sqrt(2) ** 10'. Use it for any arithmetic instead of computing in your head.",
        {
            "type": "object",
            "properties": {"expression": {"type": "string", "description": "The expression"}},
            "required": ["expression"],
        },
    )

    def __init__(self) -> None:
        self._eval = simpleeval.SimpleEval(
            functions={**_MATH, "abs": abs, "round": round, "min": min, "max": max},
            names={"pi": _MATH["pi"], "e": _MATH["e"]},
        )

    async def __call__(self, arguments: dict[str, Any]) -> str:
        expression = _need(arguments, "expression").replace("^", "**").replace("×", "*")
        try:
            value = self._eval.eval(expression.replace("÷", "/"))
        except ZeroDivisionError:
            raise ToolFailed("division by zero") from None
        except (simpleeval.InvalidExpression, SyntaxError, TypeError, ValueError) as e:
            raise ToolFailed(f"cannot evaluate {expression!r}: {e}") from None
        except OverflowError:
            raise ToolFailed("the result is too large") from None
        if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
            value = int(value)
        return str(value)


# -- python ---------------------------------------------------------------------------------
class Python:
    spec = ToolSpec(
        "python",
        "Run a Python 3 program and get what it prints. Write the whole program; print the "
        "answer. No network and no files outside its working directory.",
        {
            "type": "object",
            "properties": {"code": {"type": "string", "description": "The program"}},
            "required": ["code"],
        },
    )

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox

    async def __call__(self, arguments: dict[str, Any]) -> str:
        code = _need(arguments, "code")
        return (await self.sandbox.run(_unfence(code))).for_model()


def _unfence(code: str) -> str:
    """Code sent inside a markdown fence, as small models do."""
    text = code.strip()
    if text.startswith("```"):
        text = text.split("\n", 1)[1] if "\n" in text else ""
        text = text.rsplit("```", 1)[0]
    return text


# -- http_get -------------------------------------------------------------------------------
class HttpGet:
    def __init__(self, allow: tuple[str, ...], *, max_bytes: int = 200_000, timeout: float = 10):
        self.allow = tuple(h.lower() for h in allow)
        self.max_bytes, self.timeout = max_bytes, timeout
        self.spec = ToolSpec(
            "http_get",
            "Fetch a web page or API by URL (GET) and get its text. Allowed hosts: "
            + ", ".join(self.allow),
            {
                "type": "object",
                "properties": {"url": {"type": "string", "description": "http(s) URL"}},
                "required": ["url"],
            },
        )

    def allowed(self, url: str) -> bool:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        port = f"{host}:{parts.port}" if parts.port else host
        return parts.scheme in ("http", "https") and (host in self.allow or port in self.allow)

    async def __call__(self, arguments: dict[str, Any]) -> str:
        url = _need(arguments, "url")
        if not self.allowed(url):
            raise ToolFailed(f"{url} is not allowed; allowed hosts: {', '.join(self.allow)}")
        async with httpx.AsyncClient(timeout=self.timeout, follow_redirects=False) as client:
            for _ in range(5):  # redirects, each checked against the allow-list
                try:
                    async with client.stream("GET", url) as resp:
                        if resp.is_redirect and "location" in resp.headers:
                            url = str(resp.url.join(resp.headers["location"]))
                            if not self.allowed(url):
                                raise ToolFailed(f"redirected to {url}, which is not allowed")
                            continue
                        body = bytearray()
                        async for chunk in resp.aiter_bytes():
                            body += chunk
                            if len(body) > self.max_bytes:
                                break
                        text = bytes(body[: self.max_bytes]).decode(
                            resp.encoding or "utf-8", "replace"
                        )
                        return f"HTTP {resp.status_code}\n{text}"
                except httpx.HTTPError as e:
                    raise ToolFailed(f"GET {url} failed: {type(e).__name__}: {e}") from None
            raise ToolFailed("too many redirects")


# -- kb_search ------------------------------------------------------------------------------
Search = Callable[[str, int], Awaitable[list[dict[str, Any]]]]


class KbSearch:
    def __init__(self, search: Search, kbs: tuple[str, ...], k: int = 4) -> None:
        self.search, self.k = search, k
        self.spec = ToolSpec(
            "kb_search",
            "Search the knowledge base(s) " + ", ".join(kbs) + " and get the best passages "
            "with their sources. Search before answering a question about them.",
            {
                "type": "object",
                "properties": {"query": {"type": "string", "description": "What to look for"}},
                "required": ["query"],
            },
        )

    async def __call__(self, arguments: dict[str, Any]) -> str:
        query = _need(arguments, "query")
        hits = await self.search(query, self.k)
        if not hits:
            return "no passages found"
        return "\n\n".join(f"[{i}] ({h['citation']})\n{h['text']}" for i, h in enumerate(hits, 1))


# -- MCP --------------------------------------------------------------------------------------
@dataclass
class McpTool:
    """One tool of an MCP server; each call opens a session (stdio: starts the server)."""

    server: str
    target: Any  # a URL or mcp.StdioServerParameters
    spec: ToolSpec
    remote_name: str = ""
    timeout: float = 30.0
    extra: dict[str, Any] = field(default_factory=dict)

    async def __call__(self, arguments: dict[str, Any]) -> str:
        from mcp import Client

        try:
            async with Client(self.target, read_timeout_seconds=self.timeout) as client:
                result = await client.call_tool(self.remote_name or self.spec.name, arguments)
        except Exception as e:
            raise ToolFailed(f"MCP server '{self.server}' failed: {type(e).__name__}: {e}") from e
        text = _mcp_text(result)
        if getattr(result, "is_error", False) or getattr(result, "isError", False):
            raise ToolFailed(text or "the tool reported an error")
        return text


def _mcp_text(result: Any) -> str:
    parts = []
    for block in getattr(result, "content", None) or []:
        text = getattr(block, "text", None)
        parts.append(text if isinstance(text, str) else json.dumps(_dump(block)))
    structured = getattr(result, "structured_content", None) or getattr(
        result, "structuredContent", None
    )
    if not parts and structured is not None:
        parts.append(json.dumps(structured, ensure_ascii=False))
    return "\n".join(parts)


def _dump(block: Any) -> Any:
    dump = getattr(block, "model_dump", None)
    return dump(mode="json") if dump else str(block)


async def mcp_tools(server: str, config: dict[str, Any]) -> list[McpTool]:
    """The tools an MCP server (``command``/``args``/``env`` for stdio, or ``url`` for
    streamable HTTP) offers, named ``<server>_<tool>`` unless ``prefix = false``."""
    from mcp import Client, StdioServerParameters

    target: Any
    if "url" in config:
        target = config["url"]
    else:
        command = config["command"]
        argv = command if isinstance(command, list) else [command]
        target = StdioServerParameters(
            command=argv[0], args=[*argv[1:], *config.get("args", [])], env=config.get("env")
        )
    timeout = float(config.get("timeout", 30))
    try:
        async with Client(target, read_timeout_seconds=timeout) as client:
            listed = await client.list_tools()
    except Exception as e:
        raise ToolFailed(f"MCP server '{server}' did not answer: {type(e).__name__}: {e}") from e
    prefix = f"{server}_" if config.get("prefix", True) else ""
    out = []
    for t in listed.tools:
        schema = getattr(t, "input_schema", None) or getattr(t, "inputSchema", None) or {}
        name = (prefix + t.name)[:64]
        spec = ToolSpec(name, t.description or "", dict(schema))
        out.append(McpTool(server, target, spec, t.name, timeout))
    return out


def sandbox_for(config: dict[str, Any] | None, hidden: tuple[Any, ...]) -> Sandbox:
    return Sandbox(Limits.from_config(config), hidden=hidden)
