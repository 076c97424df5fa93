"""schemathesis over every operation of hearth's own /openapi.json, against a real server on
127.0.0.1 with API keys on (an admin key sent with every call).

Each case is generated from the document, positive and negative, and three checks must
hold: no 5xx, every status documented for its operation, every body matching its schema.
Generated values that name things are pointed at things that exist half of the time (a
served model, the knowledge base and document made for the run), so the cases reach the
engine and the store instead of stopping at "not found".

Two seeds run: a fixed one, and a random one printed with any failure so that it can be
replayed with HEARTH_FUZZ_SEED=<seed>.
"""

from __future__ import annotations

import hashlib
import os
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import schemathesis
from hypothesis import HealthCheck, seed, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    response_schema_conformance,
    status_code_conformance,
)

from hearth.config import Settings
from hearth.server import create_app
from hearth.storage.calllog import open_calllog
from hearth.storage.keys import KeyStore
from tests.conftest import LiveServer, serve

CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance]
FIXED_SEED = 20261202
RANDOM_SEED = int(os.environ.get("HEARTH_FUZZ_SEED") or random.SystemRandom().randrange(2**32))
KB = "fuzzkb"
DOCUMENT = "guide.md"
DOC_TEXT = "# 年假\n\n员工每年有 15 天年假。\n\n# Remote work\n\nTwo days a week from home.\n"


def schema() -> Any:
    """The document the server serves, loaded without a server (it does not depend on
    settings), positive and negative cases."""
    config = schemathesis.Config()
    config.projects.default.generation.update(
        modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE]
    )
    document = create_app(Settings(home=Path("/nonexistent"))).openapi()
    return schemathesis.openapi.from_dict(document, config=config)


def fuzz_settings(max_examples: int) -> Any:
    return settings(
        max_examples=max_examples,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow],
    )


@dataclass
class Target:
    live: LiveServer
    key: str
    chat: tuple[str, ...]  # served chat models the cases are pointed at
    embed: tuple[str, ...]  # and embedding models, for /v1/embeddings
    max_tokens: int | None = None  # cap on generation, to keep a real model's cases quick

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


def start(
    settings_: Settings, chat: tuple[str, ...], embed: tuple[str, ...], **kw: Any
) -> Iterator[Target]:
    """A server with one admin key, a knowledge base and a document in it."""
    log = open_calllog(settings_.db_url)
    _, key = KeyStore(log.db).create("fuzz", admin=True)
    log.close()
    with serve(settings_) as live:
        headers = {"Authorization": f"Bearer {key}"}
        created = httpx.post(live.base_url + "/knowledge_bases", json={"name": KB}, headers=headers)
        assert created.status_code == 201, created.text
        files = {"files": (DOCUMENT, DOC_TEXT.encode(), "text/markdown")}
        url = f"{live.base_url}/knowledge_bases/{KB}/documents"
        added = httpx.post(url, files=files, headers=headers, timeout=300)
        assert added.status_code == 200 and added.json()["added"] == [DOCUMENT], added.text
        yield Target(live, key, chat, embed, **kw)


def _pick(value: Any, real: str, salt: str) -> Any:
    """The real name half of the time, chosen by the value itself so a seed replays."""
    digest = hashlib.blake2b(f"{salt}:{value!r}".encode(), digest_size=1).digest()[0]
    return real if digest % 2 == 0 else value


def aim(case: Any, target: Target) -> None:
    """Point names in a generated case at things that exist (half of the time)."""
    body = case.body if isinstance(case.body, dict) else None
    if body is not None and isinstance(body.get("model"), str):
        models = target.embed if case.path == "/v1/embeddings" else target.chat
        model = models[len(body["model"]) % len(models)]
        body["model"] = _pick(body["model"], model, "model")
    if body is not None and target.max_tokens is not None:
        for field in ("max_tokens", "max_completion_tokens", "max_output_tokens"):
            if isinstance(body.get(field), int) and body[field] > target.max_tokens:
                body[field] = target.max_tokens
        # a real model without a cap may write until its context is full: minutes a case
        absent = {"/v1/responses": "max_output_tokens", "/v1/chat/completions": "max_tokens",
                  "/v1/completions": "max_tokens"}.get(case.path)  # fmt: skip
        if absent and body.get(absent) is None and body.get("max_completion_tokens") is None:
            body[absent] = target.max_tokens
    params = case.path_parameters or {}
    deleting_kb = case.method == "DELETE" and case.path == "/v1/knowledge_bases/{name}"
    if isinstance(params.get("name"), str) and not deleting_kb:
        params["name"] = _pick(params["name"], KB, "kb")
    if isinstance(params.get("document"), str):
        params["document"] = _pick(params["document"], DOCUMENT, "doc")


def check(case: Any, target: Target, seed: int) -> None:
    aim(case, target)
    try:
        case.call_and_validate(
            base_url=target.live.url, headers=target.headers, checks=CHECKS, timeout=120
        )
    except BaseException:
        print(f"fuzz seed {seed}; replay a random run with HEARTH_FUZZ_SEED={seed}")
        raise


def assert_reached(target: Target) -> None:
    """The generated cases got past validation to the engines, not only to 400s."""
    calls = target.live.services().calllog.usage(by=("model",))
    served = {row.model: row.calls for row in calls}
    assert sum(served.get(m, 0) for m in target.chat) >= 5, served
    assert sum(served.get(m, 0) for m in target.embed) >= 1, served


def seeded_tests(schema: Any, max_examples: int) -> tuple[Any, Any]:
    """The two fuzz tests over every operation: a fixed seed, and a random one."""
    fuzz = fuzz_settings(max_examples)

    @schema.parametrize()
    @fuzz
    @seed(FIXED_SEED)
    def fixed_seed(case: Any, target: Target) -> None:
        check(case, target, FIXED_SEED)

    @schema.parametrize()
    @fuzz
    @seed(RANDOM_SEED)
    def random_seed(case: Any, target: Target) -> None:
        check(case, target, RANDOM_SEED)

    return fixed_seed, random_seed
