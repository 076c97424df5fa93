from __future__ import annotations

from pathlib import Path

import pytest

from hearth.engines.registry import ModelRegistry
from hearth.errors import ModelNotFound
from tests.conftest import make_settings


async def test_loads_on_first_use_and_unloads_least_recently_used(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, max_loaded=2).with_served(
        ["fake", "fake-slow", "fake-embed"]
    )
    registry = ModelRegistry(settings)
    assert registry.loaded() == []
    first = await registry.get("fake")
    assert await registry.get("fake") is first  # loaded once
    await registry.get("fake-slow")
    await registry.get("fake")  # now fake-slow is the least recently used
    await registry.get("fake-embed")
    assert sorted(r.spec.name for r in registry.loaded()) == ["fake", "fake-embed"]
    await registry.close()


async def test_busy_models_are_not_unloaded(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, max_loaded=1).with_served(["fake", "fake-slow"])
    registry = ModelRegistry(settings)
    runner = await registry.get("fake")
    runner.active += 1  # as if a request were running
    await registry.get("fake-slow")
    assert len(registry.loaded()) == 2  # over the limit rather than cut a request off
    runner.active -= 1
    await registry.close()


async def test_unknown_model_lists_served_ones(tmp_path: Path) -> None:
    registry = ModelRegistry(make_settings(tmp_path).with_served(["fake"]))
    with pytest.raises(ModelNotFound, match="Served models: fake"):
        await registry.get("gpt-5")
