"""Requests are checked against what the model and engine accept before they reach it:
each case here was once a 500 or was accepted silently."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from hearth.engines.json_schema import unenforced
from tests.conftest import LiveServer
from tests.server.helpers import assert_openai_error, chat_body


@pytest.fixture(scope="module")
def http(fake_server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fake_server.url, timeout=10) as client:
        yield client


def chat(http: httpx.Client, **body: Any) -> httpx.Response:
    return http.post("/v1/chat/completions", json={"model": "fake", **body})


def test_message_rules(http: httpx.Client) -> None:
    no_content = chat(http, messages=[{"role": "user"}])
    assert_openai_error(no_content, 400, "invalid_request", "messages.0.content")
    empty_end = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": None}]
    assert_openai_error(chat(http, messages=empty_end), 400, param="messages.1.content")
    blank_end = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": ""}]
    assert_openai_error(chat(http, messages=blank_end), 400, param="messages.1.content")
    tool = [{"role": "user", "content": "hi"}, {"role": "tool", "content": "42"}]
    assert_openai_error(chat(http, messages=tool), 400, param="messages.1.role")
    calls = [{"role": "assistant", "content": None, "tool_calls": [{"id": "1"}]}]
    assert_openai_error(chat(http, messages=calls), 400, param="messages.0.tool_calls.0.function")
    # a conversation may end with the assistant's text: the reply continues it
    prefill = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Well,"}]
    assert chat(http, messages=prefill).status_code == 200


def test_token_ids_must_be_in_the_vocabulary(http: httpx.Client) -> None:
    past = http.post("/detokenize", json={"model": "fake", "tokens": [1, 100_000]})
    error = assert_openai_error(past, 400, "invalid_request", "tokens")
    assert "100000" in error["message"] and "0-99999" in error["message"]
    assert_openai_error(http.post("/detokenize", json={"tokens": [-1]}), 400, param="tokens.0")
    ok = http.post("/detokenize", json={"model": "fake", "tokens": [99_999]})
    assert ok.status_code == 200


@pytest.mark.parametrize(
    ("bias", "param"),
    [
        ({"abc": 1}, "logit_bias.abc.[key]"),
        ({"-5": 1}, "logit_bias.-5.[key]"),
        ({"12": 101}, "logit_bias.12"),
        ({"12": -100.5}, "logit_bias.12"),
        ({"100000": 1}, "logit_bias"),
    ],
)
def test_logit_bias_is_checked(http: httpx.Client, bias: dict[str, Any], param: str) -> None:
    resp = chat(http, messages=chat_body()["messages"], logit_bias=bias)
    assert_openai_error(resp, 400, "invalid_request", param)


def test_logit_bias_in_range_is_taken(http: httpx.Client) -> None:
    resp = chat(http, messages=chat_body()["messages"], logit_bias={"12": -100, "99999": 100})
    assert resp.status_code == 200


@pytest.mark.parametrize(
    "schema",
    [{"type": "nope"}, {"type": "object", "required": "a"}, {"minLength": -1}, {"enum": 3}],
)
def test_a_response_schema_must_be_a_json_schema(
    http: httpx.Client, schema: dict[str, Any]
) -> None:
    fmt = {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}
    resp = chat(http, messages=chat_body()["messages"], response_format=fmt)
    error = assert_openai_error(resp, 400, "invalid_request")
    assert error["param"] == "response_format.json_schema.schema"
    assert "not a valid JSON Schema" in error["message"]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"seed": 2**70}, "seed"),
        ({"max_tokens": 2**40}, "max_tokens"),
        ({"stop": [""]}, "stop.0"),
        ({"stop": ""}, "stop"),
    ],
)
def test_values_past_what_engines_take(
    http: httpx.Client, body: dict[str, Any], param: str
) -> None:
    resp = chat(http, **({"messages": chat_body()["messages"]} | body))
    assert_openai_error(resp, 400, "invalid_request", param)


def test_text_must_be_valid_unicode(http: httpx.Client) -> None:
    raw = b'{"model": "fake", "messages": [{"role": "user", "content": "a\\ud800b"}]}'
    resp = http.post(
        "/v1/chat/completions", content=raw, headers={"content-type": "application/json"}
    )
    error = assert_openai_error(resp, 400, "invalid_request")
    assert "lone UTF-16 surrogate" in error["message"]
    assert "messages.0.content" in error["message"]
    paired = raw.replace(b"\\ud800", b"\\ud83d\\ude00")  # a pair is one character
    assert (
        http.post(
            "/v1/chat/completions", content=paired, headers={"content-type": "application/json"}
        ).status_code
        == 200
    )


def test_an_empty_completion_prompt_is_refused(http: httpx.Client) -> None:
    resp = http.post("/v1/completions", json={"model": "fake", "prompt": ""})
    assert_openai_error(resp, 400, "invalid_request", "prompt")


def test_openapi_documents_400_not_422(http: httpx.Client) -> None:
    document = http.get("/openapi.json").json()
    chat_op = document["paths"]["/v1/chat/completions"]["post"]
    assert "422" not in chat_op["responses"]
    assert {"400", "401", "404", "413", "429", "500"} <= set(chat_op["responses"])
    error = chat_op["responses"]["400"]["content"]["application/json"]["schema"]
    assert error == {"$ref": "#/components/schemas/ErrorResponse"}
    assert "HTTPValidationError" not in document["components"]["schemas"]
    stream = chat_op["responses"]["200"]["content"]["text/event-stream"]["schema"]
    assert stream["required"] == ["data"]
    body = document["components"]["schemas"]["ChatCompletionBody"]["properties"]
    assert body["temperature"]["anyOf"][0] == {"type": "number", "minimum": 0.0, "maximum": 2.0}


# -- the decoder's subset, unit by unit ----------------------------------------------------

ENFORCED = [
    {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]},
    {"type": "string", "pattern": "^[a-z]{2,5}(-[0-9]+)?$"},
    {"type": "integer", "minimum": 0, "maximum": 10},
    {"type": "string", "format": "date-time"},
    {"anyOf": [{"type": "string"}, {"type": "null"}], "title": "x", "default": None},
    {"$defs": {"C": {"enum": ["red", "blue"], "type": "string"}}, "$ref": "#/$defs/C"},
    {"type": "array", "items": {"type": "number"}, "minItems": 1, "maxItems": 3},
    {"type": "array", "prefixItems": [{"type": "string"}, {"type": "integer"}]},
    {},
]

UNENFORCED = [
    ({"type": "string", "format": "email"}, "format"),
    ({"type": "number", "minimum": 0}, "minimum"),
    ({"type": "integer", "multipleOf": 5}, "multipleOf"),
    ({"type": "array", "uniqueItems": True}, "uniqueItems"),
    ({"oneOf": [{"type": "string"}, {"type": "integer"}]}, "oneOf"),
    ({"allOf": [{"type": "integer"}, {"minimum": 3}]}, "allOf"),
    ({"not": {"type": "string"}}, "not"),
    ({"type": "string", "pattern": "[a-z]+"}, "pattern"),
    ({"type": "string", "pattern": "^\\d+$"}, "pattern"),
    ({"type": "string", "pattern": "^(?=a).*$"}, "pattern"),
    ({"type": "string", "pattern": "^a+?$"}, "pattern"),
    ({"type": "string", "pattern": "^[a-z]+$", "maxLength": 3}, "maxLength"),
    ({"type": "object", "properties": {}, "required": ["a"]}, "required"),
    ({"anyOf": [{"type": "string"}], "properties": {"a": {}}}, "properties"),
    ({"$ref": "https://example.com/s.json"}, "$ref"),
    ({"$ref": "#/$defs/Missing"}, "$ref"),
    ({"type": "object", "properties": {"a": True}}, "schema"),
    ({"type": "integer", "const": 3.5}, "const"),
    ({"enum": []}, "enum"),
    ({"type": ["string", "null"], "maxLength": 3}, "maxLength"),
    ({"type": "array", "prefixItems": [{}], "minItems": 2}, "minItems"),
    ({"type": "object", "properties": {"a": {"type": "array", "contains": {}}}}, "contains"),
]


@pytest.mark.parametrize("schema", ENFORCED)
def test_schemas_the_decoder_enforces(schema: dict[str, Any]) -> None:
    assert unenforced(schema) is None


@pytest.mark.parametrize(("schema", "keyword"), UNENFORCED)
def test_schemas_the_decoder_would_not_enforce(schema: dict[str, Any], keyword: str) -> None:
    problem = unenforced(schema)
    assert problem is not None and problem.keyword == keyword, problem
