"""The JSON Schema subset that llama.cpp's constrained decoder enforces on chat requests.

llama.cpp turns a ``response_format`` schema into a grammar (``common/json-schema-to-
grammar.cpp``). What it cannot express it mostly skips without a word: ``multipleOf``,
``uniqueItems``, ``not``, number bounds, unanchored patterns, ``\\d``, most formats ... and the
model's output then need not match the schema the client asked for. hearth fails closed
instead: :func:`unenforced` names the first keyword the grammar would not enforce, and the
request is refused with it before it reaches the engine.

Read from llama.cpp b11549 (the build inside xllamacpp 2026.10) and checked against it:
enforced are ``type``, ``enum``/``const``, ``properties``/``required``/``additionalProperties``
(objects with ``properties`` are closed unless ``additionalProperties`` opens them),
``items``/``prefixItems`` with ``minItems``/``maxItems``, ``minLength``/``maxLength``,
anchored ``pattern`` in a small regex dialect, the formats below, integer bounds,
``anyOf``, local ``$ref`` and ``$defs``.
"""

from __future__ import annotations

import re
from typing import Any

FORMATS = frozenset(
    {"date", "time", "date-time", "uuid", "uuid1", "uuid2", "uuid3", "uuid4", "uuid5"}
)
# Annotations: they describe, they do not constrain, so skipping them changes nothing.
ANNOTATIONS = frozenset(
    {
        "title",
        "description",
        "examples",
        "default",
        "$schema",
        "$id",
        "$comment",
        "readOnly",
        "writeOnly",
        "deprecated",
        "contentEncoding",
        "contentMediaType",
        "nullable",  # OpenAPI 3.0; without it null is refused, which is stricter, not looser
        "discriminator",
        "strict",
    }
)
ENFORCED = frozenset(
    {
        "type",
        "enum",
        "const",
        "properties",
        "required",
        "additionalProperties",
        "items",
        "prefixItems",
        "minItems",
        "maxItems",
        "minLength",
        "maxLength",
        "pattern",
        "format",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "anyOf",
        "$ref",
        "$defs",
        "definitions",
    }
)
_ADVICE = {
    "oneOf": "the grammar treats it as anyOf and cannot refuse a value that matches two "
    "branches; use anyOf",
    "allOf": "the grammar merges only object properties; write the combined schema out",
    "multipleOf": "list the allowed values with enum",
    "uniqueItems": "it cannot be expressed in a grammar",
    "patternProperties": "name the properties in properties",
}
_NUMERIC_BOUNDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")
_LENGTHS = ("minLength", "maxLength")
_SIZES = ("minItems", "maxItems")


class Unenforced(ValueError):
    """A keyword the decoder would not enforce; ``path`` is a JSON pointer into the schema."""

    def __init__(self, path: str, keyword: str, why: str) -> None:
        super().__init__(f"'{keyword}' at {path or '#'}: {why}")
        self.path = path
        self.keyword = keyword


def unenforced(schema: dict[str, Any]) -> Unenforced | None:
    """The first part of ``schema`` the decoder would not enforce, or None."""
    try:
        _check(schema, "#", schema)
    except Unenforced as e:
        return e
    return None


def _check(node: Any, path: str, root: dict[str, Any]) -> None:
    if not isinstance(node, dict):
        raise Unenforced(path, "schema", "a subschema must be an object, not true or false")
    keys = set(node) - ANNOTATIONS
    for key in sorted(keys - ENFORCED):
        why = _ADVICE.get(key, "the grammar does not enforce it")
        raise Unenforced(path, key, why)
    constraints = keys - {"$defs", "definitions"}
    for combinator in ("anyOf", "$ref"):
        if combinator in node and len(constraints) > 1:
            other = sorted(constraints - {combinator})[0]
            raise Unenforced(path, other, f"the grammar ignores keywords beside {combinator}")
    _check_values(node, path)
    _check_type(node, path, keys)
    if "$ref" in node:
        _check_ref(node["$ref"], path, root)
    for key in ("$defs", "definitions", "properties"):
        for name, sub in (node.get(key) or {}).items():
            _check(sub, f"{path}/{key}/{_pointer(name)}", root)
    if isinstance(node.get("additionalProperties"), dict):
        _check(node["additionalProperties"], f"{path}/additionalProperties", root)
    items = node.get("items")
    if isinstance(items, dict):
        _check(items, f"{path}/items", root)
    for key in ("prefixItems", "anyOf"):
        for i, sub in enumerate(node.get(key) or []):
            _check(sub, f"{path}/{key}/{i}", root)
    if isinstance(items, list):
        for i, sub in enumerate(items):
            _check(sub, f"{path}/items/{i}", root)


def _check_values(node: dict[str, Any], path: str) -> None:
    """``enum`` and ``const`` replace the whole subschema in the grammar, so nothing may sit
    beside them that one of their values would break."""
    if node.get("enum") == []:
        raise Unenforced(path, "enum", "an empty enum matches nothing")
    if ("enum" in node or "const" in node) and len(set(node) & ENFORCED) > 1:
        import jsonschema

        rest = {k: v for k, v in node.items() if k not in ("enum", "const")}
        values = node.get("enum") or [node.get("const")]
        for value in values:
            if not jsonschema.Draft202012Validator(rest).is_valid(value):
                key = "enum" if "enum" in node else "const"
                raise Unenforced(
                    path, key, f"{value!r} breaks the keywords beside it, which the grammar skips"
                )


def _check_type(node: dict[str, Any], path: str, keys: set[str]) -> None:
    kind = node.get("type")
    if isinstance(kind, list) and len(kind) > 1:
        extra = sorted(keys - {"type", "enum", "const"})
        if extra:
            raise Unenforced(
                path, extra[0], "beside a list of types it is not enforced; use anyOf instead"
            )
    for key in _NUMERIC_BOUNDS:
        if key in node and kind != "integer":
            raise Unenforced(path, key, 'bounds are enforced only with "type": "integer"')
    if ("minimum" in node and "exclusiveMinimum" in node) or (
        "maximum" in node and "exclusiveMaximum" in node
    ):
        raise Unenforced(path, "exclusiveMinimum", "give one lower and one upper bound")
    fmt = node.get("format")
    if fmt is not None and fmt not in FORMATS:
        raise Unenforced(
            path, "format", f"format {fmt!r} is not enforced (only {', '.join(sorted(FORMATS))})"
        )
    if "pattern" in node:
        if "format" in node:
            raise Unenforced(path, "format", "beside pattern it is skipped")
        _check_pattern(node["pattern"], path)
    if ("pattern" in node or "format" in node) and any(k in node for k in _LENGTHS):
        raise Unenforced(path, "maxLength", "beside a pattern or format lengths are skipped")
    tuple_items = "prefixItems" in node or isinstance(node.get("items"), list)
    if "prefixItems" in node and "items" in node:
        raise Unenforced(path, "prefixItems", "beside items it is skipped")
    if tuple_items and any(k in node for k in _SIZES):
        raise Unenforced(path, "minItems", "a tuple's length is its items; sizes are skipped")
    required = node.get("required") or []
    props = node.get("properties") or {}
    missing = [r for r in required if r not in props]
    if missing:
        raise Unenforced(
            path, "required", f"{missing[0]!r} is required but not in properties; describe it"
        )


def _check_ref(ref: Any, path: str, root: dict[str, Any]) -> None:
    if not isinstance(ref, str) or not ref.startswith("#/") or "~" in ref:
        raise Unenforced(
            path, "$ref", f"only references into this schema such as '#/$defs/Name' ({ref!r})"
        )
    target: Any = root
    for part in ref[2:].split("/"):
        if not isinstance(target, dict) or part not in target:
            raise Unenforced(path, "$ref", f"{ref} does not point at anything in the schema")
        target = target[part]


# The regex dialect the grammar builder reads: literals, '.', classes, groups and (?:...),
# alternation, the greedy quantifiers, and escapes of metacharacters and \n \r \t \xHH \uHHHH.
_ESCAPE_OUTSIDE = set('nrt\\"[]-^$.()|{}*+?')
_ESCAPE_INSIDE = set('nrt\\"[]-')
_HEX = {"x": 2, "u": 4, "U": 8}
_QUANTIFIER = re.compile(r"\{\d+(,\d*)?\}")


def _check_pattern(pattern: Any, path: str) -> None:
    if not isinstance(pattern, str) or len(pattern) < 2:
        raise Unenforced(path, "pattern", "a pattern must be a string anchored with ^ and $")
    if not (pattern.startswith("^") and pattern.endswith("$") and not pattern.endswith("\\$")):
        raise Unenforced(path, "pattern", "only patterns anchored with ^ and $ are enforced")
    body = pattern[1:-1]
    i = 0
    in_class = False
    previous_quantifier = False
    while i < len(body):
        c = body[i]
        quantifier = False
        if c == "\\":
            i = _skip_escape(body, i, in_class, path)
            previous_quantifier = False
            continue
        if in_class:
            in_class = c != "]"
        elif c == "[":
            in_class = True
        elif c == "(" and body.startswith("(?", i) and not body.startswith("(?:", i):
            raise Unenforced(path, "pattern", "look-arounds and named groups are not enforced")
        elif c in "^$":
            raise Unenforced(path, "pattern", "^ and $ are enforced only at the ends")
        elif c in "*+?" or (c == "{" and _QUANTIFIER.match(body, i)):
            if previous_quantifier and c == "?":
                raise Unenforced(path, "pattern", "lazy quantifiers (+?, *?) are not enforced")
            quantifier = True
            if c == "{":
                match = _QUANTIFIER.match(body, i)
                assert match is not None
                i = match.end() - 1
        previous_quantifier = quantifier
        i += 1


def _skip_escape(body: str, i: int, in_class: bool, path: str) -> int:
    if i + 1 >= len(body):
        raise Unenforced(path, "pattern", "it ends with a backslash")
    c = body[i + 1]
    if c in _HEX:
        digits = body[i + 2 : i + 2 + _HEX[c]]
        if len(digits) != _HEX[c] or not all(d in "0123456789abcdefABCDEF" for d in digits):
            raise Unenforced(path, "pattern", f"\\{c} needs {_HEX[c]} hex digits")
        return i + 2 + _HEX[c]
    allowed = _ESCAPE_INSIDE if in_class else _ESCAPE_OUTSIDE
    if c not in allowed:
        hint = {"d": "[0-9]", "w": "[a-zA-Z0-9_]", "s": "[ \\t\\n\\r]"}.get(c.lower(), "")
        instead = f"; write {hint} instead" if hint and c.islower() else ""
        raise Unenforced(path, "pattern", f"the escape \\{c} is not enforced{instead}")
    return i + 2


def _pointer(name: str) -> str:
    return name.replace("~", "~0").replace("/", "~1")
