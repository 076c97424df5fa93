"""The ModelScope flow: same resume and verify path, ModelScope's list and file endpoints."""

from __future__ import annotations

import hashlib
import os

import pytest

from hearth.config import Settings
from hearth.hub import pull as hub_pull
from hearth.hub.errors import ChecksumMismatch, DownloadInterrupted, RepoNotFound
from tests.hub.hubserver import FakeHub, HubFile

REPO = "qwen/Tiny-GGUF"
BLOB = os.urandom(250_000)


def test_modelscope_download_resume_and_verify(fake_hub: FakeHub, home_settings: Settings) -> None:
    fake_hub.repos[REPO] = {"configuration.json": HubFile(b"{}"), "sub/w.bin": HubFile(BLOB)}
    fake_hub.cut_after["sub/w.bin"] = 70_000
    with pytest.raises(DownloadInterrupted, match="resume from byte 70000"):
        hub_pull.pull(home_settings, REPO, source="modelscope", retries=0)

    result = hub_pull.pull(home_settings, REPO, source="modelscope", retries=0)
    root = home_settings.models_dir / "modelscope" / "qwen--Tiny-GGUF" / "master"
    assert result.plan.directory == root
    assert (root / "sub/w.bin").read_bytes() == BLOB
    assert (root / "configuration.json").read_bytes() == b"{}"
    assert fake_hub.ranges("FilePath=sub%2Fw.bin") == [None, "bytes=70000-"]
    fetched = {f.file.path: f for f in result.fetched}
    assert fetched["sub/w.bin"].resumed_from == 70_000
    assert fetched["configuration.json"].skipped  # finished in the first run
    assert fetched["sub/w.bin"].file.sha256 == hashlib.sha256(BLOB).hexdigest()


def test_modelscope_errors(fake_hub: FakeHub, home_settings: Settings) -> None:
    with pytest.raises(RepoNotFound, match="ModelScope says: model not found"):
        hub_pull.plan(home_settings, "qwen/nope", source="modelscope")
    fake_hub.repos[REPO] = {"w.bin": HubFile(BLOB, listed_sha256="f" * 64)}
    with pytest.raises(ChecksumMismatch, match="deleted the bad temporary file"):
        hub_pull.pull(home_settings, REPO, source="modelscope")
