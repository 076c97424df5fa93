"""The JSON Schema of an app file: what ``hearth apps validate`` and ``PUT /v1/apps/{name}``
check first, and what ``hearth apps schema`` prints for editors (yaml-language-server)."""

from __future__ import annotations

from typing import Any

NAME_PATTERN = r"^[A-Za-z0-9\u4e00-\u9fff][\w.\-\u4e00-\u9fff]{0,99}$"
ACTIONS = ["block", "mask", "review"]
INPUT_TYPES = ["string", "integer", "number", "boolean", "array", "object"]

_TEMPLATE = {"type": "string", "description": "A Jinja2 template (sandboxed)"}

_SAMPLING = {
    "type": "object",
    "description": "Defaults for this variant; a request's own values win",
    "additionalProperties": False,
    "properties": {
        "temperature": {"type": "number", "minimum": 0, "maximum": 2},
        "top_p": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
        "max_tokens": {"type": "integer", "minimum": 1},
        "seed": {"type": "integer"},
        "stop": {"type": "array", "items": {"type": "string", "minLength": 1}, "maxItems": 4},
        "presence_penalty": {"type": "number", "minimum": -2, "maximum": 2},
        "frequency_penalty": {"type": "number", "minimum": -2, "maximum": 2},
        "repeat_penalty": {"type": "number", "exclusiveMinimum": 0, "maximum": 10},
    },
}

_VARIANT = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "model": {"type": "string", "minLength": 1, "description": "The model this runs on"},
        "system": _TEMPLATE,
        "user": _TEMPLATE,
        "sampling": _SAMPLING,
    },
}

_INPUT = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "type": {"enum": INPUT_TYPES},
        "required": {"type": "boolean"},
        "default": {},
        "description": {"type": "string"},
        "enum": {"type": "array", "minItems": 1},
    },
}

_WORD = {
    "oneOf": [
        {"type": "string", "minLength": 1},
        {
            "type": "object",
            "additionalProperties": False,
            "required": ["word"],
            "properties": {
                "word": {"type": "string", "minLength": 1},
                "category": {"type": "string"},
                "action": {"enum": ACTIONS},
            },
        },
    ]
}

_ASSERT = {
    "type": "object",
    "additionalProperties": False,
    "required": ["type"],
    "properties": {
        "type": {
            "enum": [
                "schema",
                "contains",
                "not-contains",
                "icontains",
                "equals",
                "regex",
                "not-regex",
                "is-json",
                "max-length",
                "not-moderated",
            ]
        },
        "value": {},
    },
}

_KNOWLEDGE = {
    "type": "object",
    "additionalProperties": False,
    "required": ["kb"],
    "properties": {
        "kb": {
            "oneOf": [
                {"type": "string", "minLength": 1},
                {"type": "array", "items": {"type": "string"}, "minItems": 1},
            ]
        },
        "k": {"type": "integer", "minimum": 1, "maximum": 50},
        "query": _TEMPLATE,
        "mode": {"enum": ["hybrid", "vector", "keyword"]},
        "gate": {
            "type": "boolean",
            "description": "Retrieve nothing for small talk (default false: an app's "
            "query always retrieves)",
        },
        "max_tokens": {
            "type": "integer",
            "minimum": 1,
            "description": "Most tokens the chunks may take (default: what fits)",
        },
    },
}

_OUTPUT = {
    "type": "object",
    "additionalProperties": False,
    "required": ["schema"],
    "properties": {
        "schema": {
            "oneOf": [
                {"type": "object"},
                {"type": "string", "description": "A JSON file, relative to the app"},
            ]
        },
        "retries": {"type": "integer", "minimum": 0, "maximum": 10},
    },
}

MEMORY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "What a conversation remembers: one of turns, tokens, summary or none",
    "minProperties": 1,
    "maxProperties": 1,
    "additionalProperties": False,
    "properties": {
        "turns": {"type": "integer", "minimum": 0, "description": "The last N turns"},
        "tokens": {
            "type": "integer",
            "minimum": 1,
            "description": "The newest whole turns within N tokens (the model's tokenizer)",
        },
        "summary": {
            "type": "object",
            "additionalProperties": False,
            "description": "Older turns folded into a running summary",
            "properties": {
                "model": {"type": "string", "minLength": 1},
                "max_tokens": {"type": "integer", "minimum": 1},
                "turns": {"type": "integer", "minimum": 0, "description": "Kept verbatim"},
            },
        },
        "none": {"const": True},
    },
}

STEP_ID = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"

_STEP = {
    "type": "object",
    "additionalProperties": False,
    "required": ["id"],
    "properties": {
        "id": {"type": "string", "pattern": STEP_ID, "description": "Read as {{ steps.ID }}"},
        "model": {"type": "string", "minLength": 1},
        "system": _TEMPLATE,
        "prompt": _TEMPLATE,
        "render": {
            "type": "string",
            "description": "A template whose text is the step's output, without a model call",
        },
        "needs": {"type": "array", "items": {"type": "string", "pattern": STEP_ID}},
        "sampling": _SAMPLING,
        "knowledge": _KNOWLEDGE,
        "output": _OUTPUT,
    },
}

_OPTIONS = {"type": ["object", "null"]}
TOOLS_SCHEMA = {
    "type": "array",
    "description": "What the model may call: built-in tools and MCP servers' tools",
    "items": {
        "oneOf": [
            {"enum": ["calculator", "kb_search", "python", "http_get"]},
            {
                "type": "object",
                "minProperties": 1,
                "maxProperties": 1,
                "additionalProperties": False,
                "properties": {
                    "calculator": _OPTIONS,
                    "kb_search": {
                        "type": ["object", "null"],
                        "additionalProperties": False,
                        "properties": {"k": {"type": "integer", "minimum": 1, "maximum": 20}},
                    },
                    "python": {
                        "type": ["object", "null"],
                        "additionalProperties": False,
                        "properties": {
                            "cpu_seconds": {"type": "integer", "minimum": 1, "maximum": 60},
                            "wall_seconds": {"type": "number", "exclusiveMinimum": 0},
                            "memory_mb": {"type": "integer", "minimum": 32},
                            "output_bytes": {"type": "integer", "minimum": 100},
                            "file_mb": {"type": "integer", "minimum": 1},
                            "processes": {"type": "integer", "minimum": 1},
                        },
                    },
                    "http_get": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["allow"],
                        "properties": {
                            "allow": {
                                "type": "array",
                                "minItems": 1,
                                "items": {"type": "string", "minLength": 1},
                                "description": "Hosts (or host:port) it may fetch from",
                            },
                            "max_bytes": {"type": "integer", "minimum": 1},
                            "timeout": {"type": "number", "exclusiveMinimum": 0},
                        },
                    },
                    "mcp": {
                        "type": "string",
                        "minLength": 1,
                        "description": "An MCP server named under [mcp.NAME] in config.toml",
                    },
                },
            },
        ]
    },
}

APP_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://hearth.dev/schemas/app.json",
    "title": "hearth app",
    "description": "One business scenario: prompts per model, inputs, knowledge, moderation, "
    "output schema and tests",
    "type": "object",
    "additionalProperties": False,
    "required": ["app"],
    "properties": {
        "app": {"type": "string", "pattern": NAME_PATTERN, "description": "Served as this model"},
        "description": {"type": "string"},
        "inputs": {"type": "object", "additionalProperties": _INPUT},
        "variants": {
            "type": "object",
            "minProperties": 1,
            "description": "'default' and one entry per model that needs its own prompt",
            "additionalProperties": _VARIANT,
        },
        "knowledge": _KNOWLEDGE,
        "moderation": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "lists": {"type": "array", "items": {"type": "string", "minLength": 1}},
                "words": {"type": "array", "items": _WORD},
                "input": {"enum": ACTIONS},
                "output": {"enum": ACTIONS},
                "reply": {
                    "type": "string",
                    "description": "Answer this instead of an error when input is blocked",
                },
            },
        },
        "output": _OUTPUT,
        "memory": MEMORY_SCHEMA,
        "tools": TOOLS_SCHEMA,
        "tool_choice": {
            "enum": ["auto", "required"],
            "description": "Whether the first model turn must call a tool (tools: only)",
        },
        "max_steps": {
            "type": "integer",
            "minimum": 1,
            "maximum": 20,
            "description": "Model turns an agent run may take (tools: only)",
        },
        "steps": {
            "type": "array",
            "minItems": 1,
            "description": "A chain: steps run in dependency order; the last one answers",
            "items": _STEP,
        },
        "tests": {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "name": {"type": "string"},
                    "vars": {"type": "object"},
                    "input": {"type": "string"},
                    "assert": {"type": "array", "items": _ASSERT},
                },
            },
        },
    },
}
