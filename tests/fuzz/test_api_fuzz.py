"""The API contract holds for any input: schemathesis over every operation, fake models."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import seed

from tests.conftest import make_settings
from tests.fuzz import harness

SCHEMA = harness.schema()
FUZZ = harness.fuzz_settings(max_examples=int(os.environ.get("HEARTH_FUZZ_EXAMPLES", "15")))


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[harness.Target]:
    settings = make_settings(tmp_path_factory.mktemp("fuzz-home"))
    settings = settings.with_served(["fake", "fake-slow", "fake-embed"])
    yield from harness.start(settings, ("fake", "fake-slow", "fake-embed"))


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
    harness.assert_reached(target, "fake")
