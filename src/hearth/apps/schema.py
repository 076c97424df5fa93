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

APP_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://hearth.dev/schemas/app.json",
    "title": "hearth app",
    "description": "One business scenario: prompts per model, inputs, knowledge, moderation, "
    "output schema and tests",
    "type": "object",
    "additionalProperties": False,
    "required": ["app", "variants"],
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
        "knowledge": {
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
        },
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
        "output": {
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
