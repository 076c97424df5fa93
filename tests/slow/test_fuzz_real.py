"""The API contract holds for any input on the real bundled SmolLM2 and e5 (slow tier)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import seed

from hearth.hub import bundled
from tests.conftest import make_settings
from tests.fuzz import harness

pytestmark = pytest.mark.slow

SMOL = "smollm2-135m-instruct"
E5 = "multilingual-e5-small"
SCHEMA = harness.schema()
FUZZ = harness.fuzz_settings(max_examples=10)


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[harness.Target]:
    home = tmp_path_factory.mktemp("fuzz-real")
    bundled.ensure(SMOL, home / "models")
    settings = make_settings(home, "").with_served([SMOL, E5])
    # A real model's answer to a long max_tokens takes seconds; a few tokens reach every path.
    yield from harness.start(settings, (SMOL, E5), max_tokens=8)


@SCHEMA.parametrize()
@FUZZ
@seed(harness.FIXED_SEED)
def test_fixed_seed(case: Any, target: harness.Target) -> None:
    harness.check(case, target, harness.FIXED_SEED)


@SCHEMA.parametrize()
@FUZZ
@seed(harness.RANDOM_SEED)
def test_random_seed(case: Any, target: harness.Target) -> None:
    harness.check(case, target, harness.RANDOM_SEED)


def test_cases_reached_the_engine(target: harness.Target) -> None:
    harness.assert_reached(target, SMOL)
