"""`hearth.hub.pull` against a real HTTP hub on 127.0.0.1 speaking the Hugging Face protocol."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from hearth.config import Settings
from hearth.errors import UserError
from hearth.hub import pull as hub_pull
from hearth.hub.errors import (
    AccessDenied,
    ChecksumMismatch,
    DiskError,
    DownloadInterrupted,
    HubError,
    NoMatchingFiles,
    RepoNotFound,
)
from hearth.hub.transfer import STATE_DIR, RemoteFile
from tests.hub.hubserver import FakeHub, HubFile

REPO = "acme/tiny-model"
BLOB = os.urandom(300_000)  # a few 64 KiB socket reads, so a cut lands mid-stream
CUT = 100_000


@pytest.fixture
def repo(fake_hub: FakeHub) -> dict[str, HubFile]:
    files = {
        "weights.bin": HubFile(BLOB),
        "README.md": HubFile(b"# tiny\n", lfs=False),
        "sub/config.json": HubFile(b'{"layers": 2}\n', lfs=False),
    }
    fake_hub.repos[REPO] = files
    return files


def snapshot(home_settings: Settings) -> Path:
    return home_settings.models_dir / "hf" / "acme--tiny-model" / "main"


def test_full_download_is_verified_atomic_and_skipped_next_time(
    fake_hub: FakeHub, repo: dict[str, HubFile], home_settings: Settings
) -> None:
    result = hub_pull.pull(home_settings, REPO)
    root = snapshot(home_settings)
    assert result.plan.directory == root
    assert result.plan.listing.commit is not None
    for name, f in repo.items():
        assert (root / name).read_bytes() == f.data
    assert sorted(p.name for p in (root / STATE_DIR).rglob("*.incomplete")) == []
    marker = (root / STATE_DIR / "weights.bin.verified").read_text().strip()
    assert marker == "sha256:" + hashlib.sha256(BLOB).hexdigest()
    assert (root / STATE_DIR / "README.md.verified").read_text().startswith("git blob sha1:")
    assert fake_hub.ranges("/-/weights.bin") == [None]  # one plain GET, after the LFS redirect

    again = hub_pull.pull(home_settings, REPO)
    assert all(f.skipped for f in again.fetched)
    assert fake_hub.ranges("/-/weights.bin") == [None]  # nothing fetched the second time


def test_cut_connection_resumes_from_the_exact_byte_on_the_next_run(
    fake_hub: FakeHub, repo: dict[str, HubFile], home_settings: Settings
) -> None:
    fake_hub.cut_after["weights.bin"] = CUT
    with pytest.raises(DownloadInterrupted) as cut:
        hub_pull.pull(home_settings, REPO, patterns=["weights.bin"], retries=0)
    assert f"resume from byte {CUT}" in cut.value.message
    root = snapshot(home_settings)
    (partial,) = (root / STATE_DIR).glob("weights.bin.*.incomplete")
    assert partial.name == f"weights.bin.{hashlib.sha256(BLOB).hexdigest()[:16]}.incomplete"
    assert partial.stat().st_size == CUT
    assert not (root / "weights.bin").exists()  # never a half file under the real name

    result = hub_pull.pull(home_settings, REPO, patterns=["weights.bin"], retries=0)
    assert fake_hub.ranges("/-/weights.bin") == [None, f"bytes={CUT}-"]
    (done,) = result.fetched
    assert (done.resumed_from, done.downloaded) == (CUT, len(BLOB) - CUT)
    assert hashlib.sha256(done.path.read_bytes()).hexdigest() == hashlib.sha256(BLOB).hexdigest()
    assert not partial.exists()


def test_a_cut_is_retried_within_the_run_from_the_same_byte(
    fake_hub: FakeHub, repo: dict[str, HubFile], home_settings: Settings
) -> None:
    fake_hub.cut_after["weights.bin"] = CUT
    plan = hub_pull.plan(home_settings, REPO, patterns=["*.bin"])
    hub_pull.download(home_settings, plan, retries=1, backoff=0)
    assert fake_hub.ranges("/-/weights.bin") == [None, f"bytes={CUT}-"]
    assert (snapshot(home_settings) / "weights.bin").read_bytes() == BLOB


def test_a_server_that_ignores_range_restarts_cleanly(
    fake_hub: FakeHub, repo: dict[str, HubFile], home_settings: Settings
) -> None:
    fake_hub.cut_after["weights.bin"] = CUT
    with pytest.raises(DownloadInterrupted):
        hub_pull.pull(home_settings, REPO, patterns=["weights.bin"], retries=0)
    fake_hub.ignore_range = True
    hub_pull.pull(home_settings, REPO, patterns=["weights.bin"], retries=0)
    assert (snapshot(home_settings) / "weights.bin").read_bytes() == BLOB


def test_a_partial_of_an_older_version_is_not_resumed(
    fake_hub: FakeHub, repo: dict[str, HubFile], home_settings: Settings
) -> None:
    fake_hub.cut_after["weights.bin"] = CUT
    with pytest.raises(DownloadInterrupted):
        hub_pull.pull(home_settings, REPO, patterns=["weights.bin"], retries=0)
    newer = os.urandom(len(BLOB))  # the branch moved on: same path, other bytes
    repo["weights.bin"] = HubFile(newer)
    hub_pull.pull(home_settings, REPO, patterns=["weights.bin"], retries=0)
    assert fake_hub.ranges("/-/weights.bin") == [None, None]
    root = snapshot(home_settings)
    assert (root / "weights.bin").read_bytes() == newer
    assert list((root / STATE_DIR).glob("*.incomplete")) == []


def test_sha256_mismatch_deletes_the_temp_file_and_says_so(
    fake_hub: FakeHub, repo: dict[str, HubFile], home_settings: Settings
) -> None:
    repo["weights.bin"].listed_sha256 = "0" * 64
    with pytest.raises(ChecksumMismatch) as bad:
        hub_pull.pull(home_settings, REPO, patterns=["weights.bin"])
    assert "deleted the bad temporary file" in bad.value.message
    assert "0" * 64 in bad.value.message
    root = snapshot(home_settings)
    assert not (root / "weights.bin").exists()
    assert list((root / STATE_DIR).glob("*.incomplete")) == []


def test_listing_without_blobs_falls_back_to_head_etags(
    fake_hub: FakeHub, repo: dict[str, HubFile], home_settings: Settings
) -> None:
    fake_hub.blobs = False  # as a mirror that drops ?blobs=true would answer
    result = hub_pull.pull(home_settings, REPO)
    assert {f.file.path: f.file.fingerprint.split(":")[0] for f in result.fetched} == {
        "weights.bin": "sha256",
        "README.md": "git blob sha1",
        "sub/config.json": "git blob sha1",
    }
    assert any(m == "HEAD" for m, _, _ in fake_hub.requests)


def test_unknown_repo_and_revision(fake_hub: FakeHub, home_settings: Settings) -> None:
    with pytest.raises(RepoNotFound) as missing:
        hub_pull.pull(home_settings, "acme/nope")
    assert "'acme/nope' was not found" in missing.value.message
    assert "Check the name" in missing.value.message
    fake_hub.repos[REPO] = {}
    with pytest.raises(RepoNotFound) as rev:
        hub_pull.pull(home_settings, REPO, revision="v9")
    assert "revision 'v9'" in rev.value.message


def test_pattern_without_match_lists_what_is_there(
    fake_hub: FakeHub, repo: dict[str, HubFile], home_settings: Settings
) -> None:
    with pytest.raises(NoMatchingFiles) as none:
        hub_pull.plan(home_settings, REPO, patterns=["*.gguf"])
    assert "'*.gguf'" in none.value.message
    assert "weights.bin" in none.value.message and "sub/config.json" in none.value.message


def test_gated_repo_says_how_to_get_access(
    fake_hub: FakeHub, repo: dict[str, HubFile], home_settings: Settings
) -> None:
    fake_hub.gated.add(REPO)
    with pytest.raises(AccessDenied) as denied:
        hub_pull.pull(home_settings, REPO, patterns=["README.md"])
    assert "HF_TOKEN" in denied.value.message


def test_hf_token_is_sent_and_a_bad_one_is_named(
    fake_hub: FakeHub,
    repo: dict[str, HubFile],
    home_settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    fake_hub.token = "hf_good"
    token_file = tmp_path / "hf-home" / "token"  # where `huggingface-cli login` saves it
    token_file.parent.mkdir(parents=True)
    token_file.write_text("hf_good\n")
    hub_pull.plan(home_settings, REPO)
    monkeypatch.setenv("HF_TOKEN", "hf_bad")
    with pytest.raises(AccessDenied, match="rejected the token"):
        hub_pull.plan(home_settings, REPO)
    assert fake_hub.authorizations == ["Bearer hf_good", "Bearer hf_bad"]


def test_disk_write_errors_are_reported(
    fake_hub: FakeHub, repo: dict[str, HubFile], home_settings: Settings
) -> None:
    home_settings.models_dir.mkdir(parents=True)
    (home_settings.models_dir / "hf").write_text("a file where a directory must go")
    with pytest.raises(DiskError) as disk:
        hub_pull.pull(home_settings, REPO, patterns=["README.md"])
    assert "cannot write" in disk.value.message and "HEARTH_HOME" in disk.value.message


def test_unsafe_paths_and_repo_ids_are_refused(fake_hub: FakeHub, home_settings: Settings) -> None:
    fake_hub.repos[REPO] = {"../escape.txt": HubFile(b"x", lfs=False)}
    with pytest.raises(HubError, match="unsafe file path"):
        hub_pull.pull(home_settings, REPO)
    assert not (home_settings.models_dir / "hf" / "acme--tiny-model" / "escape.txt").exists()
    with pytest.raises(UserError, match="not a repository id"):
        hub_pull.plan(home_settings, "../../etc")


def test_unreachable_endpoint(monkeypatch: pytest.MonkeyPatch, home_settings: Settings) -> None:
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # discard port: refused
    with pytest.raises(HubError, match=r"cannot reach http://127\.0\.0\.1:9"):
        hub_pull.plan(home_settings, REPO)


def test_select_is_a_case_insensitive_glob() -> None:
    files = [RemoteFile(p, "u", 1) for p in ("A-Q4_K_M.gguf", "b-q8_0.gguf", "x.md")]
    assert [f.path for f in hub_pull.select(files, ["*q4_k_m*"])] == ["A-Q4_K_M.gguf"]
    assert len(hub_pull.select(files, ["*.gguf", "*.md"])) == 3
    assert len(hub_pull.select(files, [])) == 3


def test_a_safetensors_repository_is_registered_for_transformers(
    fake_hub: FakeHub, home_settings: Settings
) -> None:
    from hearth.config import load_settings
    from hearth.hub.local import registered_models

    fake_hub.repos["acme/Tiny-Chat-7B"] = {
        "config.json": HubFile(
            b'{"architectures": ["LlamaForCausalLM"], "max_position_embeddings": 32768}',
            lfs=False,
        ),
        "model.safetensors": HubFile(os.urandom(2048)),
        "tokenizer.json": HubFile(b"{}", lfs=False),
    }
    result = hub_pull.pull(home_settings, "acme/Tiny-Chat-7B")
    assert list(result.registered) == ["tiny-chat-7b"]
    table = registered_models(home_settings.home)["tiny-chat-7b"]
    assert table["engine"] == "transformers"
    assert table["path"] == "models/hf/acme--Tiny-Chat-7B/main"
    assert table["context"] == 4096  # capped like a GGUF's, not the model's 32768
    spec = load_settings(home=home_settings.home, env={}).models["tiny-chat-7b"]
    assert spec.engine == "transformers" and Path(spec.path or "").is_dir()


def test_a_repository_with_neither_gguf_nor_weights_registers_nothing(
    fake_hub: FakeHub, repo: dict[str, HubFile], home_settings: Settings
) -> None:
    assert hub_pull.pull(home_settings, REPO).registered == {}
