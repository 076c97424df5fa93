"""The API contract holds for any input: schemathesis over every operation, fake models."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.conftest import make_settings
from tests.fuzz import harness

EXAMPLES = int(os.environ.get("HEARTH_FUZZ_EXAMPLES", "15"))
test_fixed_seed, test_random_seed = harness.seeded_tests(harness.schema(), EXAMPLES)


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[harness.Target]:
    settings = make_settings(tmp_path_factory.mktemp("fuzz-home"))
    settings = settings.with_served(["fake", "fake-slow", "fake-embed"])
    yield from harness.start(settings, chat=("fake", "fake-slow"), embed=("fake-embed",))


def test_cases_reached_the_engine(target: harness.Target) -> None:
    harness.assert_reached(target)
