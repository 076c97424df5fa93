"""Fine-tuned adapters in PostgreSQL: registered on one machine, served by every replica on the
same database; re-evaluated or removed on one, the same everywhere."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from hearth.config import Settings, load_settings
from hearth.finetune.store import Manifest, adapter_dir, register_adapter, remove, save, sync
from hearth.hub.local import registered_models
from tests.conftest import make_settings

BASE = "smollm2-135m-instruct"


def _settings(home: Path, url: str) -> Settings:
    return make_settings(home, f'[server]\ndatabase_url = "{url}"\n')


def _manifest(name: str, base: str = BASE) -> Manifest:
    return Manifest(
        name=name, base=base, base_sha256="b" * 64, template_sha256="t" * 64, method="lora",
        hyperparameters={"rank": 8}, data=["train.jsonl"], data_sha256="d" * 64, examples=3,
        trained_tokens=120, seed=0, versions={}, created="2026-12-07T00:00:00Z",
    )  # fmt: skip


def _train(settings: Settings, name: str, payload: bytes, base: str = BASE) -> None:
    """What a finished run does: its checked adapter file moved into place and registered."""
    work = settings.home / "work"
    work.mkdir(parents=True, exist_ok=True)
    (work / "adapter.gguf").write_bytes(payload)
    register_adapter(settings, _manifest(name, base), work / "adapter.gguf")


def test_an_adapter_trained_on_one_replica_is_registered_on_another(
    pg_url: str, tmp_path: Path
) -> None:
    a = _settings(tmp_path / "a", pg_url)
    b = _settings(tmp_path / "b", pg_url)
    payload = bytes(range(256)) * 4000  # ~1 MB, binary
    _train(a, "support-zh", payload)

    assert sync(b) == ["support-zh"]
    got = adapter_dir(b.home, "support-zh")
    assert (got / "adapter.gguf").read_bytes() == payload
    table = registered_models(b.home)["support-zh"]
    assert table["base"] == BASE and table["adapter"] == "adapters/support-zh/adapter.gguf"
    reloaded = load_settings(home=b.home, env={})
    assert reloaded.models["support-zh"].base == BASE
    assert sync(b) == []  # nothing new: nothing rewritten

    # an evaluation saved on a reaches b's manifest
    save(a, Manifest(**{**_manifest("support-zh").to_json(), "evaluation": {"acc": 0.5}}))
    sync(b)
    assert json.loads((got / "manifest.json").read_text())["evaluation"] == {"acc": 0.5}

    # removed and trained again on b with other weights: a gets the new file
    assert remove(b, "support-zh")
    _train(b, "support-zh", b"new weights")
    assert sync(a) == ["support-zh"]
    assert (adapter_dir(a.home, "support-zh") / "adapter.gguf").read_bytes() == b"new weights"

    # removed on a: gone from b, and a replica that was away does not bring it back
    c = _settings(tmp_path / "c", pg_url)
    assert sync(c) == ["support-zh"]
    assert remove(a, "support-zh")
    assert sync(b) == ["support-zh"]
    assert "support-zh" not in registered_models(b.home) and not got.exists()
    assert sync(c) == ["support-zh"]
    assert not adapter_dir(c.home, "support-zh").exists()
    assert sync(a) == [] and sync(b) == []


def test_adapters_only_on_one_machine_are_published_and_a_missing_base_is_skipped(
    pg_url: str, tmp_path: Path
) -> None:
    # trained before this machine used PostgreSQL: published on its first sync
    local = make_settings(tmp_path / "a")
    _train(local, "early", b"early weights")
    a = _settings(tmp_path / "a", pg_url)
    assert sync(a) == []
    b = _settings(tmp_path / "b", pg_url)
    assert sync(b) == ["early"]

    # an adapter over a model b does not know is not registered there (b's config would
    # no longer load), and said so
    extra = '[models.own]\nengine = "llamacpp"\npath = "models/own.gguf"\n'
    a2 = make_settings(tmp_path / "a", f'[server]\ndatabase_url = "{pg_url}"\n' + extra)
    _train(a2, "over-own", b"w", base="own")
    assert sync(b) == []
    assert "over-own" not in registered_models(b.home)


def test_finetune_list_shows_what_other_replicas_trained(pg_url: str, tmp_path: Path) -> None:
    a = _settings(tmp_path / "a", pg_url)
    _settings(tmp_path / "b", pg_url)
    _train(a, "faq", b"weights")
    done = subprocess.run(
        [sys.executable, "-m", "hearth", "finetune", "list", "--json"],
        env={"HEARTH_HOME": str(tmp_path / "b"), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert [m["name"] for m in json.loads(done.stdout)["adapters"]] == ["faq"]


def test_without_postgresql_nothing_is_shared(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "a")
    _train(settings, "solo", b"w")
    assert sync(settings) == []
    assert "solo" in registered_models(settings.home)
