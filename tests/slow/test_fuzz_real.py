"""The API contract holds for any input on the real bundled SmolLM2 and e5 (slow tier)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from hearth.hub import bundled
from tests.conftest import make_settings
from tests.fuzz import harness

pytestmark = pytest.mark.slow

SMOL = "smollm2-135m-instruct"
E5 = "multilingual-e5-small"
test_fixed_seed, test_random_seed = harness.seeded_tests(harness.schema(), max_examples=10)


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[harness.Target]:
    home = tmp_path_factory.mktemp("fuzz-real")
    bundled.ensure(SMOL, home / "models")
    settings = make_settings(home, "").with_served([SMOL, E5])
    # A real model's answer to a long max_tokens takes seconds; a few tokens reach every path.
    yield from harness.start(settings, chat=(SMOL,), embed=(E5,), max_tokens=8)


def test_cases_reached_the_engine(target: harness.Target) -> None:
    harness.assert_reached(target)
