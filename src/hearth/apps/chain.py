"""Running a chain: the app's steps in dependency order, independent ones at the same time,
each step's output handed to the templates of the steps that read it.

Model steps run through a ``StepRunner`` the caller gives (the server's logs each as a call
tied to the run's id); template steps render here. A step that fails stops the run: the
others still running are cancelled and the error names the step.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from hearth.apps.run import check_variables
from hearth.apps.spec import App
from hearth.apps.steps import Step, layers
from hearth.errors import HearthError
from hearth.types import Usage


def new_run_id() -> str:
    return f"run_{secrets.token_hex(12)}"


@dataclass
class StepResult:
    id: str
    text: str
    value: Any = None  # the parsed document with an output schema, else the text
    model: str | None = None
    usage: Usage = field(default_factory=Usage)
    latency_ms: float = 0.0
    call_id: str | None = None
    finish_reason: str | None = "stop"

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "model": self.model,
            "output": self.value,
            "text": self.text,
            "finish_reason": self.finish_reason,
            "call_id": self.call_id,
            "latency_ms": round(self.latency_ms, 1),
            "usage": {
                "prompt_tokens": self.usage.prompt_tokens,
                "completion_tokens": self.usage.completion_tokens,
                "total_tokens": self.usage.total_tokens,
            },
        }


@dataclass
class Chain:
    """One run of an app's steps: the checked variables, the input, the results so far."""

    app: App
    variables: dict[str, Any]  # as checked against the app's inputs
    input: str
    id: str = field(default_factory=new_run_id)
    results: dict[str, StepResult] = field(default_factory=dict)

    @classmethod
    def start(cls, app: App, variables: dict[str, Any] | None, input: str) -> Chain:
        return cls(app, check_variables(app, variables), input)

    @property
    def final(self) -> Step:
        return self.app.steps[-1]

    def extra(self) -> dict[str, Any]:
        """What a model step's templates read besides the app's variables."""
        return {
            "inputs": dict(self.variables),
            "steps": {k: r.value for k, r in self.results.items()},
        }

    def values(self, model: str | None) -> dict[str, Any]:
        """Everything a template step reads."""
        return (
            self.variables
            | self.extra()
            | {
                "input": self.input,
                "app": self.app.name,
                "model": model or "",
                "context": "",
                "sources": [],
            }
        )

    def usage(self) -> Usage:
        return Usage(
            sum(r.usage.prompt_tokens for r in self.results.values()),
            sum(r.usage.completion_tokens for r in self.results.values()),
        )


StepRunner = Callable[[Chain, Step], Awaitable[StepResult]]
OnStep = Callable[[str, Step, StepResult | None], Awaitable[None]]


async def _nothing(event: str, step: Step, result: StepResult | None) -> None:
    return None


def render_step(chain: Chain, step: Step) -> StepResult:
    assert step.templates is not None and step.render is not None
    start = time.perf_counter()
    text = step.templates.render(step.render, chain.values(None))
    return StepResult(step.id, text, text, latency_ms=(time.perf_counter() - start) * 1000)


async def run_steps(
    chain: Chain,
    run_model_step: StepRunner,
    *,
    final: bool = True,
    on_step: OnStep = _nothing,
) -> Chain:
    """Run the chain's steps (without the last one when ``final`` is false: the caller then
    streams it). ``on_step("started"|"completed", step, result)`` reports progress."""
    steps = chain.app.steps if final else chain.app.steps[:-1]
    for layer in layers(steps):
        tasks = [asyncio.ensure_future(_one(chain, s, run_model_step, on_step)) for s in layer]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        for t in tasks:
            error = None if t.cancelled() else t.exception()
            if error is not None:
                raise error
        for t in tasks:
            result = t.result()
            chain.results[result.id] = result
    return chain


async def _one(chain: Chain, step: Step, run_model_step: StepRunner, on_step: OnStep) -> StepResult:
    await on_step("started", step, None)
    try:
        result = render_step(chain, step) if step.app is None else await run_model_step(chain, step)
    except HearthError as e:
        raise step_failed(e, step) from None
    await on_step("completed", step, result)
    return result


def step_failed(error: HearthError, step: Step) -> HearthError:
    """The same error (status, code), its message naming the step."""
    if not error.message.startswith("step '"):
        error.message = f"step '{step.id}' failed: {error.message}"
        error.args = (error.message,)
    error.param = error.param or f"steps.{step.id}"
    return error
