# ruff: noqa: E501
"""The app file: the issue's example parses; every problem names its field and line; the
template sandbox holds; variants resolve per model; variables are checked."""

from __future__ import annotations

from pathlib import Path

import pytest

from hearth.apps.run import check_variables, split_model
from hearth.apps.source import AppInvalid
from hearth.apps.spec import parse_app
from hearth.apps.store import AppNotFound, AppStore
from hearth.apps.templates import TemplateProblem
from hearth.errors import UserError

EXAMPLE = """\
app: review-reply                 # served as model "review-reply"
description: 回复商业点评
inputs:                           # template variables; required ones are checked
  shop: {type: string, required: true}
  tone: {type: string, default: 礼貌}
variants:                         # business × model: the prompt for each model
  default:                        # used for any model without its own variant
    model: qwen2.5-0.5b-instruct
    system: 你是{{ shop }}的客服 …
    user: "{{ input }}"           # the caller's last user message
    sampling: {temperature: 0.3}
  smollm2-135m-instruct:
    system: You reply to reviews for {{ shop }} …
knowledge: {kb: shop-faq, k: 4, query: "{{ input }}"}   # chunks reach templates as {{ context }}
moderation: {lists: [politics, ads], input: block, output: mask}
output: {schema: {type: object, properties: {reply: {type: string}, sentiment: {enum: [正面, 中性, 负面]}}, required: [reply, sentiment]}}
tests:                            # `hearth apps test`: every case against every variant
  - vars: {shop: 小面馆}
    input: 面太咸了
    assert: [{type: schema}, {type: not-contains, value: "http"}]
"""


def problems(text: str) -> list[str]:
    with pytest.raises(AppInvalid) as e:
        parse_app(text)
    return [str(p) for p in e.value.problems]


def test_the_documented_example_parses_with_every_field() -> None:
    app = parse_app(EXAMPLE)
    assert app.name == "review-reply" and app.description == "回复商业点评"
    assert app.inputs["shop"].required and app.inputs["tone"].default == "礼貌"
    assert app.knowledge is not None and app.knowledge.kbs == ("shop-faq",)
    assert app.knowledge.k == 4
    assert app.moderation is not None and app.moderation.lists == ("politics", "ads")
    assert (app.moderation.input, app.moderation.output) == ("block", "mask")
    assert app.output is not None and app.output.retries == 2
    assert app.output.schema["required"] == ["reply", "sentiment"]
    assert app.tests[0].vars == {"shop": "小面馆"} and app.tests[0].input == "面太咸了"
    assert [a.type for a in app.tests[0].asserts] == ["schema", "not-contains"]
    assert app.models() == ["qwen2.5-0.5b-instruct", "smollm2-135m-instruct"]


def test_variants_resolve_per_model_over_the_default() -> None:
    app = parse_app(EXAMPLE)
    default = app.variant(None)
    assert (default.name, default.model) == ("default", "qwen2.5-0.5b-instruct")
    small = app.variant("smollm2-135m-instruct")
    assert small.name == "smollm2-135m-instruct" and small.model == "smollm2-135m-instruct"
    assert small.system == "variants.smollm2-135m-instruct.system"
    assert small.user == "variants.default.user"  # inherited
    assert small.sampling == {"temperature": 0.3}  # inherited
    other = app.variant("gpt-4o")
    assert (other.name, other.model) == ("default", "gpt-4o")
    assert app.version(default) != app.version(small)
    assert app.version(default) == app.version(other)  # same prompt, same version
    edited = parse_app(EXAMPLE.replace("的客服 …", "的金牌客服 …"))
    assert edited.version(edited.variant(None)) != app.version(default)
    assert split_model("review-reply@smollm2-135m-instruct") == (
        "review-reply",
        "smollm2-135m-instruct",
    )
    assert split_model("review-reply") == ("review-reply", None)


def test_an_alias_variant_names_its_model() -> None:
    app = parse_app(
        "app: a\nvariants:\n  default: {system: hi}\n  big: {model: gpt-4o, system: hello}\n"
    )
    assert app.variant("big").model == "gpt-4o" and app.variant("big").name == "big"
    assert app.variant(None).model is None  # the server's default model


def test_undefined_variable_is_named_with_its_line_in_the_file() -> None:
    text = EXAMPLE.replace(
        "    system: You reply to reviews for {{ shop }} …",
        "    system: |\n      You reply to reviews for {{ shop }}\n      in a {{ tonee }} tone.",
    )
    (message,) = problems(text)
    assert "line 15" in message and "tonee" in message
    assert "variants.smollm2-135m-instruct.system" in message
    assert "shop, tone" in message  # what is declared


def test_schema_problems_come_with_lines_and_fields() -> None:
    found = problems(EXAMPLE.replace("k: 4", "k: 0").replace("input: block", "input: blok"))
    assert any("line 14" in p and "knowledge.k" in p for p in found), found
    assert any("line 15" in p and "moderation.input" in p and "blok" in p for p in found)
    assert any("additional" in p.lower() for p in problems(EXAMPLE + "colour: red\n"))
    assert any("'variants' is a required" in p for p in problems("app: x\n"))
    assert any("app" in p for p in problems("app: 'a/b'\nvariants: {default: {}}\n"))


def test_yaml_syntax_error_names_the_line() -> None:
    (message,) = problems("app: x\nvariants:\n  default: {system: [unclosed\n")
    assert "not valid YAML" in message and "line" in message
    (top,) = problems("- just\n- a list\n")
    assert "mapping" in top


def test_template_syntax_error_names_template_and_line() -> None:
    (message,) = problems("app: x\nvariants:\n  default:\n    system: 'hello {{ shop }'\n")
    assert "variants.default.system" in message and "line 4" in message


def test_unenforceable_output_schema_is_rejected_naming_the_keyword() -> None:
    text = EXAMPLE.replace("reply: {type: string}", "reply: {type: string, format: email}")
    (message,) = problems(text)
    assert "output.schema" in message and "format" in message
    bad = EXAMPLE.replace("required: [reply, sentiment]", "required: 3")
    assert any("not a valid JSON Schema" in p for p in problems(bad))


def test_context_without_knowledge_and_builtin_names_are_refused() -> None:
    (message,) = problems("app: x\nvariants:\n  default: {system: '{{ context }}'}\n")
    assert "knowledge" in message
    found = problems("app: x\ninputs: {input: {type: string}}\nvariants: {default: {}}\n")
    assert any("inputs.input" in p for p in found)


def test_the_sandbox_refuses_python_internals() -> None:
    app = parse_app(
        "app: x\ninputs: {shop: {}}\nvariants:\n  default:\n"
        '    system: "{{ shop.__class__.__mro__ }}"\n'
    )
    with pytest.raises(TemplateProblem) as e:
        app.templates.render("variants.default.system", {"shop": "a"})
    assert "not allowed" in e.value.message and "line 1" in e.value.message


def test_variables_are_checked_against_inputs() -> None:
    app = parse_app(
        EXAMPLE.replace("tone: {type: string, default: 礼貌}", "stars: {type: integer, default: 5}")
    )
    assert check_variables(app, {"shop": "小面馆"}) == {"shop": "小面馆", "stars": 5}
    for given, param in (
        ({}, "variables.shop"),
        ({"shop": "x", "stars": "five"}, "variables.stars"),
        ({"shop": "x", "colour": "red"}, "variables.colour"),
    ):
        with pytest.raises(UserError) as e:
            check_variables(app, given)
        assert e.value.param == param, e.value.message


def test_store_rereads_changed_files_and_survives_broken_ones(tmp_path: Path) -> None:
    store = AppStore(tmp_path)
    assert store.names() == []
    (tmp_path / "a.yaml").write_text("app: a\nvariants: {default: {system: one}}\n")
    assert store.get("a").templates.sources["variants.default.system"] == "one"
    (tmp_path / "a.yaml").write_text("app: a\nvariants: {default: {system: two, user: hi}}\n")
    assert store.get("a").templates.sources["variants.default.system"] == "two"
    (tmp_path / "b.yaml").write_text("app: b\nvariants: [oops]\n")
    assert store.names() == ["a"] and "b.yaml" in store.broken()
    app, created = store.put("app: c\nvariants: {default: {}}\n", name="c")
    assert created and app.path == tmp_path / "c.yaml"
    with pytest.raises(UserError):
        store.put("app: d\nvariants: {default: {}}\n", name="c")
    store.delete("a")
    with pytest.raises(AppNotFound):
        store.get("a")
    assert not list(tmp_path.glob(".*.tmp"))


def test_a_schema_file_outside_the_apps_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "secret.json").write_text('{"type": "object"}')
    apps = tmp_path / "apps"
    apps.mkdir()
    text = "app: x\nvariants: {default: {}}\noutput: {schema: ../secret.json}\n"
    with pytest.raises(AppInvalid) as e:
        parse_app(text, base=apps)
    assert "folder" in e.value.message
    (apps / "ok.json").write_text('{"type": "object"}')
    assert parse_app(text.replace("../secret.json", "ok.json"), base=apps).output is not None
