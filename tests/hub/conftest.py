"""Fixtures: a local hub that HF_ENDPOINT and MODELSCOPE_ENDPOINT point at, and a fresh home."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from hearth.config import Settings, load_settings
from tests.hub.hubserver import FakeHub, running_hub


@pytest.fixture
def fake_hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FakeHub]:
    with running_hub() as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        monkeypatch.setenv("MODELSCOPE_ENDPOINT", server.url)
        # Keep a real token on this machine away from the test server.
        for var in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_TOKEN_PATH", "MODELSCOPE_DOMAIN"):
            monkeypatch.delenv(var, raising=False)
        monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
        yield server


@pytest.fixture
def home_settings(tmp_path: Path) -> Settings:
    home = tmp_path / "home"
    home.mkdir()
    return load_settings(home=home, env={})
