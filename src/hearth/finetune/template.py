"""The one chat template: the GGUF's own, rendered for training as serving renders it.

Serving renders chats with llama.cpp (its Jinja engine over ``tokenizer.chat_template``);
training renders the same template text with Jinja2's sandbox, the way transformers'
``apply_chat_template`` does, and a test checks both give the same prompt. The template,
BOS and EOS come from the serving engine's ``/props``, so there is no second copy of the
format to drift (the template registry problem of other fine-tuning tools).

Loss masking: an assistant message's text is what ``render(messages[:i + 1])`` adds to
``render(messages[:i], add_generation_prompt=True)``; only those tokens are trained.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from jinja2 import TemplateError
from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

from hearth.errors import UserError


class TemplateProblem(UserError):
    pass


def _raise(message: str) -> None:
    raise TemplateProblem(f"the chat template refused the example: {message}")


@dataclass(frozen=True)
class ChatTemplate:
    source: str
    bos_token: str = ""
    eos_token: str = ""

    @property
    def sha256(self) -> str:
        return template_sha256(self.source)

    def render(self, messages: list[dict[str, str]], *, add_generation_prompt: bool) -> str:
        env = ImmutableSandboxedEnvironment(
            trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols]
        )
        env.filters["tojson"] = lambda v, indent=None, **_: json.dumps(
            v, ensure_ascii=False, indent=indent
        )
        env.globals["raise_exception"] = _raise
        env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
        try:
            return env.from_string(self.source).render(
                messages=messages,
                add_generation_prompt=add_generation_prompt,
                bos_token=self.bos_token,
                eos_token=self.eos_token,
                tools=None,
            )
        except TemplateProblem:
            raise
        except TemplateError as e:
            raise TemplateProblem(f"the model's chat template failed: {e}") from e

    def segments(self, messages: list[dict[str, str]]) -> list[tuple[str, bool]]:
        """The rendered chat as (text, trained) pieces: assistant answers are trained."""
        text = self.render(messages, add_generation_prompt=False)
        spans: list[tuple[int, int]] = []
        for i, m in enumerate(messages):
            if m["role"] != "assistant":
                continue
            before = self.render(messages[:i], add_generation_prompt=True)
            upto = self.render(messages[: i + 1], add_generation_prompt=False)
            if not upto.startswith(before) or not text.startswith(upto):
                raise TemplateProblem(
                    "the chat template does not render a chat as a prefix of its continuation, "
                    "so the answer tokens cannot be told apart for the loss"
                )
            spans.append((len(before), len(upto)))
        out: list[tuple[str, bool]] = []
        at = 0
        for start, end in spans:
            if start > at:
                out.append((text[at:start], False))
            out.append((text[start:end], True))
            at = end
        if at < len(text):
            out.append((text[at:], False))
        return out


def template_sha256(source: str) -> str:
    return hashlib.sha256(source.encode("utf-8")).hexdigest()


def from_props(props: dict[str, Any]) -> ChatTemplate:
    source = props.get("chat_template")
    if not isinstance(source, str) or not source.strip():
        raise UserError("the model has no chat template in its GGUF; training needs one")
    return ChatTemplate(
        source, str(props.get("bos_token") or ""), str(props.get("eos_token") or "")
    )
