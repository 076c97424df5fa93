"""Pull a model repository from a hub: list it, pick files, download them, register GGUFs.

On-disk layout, one directory per repository revision::

    <HEARTH_HOME>/models/<source>/<owner>--<name>/<revision>/<path in the repo>
    .../<revision>/.hearth/<path>.<checksum[:16]>.incomplete   while downloading
    .../<revision>/.hearth/<path>.verified                     checksum of the finished file

For example::

    ~/.hearth/models/hf/Qwen--Qwen2.5-0.5B-Instruct-GGUF/main/qwen2.5-0.5b-instruct-q4_k_m.gguf

``<source>`` is ``hf`` or ``modelscope``; a ``/`` in a revision (``refs/pr/1``) becomes
``--``. Each downloaded ``.gguf`` is registered in ``<HEARTH_HOME>/models.toml``
(``hearth.hub.local``) so ``hearth serve --model <name>`` can serve it.

``plan`` (list and select, no download) and ``download`` are separate so the command can
show the plan and warn about its size first; ``pull`` is both.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path

import httpx
from rich.filesize import decimal
from rich.progress import Progress

from hearth import __version__
from hearth.config import Settings
from hearth.errors import UserError
from hearth.hub import hf, local, modelscope
from hearth.hub.errors import DiskError, HubError, NoMatchingFiles
from hearth.hub.transfer import Fetched, Listing, RemoteFile, fetch, remaining

LARGE_PULL = 20 * 10**9  # bytes: pulling a whole repo past this deserves a warning
_REPO = re.compile(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?")


@dataclass(frozen=True)
class Source:
    name: str
    default_revision: str
    endpoint: Callable[[], str]
    headers: Callable[[], dict[str, str]]
    list_files: Callable[[httpx.Client, str, str], Listing]
    complete: Callable[[httpx.Client, RemoteFile], RemoteFile]
    auth_hint: str


SOURCES: dict[str, Source] = {
    hf.NAME: Source(
        name=hf.NAME,
        default_revision=hf.DEFAULT_REVISION,
        endpoint=hf.endpoint,
        headers=hf.headers,
        list_files=hf.list_files,
        complete=hf.complete,
        auth_hint=hf.AUTH_HINT,
    ),
    modelscope.NAME: Source(
        name=modelscope.NAME,
        default_revision=modelscope.DEFAULT_REVISION,
        endpoint=modelscope.endpoint,
        headers=modelscope.headers,
        list_files=modelscope.list_files,
        complete=modelscope.complete,
        auth_hint=modelscope.AUTH_HINT,
    ),
}


@dataclass(frozen=True)
class Plan:
    source: str
    repo: str
    listing: Listing
    files: list[RemoteFile]  # selected by the patterns, in repo order
    directory: Path

    @property
    def total(self) -> int:
        """Bytes of the selected files (files of unknown size count 0)."""
        return sum(f.size or 0 for f in self.files)


@dataclass(frozen=True)
class PullResult:
    plan: Plan
    fetched: list[Fetched]
    registered: dict[str, Path]  # model name -> GGUF file


def snapshot_dir(models_dir: Path, source: str, repo: str, revision: str) -> Path:
    return models_dir / source / repo.replace("/", "--") / revision.replace("/", "--")


def select(files: Sequence[RemoteFile], patterns: Sequence[str]) -> list[RemoteFile]:
    """Files whose repo path matches any glob, case-insensitively; all files when none given."""
    if not patterns:
        return list(files)
    lowered = [p.lower() for p in patterns]
    return [f for f in files if any(fnmatchcase(f.path.lower(), p) for p in lowered)]


def plan(
    settings: Settings,
    repo: str,
    *,
    patterns: Sequence[str] = (),
    revision: str | None = None,
    source: str = "hf",
) -> Plan:
    """List ``repo`` on ``source`` and pick the files to download; downloads nothing."""
    hub = _source(source)
    repo = _check_repo(repo)
    revision = revision or hub.default_revision
    with _client(hub) as client:
        listing = hub.list_files(client, repo, revision)
        chosen = select(listing.files, patterns)
        if not chosen:
            raise NoMatchingFiles(_no_match(repo, revision, listing.files, patterns))
        chosen = [hub.complete(client, f) for f in chosen]
    directory = snapshot_dir(settings.models_dir, hub.name, repo, revision)
    return Plan(hub.name, repo, listing, chosen, directory)


def download(
    settings: Settings,
    plan: Plan,
    *,
    progress: Progress | None = None,
    retries: int = 3,
    backoff: float = 1.0,
    max_context: int = local.DEFAULT_MAX_CONTEXT,
) -> PullResult:
    """Fetch every file of ``plan`` (resuming, verifying) and register the GGUF ones."""
    hub = _source(plan.source)
    _check_space(plan)
    fetched: list[Fetched] = []
    registered: dict[str, Path] = {}
    pinned = plan.listing.revision
    if plan.listing.commit and plan.listing.commit != pinned:
        pinned += f" (commit {plan.listing.commit[:12]})"
    with _client(hub) as client:
        for file in plan.files:
            done = fetch(
                client,
                file,
                plan.directory,
                progress=progress,
                retries=retries,
                backoff=backoff,
                auth_hint=hub.auth_hint,
            )
            fetched.append(done)
            # Register as each file lands, so a later failure keeps the models already done.
            name = local.register_gguf(
                settings.home,
                plan.repo,
                file.path,
                done.path,
                source=plan.source,
                revision=pinned,
                max_context=max_context,
            )
            if name:
                registered[name] = done.path
    if not registered:
        # no GGUF: a Hugging Face layout (safetensors) is served with transformers
        name = local.register_hf_directory(
            settings.home,
            plan.repo,
            plan.directory,
            source=plan.source,
            revision=pinned,
            max_context=max_context,
        )
        if name:
            registered[name] = plan.directory
    return PullResult(plan, fetched, registered)


def pull(
    settings: Settings,
    repo: str,
    *,
    patterns: Sequence[str] = (),
    revision: str | None = None,
    source: str = "hf",
    progress: Progress | None = None,
    retries: int = 3,
) -> PullResult:
    """``plan`` then ``download``: the whole of ``hearth models pull`` without the output."""
    chosen = plan(settings, repo, patterns=patterns, revision=revision, source=source)
    return download(settings, chosen, progress=progress, retries=retries)


def _source(name: str) -> Source:
    if name not in SOURCES:
        raise UserError(f"unknown source '{name}'; use one of: {', '.join(SOURCES)}")
    return SOURCES[name]


def _check_repo(repo: str) -> str:
    repo = repo.strip().strip("/")
    if not _REPO.fullmatch(repo) or ".." in repo:
        raise UserError(
            f"'{repo}' is not a repository id; use owner/name as in the model page URL, "
            "e.g. Qwen/Qwen2.5-0.5B-Instruct-GGUF"
        )
    return repo


@contextmanager
def _client(hub: Source) -> Iterator[httpx.Client]:
    headers = {"User-Agent": f"hearth/{__version__}", **hub.headers()}
    timeout = httpx.Timeout(60.0, connect=15.0)
    try:
        with httpx.Client(headers=headers, timeout=timeout, follow_redirects=True) as client:
            yield client
    except httpx.TransportError as e:
        # Listing and HEAD requests land here; downloads turn these into DownloadInterrupted.
        raise HubError(
            f"cannot reach {hub.endpoint()}: {str(e) or type(e).__name__}. Check the network; "
            "behind a firewall in China set HF_ENDPOINT=https://hf-mirror.com or use "
            "--source modelscope."
        ) from e


def _no_match(repo: str, revision: str, files: list[RemoteFile], patterns: Sequence[str]) -> str:
    if not files:
        return f"'{repo}' at revision '{revision}' has no files."
    # GGUF files first: they are what a pattern usually means to pick.
    paths = sorted((f.path for f in files), key=lambda p: (not p.lower().endswith(".gguf"), p))
    shown = ", ".join(paths[:10]) + (f", … ({len(paths)} in all)" if len(paths) > 10 else "")
    wanted = " or ".join(repr(p) for p in patterns)
    return (
        f"no file in '{repo}' at revision '{revision}' matches {wanted}. Files there: {shown}. "
        "--file takes a glob over repo paths, matched case-insensitively, e.g. "
        "--file '*q4_k_m*.gguf'."
    )


def _check_space(plan: Plan) -> None:
    need = sum(remaining(f, plan.directory) for f in plan.files)
    probe = plan.directory
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if need > free:
        raise DiskError(
            f"{plan.repo} needs {decimal(need)} more but {probe} has {decimal(free)} free. "
            "Free some space, set HEARTH_HOME to a larger disk, or pick fewer files with --file."
        )
