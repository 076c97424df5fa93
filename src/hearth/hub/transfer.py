"""Fetch one file over HTTP: resume with Range, verify, then rename into place.

A file is written to ``<snapshot>/.hearth/<path>.<checksum prefix>.incomplete``. An
interrupted run leaves that partial file behind; the next run hashes what is there and asks
for ``Range: bytes=<size>-``, so no byte crosses the network twice. When size and checksum
match what the hub listed, the partial file is renamed over ``<snapshot>/<path>`` (atomic on
one filesystem) and ``<snapshot>/.hearth/<path>.verified`` records the checksum, so later
runs skip the file without hashing it again.

Checksums: Git LFS files carry a sha256 (the hub's ``X-Linked-Etag``); small git files on
Hugging Face carry their git blob id, a sha1 over ``b"blob <size>\\0" + content``; ModelScope
lists a sha256 for every file. A file with none of these is checked by size alone.
"""

from __future__ import annotations

import glob
import hashlib
import os
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Protocol

import httpx
from rich.filesize import decimal
from rich.progress import Progress, TaskID

from hearth.hub.errors import (
    AccessDenied,
    ChecksumMismatch,
    DiskError,
    DownloadInterrupted,
    HubError,
)

CHUNK = 1 << 20
STATE_DIR = ".hearth"


@dataclass(frozen=True)
class RemoteFile:
    path: str  # inside the repository, "/"-separated
    url: str
    size: int | None
    sha256: str | None = None
    git_sha1: str | None = None

    @property
    def checksum(self) -> tuple[str, str] | None:
        """(algorithm, hex digest) of the strongest check the hub gave us."""
        if self.sha256:
            return "sha256", self.sha256.lower()
        if self.git_sha1 and self.size is not None:
            return "git blob sha1", self.git_sha1.lower()
        return None

    @property
    def fingerprint(self) -> str:
        """What the ``.verified`` marker records; a changed file upstream changes it."""
        check = self.checksum
        return f"{check[0]}:{check[1]}" if check else f"size:{self.size}"


@dataclass(frozen=True)
class Listing:
    revision: str  # as asked for: a branch, tag or commit
    commit: str | None  # what it pointed at, when the hub says
    files: list[RemoteFile]


@dataclass(frozen=True)
class Fetched:
    file: RemoteFile
    path: Path
    resumed_from: int  # bytes already on disk when this run started
    downloaded: int  # bytes received over the network in this run
    skipped: bool  # already present and verified: nothing fetched


class _Hasher(Protocol):
    def update(self, data: bytes, /) -> None: ...
    def hexdigest(self) -> str: ...


class _SizeOnly:
    def update(self, data: bytes, /) -> None:
        pass

    def hexdigest(self) -> str:
        return ""


def _hasher(file: RemoteFile) -> _Hasher:
    check = file.checksum
    if check is None:
        return _SizeOnly()
    if check[0] == "sha256":
        return hashlib.sha256()
    return hashlib.sha1(f"blob {file.size}\0".encode())


def safe_path(path: str) -> PurePosixPath:
    """A repo path as a relative path that cannot climb out of the snapshot directory."""
    p = PurePosixPath(path)
    bad = not p.parts or p.is_absolute() or any(part in ("", ".", "..") for part in p.parts)
    if bad or p.parts[0] == STATE_DIR:  # STATE_DIR holds our partial files and markers
        raise HubError(f"the hub listed an unsafe file path {path!r}; refusing to write it")
    return p


class _Partial:
    """The ``.incomplete`` file and a running checksum of exactly the bytes in it."""

    def __init__(self, path: Path, file: RemoteFile) -> None:
        self.path = path
        self.file = file
        self.size = 0
        self.hash = _hasher(file)

    def resume(self, report: Callable[[int], None]) -> None:
        """Adopt what an earlier run left, hashing it so the checksum covers the whole file."""
        if not self.path.is_file():
            return
        if self.file.size is not None and self.path.stat().st_size > self.file.size:
            self.path.unlink()  # longer than the file can be: not a prefix of it
            return
        with open(self.path, "rb") as f:
            while block := f.read(CHUNK):
                self.hash.update(block)
                self.size += len(block)
                report(len(block))

    def restart(self) -> None:
        self.path.unlink(missing_ok=True)
        self.size = 0
        self.hash = _hasher(self.file)


@contextmanager
def disk_errors(path: Path) -> Iterator[None]:
    try:
        yield
    except OSError as e:
        raise DiskError(
            f"cannot write {path}: {e.strerror or e}. Free some disk space or set HEARTH_HOME "
            "to a larger disk, then run the same command again; finished files are kept."
        ) from e


def raise_for_status(response: httpx.Response, what: str, auth_hint: str) -> None:
    """Map a failed response to an error that says what to do; 404 is the caller's to word."""
    code = response.status_code
    if code < 400:
        return
    response.read()
    detail = response.headers.get("X-Error-Message") or response.text[:200].strip()
    detail = f": {detail}" if detail else ""
    if code in (401, 403):
        raise AccessDenied(f"{what}: access denied (HTTP {code}{detail}). {auth_hint}")
    if code == 429 or code >= 500:
        raise DownloadInterrupted(
            f"{what}: the hub answered HTTP {code}{detail}. Run the same command again later; "
            "finished and partial files are kept."
        )
    raise HubError(f"{what}: unexpected HTTP {code} from {response.url}{detail}")


def fetch(
    client: httpx.Client,
    file: RemoteFile,
    root: Path,
    *,
    progress: Progress | None = None,
    retries: int = 3,
    backoff: float = 1.0,
    auth_hint: str = "",
) -> Fetched:
    """Download ``file`` to ``root / file.path``, resuming and verifying; see module doc."""
    target, partial_path, marker = _paths(file, root)
    partial = _Partial(partial_path, file)
    if _already_verified(file, target, marker):
        return Fetched(file, target, file.size or 0, 0, skipped=True)
    with disk_errors(partial.path):
        partial.path.parent.mkdir(parents=True, exist_ok=True)
        target.parent.mkdir(parents=True, exist_ok=True)
        _drop_stale_partials(partial.path, target.name)

    task: TaskID | None = None
    if progress is not None:
        task = progress.add_task(file.path, total=file.size)

    def report(n: int) -> None:
        if progress is not None and task is not None:
            progress.update(task, advance=n)

    partial.resume(report)
    resumed_from = partial.size
    if progress is not None and task is not None:
        # Restart the clock so speed and ETA describe the network, not the hashing above.
        progress.reset(task, total=file.size, completed=partial.size)
    attempt = 0
    while True:
        try:
            _receive(client, partial, report, auth_hint)
            break
        except DownloadInterrupted:
            if attempt >= retries:
                raise
            attempt += 1
            time.sleep(backoff * 2 ** (attempt - 1))
    _verify(partial)
    with disk_errors(target):
        with open(partial.path, "rb") as f:
            os.fsync(f.fileno())
        os.replace(partial.path, target)
        marker.write_text(file.fingerprint + "\n", encoding="utf-8")
    return Fetched(file, target, resumed_from, partial.size - resumed_from, skipped=False)


def remaining(file: RemoteFile, root: Path) -> int:
    """Bytes still to download for ``file`` (0 when unknown): what a disk-space check needs."""
    target, partial, marker = _paths(file, root)
    if file.size is None:
        return 0
    verified = marker.is_file() and marker.read_text(encoding="utf-8").strip() == file.fingerprint
    if verified and target.is_file():
        return 0
    have = partial.stat().st_size if partial.is_file() else 0
    return max(file.size - have, 0)


def _paths(file: RemoteFile, root: Path) -> tuple[Path, Path, Path]:
    """(final file, partial file, verified marker) for ``file`` in snapshot ``root``.

    The partial file's name carries the expected checksum, so a partial left by an older
    version of the file (the branch moved on) is never resumed as if it were this one.
    """
    rel = safe_path(file.path)
    state = root.joinpath(STATE_DIR, *rel.parts[:-1])
    check = file.checksum
    tag = check[1][:16] if check else f"size{file.size}"
    return (
        root.joinpath(*rel.parts),
        state / f"{rel.name}.{tag}.incomplete",
        state / f"{rel.name}.verified",
    )


def _drop_stale_partials(partial: Path, name: str) -> None:
    for old in partial.parent.glob(f"{glob.escape(name)}.*.incomplete"):
        if old != partial:
            old.unlink(missing_ok=True)


def _already_verified(file: RemoteFile, target: Path, marker: Path) -> bool:
    if not target.is_file() or (file.size is not None and target.stat().st_size != file.size):
        return False
    if marker.is_file() and marker.read_text(encoding="utf-8").strip() == file.fingerprint:
        return True
    if file.checksum is None:
        return False  # a size match alone is too weak to adopt a file we did not write
    # A file put there by hand or an older hearth: adopt it if its bytes are right.
    h = _hasher(file)
    with open(target, "rb") as f:
        while block := f.read(CHUNK):
            h.update(block)
    if h.hexdigest() != file.checksum[1]:
        return False
    with disk_errors(marker):
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(file.fingerprint + "\n", encoding="utf-8")
    return True


def _receive(
    client: httpx.Client, partial: _Partial, report: Callable[[int], None], auth_hint: str
) -> None:
    file = partial.file
    if file.size is not None and partial.size == file.size:
        return
    # identity: Range offsets must count bytes of the file, not of a compressed encoding.
    headers = {"Accept-Encoding": "identity"}
    if partial.size:
        headers["Range"] = f"bytes={partial.size}-"
    stale = False
    try:
        with client.stream("GET", file.url, headers=headers) as response:
            # 416: the partial file is longer than the file upstream, so not a prefix of it.
            stale = response.status_code == 416 and partial.size > 0
            if not stale:
                _write(response, partial, report, auth_hint)
    except httpx.TransportError as e:
        raise DownloadInterrupted(_cut_message(partial, str(e) or type(e).__name__)) from e
    if stale:
        report(-partial.size)
        partial.restart()
        _receive(client, partial, report, auth_hint)  # once: no Range header this time
    elif file.size is not None and partial.size < file.size:
        raise DownloadInterrupted(_cut_message(partial, "the server closed the stream early"))


def _write(
    response: httpx.Response, partial: _Partial, report: Callable[[int], None], auth_hint: str
) -> None:
    raise_for_status(response, f"downloading {partial.file.path}", auth_hint)
    if partial.size and response.status_code != 206:
        report(-partial.size)  # the server ignored Range and sends the whole file
        partial.restart()
    elif partial.size:
        _check_range(response, partial)
    with disk_errors(partial.path), open(partial.path, "ab") as out:
        # iter_raw without a chunk size hands over each read as it arrives; a chunked
        # iterator would hold back up to a chunk that a dropped connection then loses.
        for chunk in response.iter_raw():
            out.write(chunk)
            partial.hash.update(chunk)
            partial.size += len(chunk)
            report(len(chunk))


def _check_range(response: httpx.Response, partial: _Partial) -> None:
    match = re.match(r"bytes (\d+)-", response.headers.get("Content-Range", ""))
    if not match or int(match.group(1)) != partial.size:
        raise HubError(
            f"{partial.file.path}: asked for bytes from {partial.size} but the server sent "
            f"Content-Range {response.headers.get('Content-Range')!r}. Delete {partial.path} "
            "and run again to download the file from the start."
        )


def _cut_message(partial: _Partial, why: str) -> str:
    total = decimal(partial.file.size) if partial.file.size is not None else "?"
    return (
        f"connection lost while downloading {partial.file.path} ({why}) after "
        f"{decimal(partial.size)} of {total}. Run the same command again to resume from "
        f"byte {partial.size}."
    )


def _verify(partial: _Partial) -> None:
    file = partial.file
    problem = ""
    if file.size is not None and partial.size != file.size:
        problem = f"size {partial.size} does not match the listed {file.size}"
    elif file.checksum is not None and partial.hash.hexdigest() != file.checksum[1]:
        algo, want = file.checksum
        problem = f"{algo} {partial.hash.hexdigest()} does not match the listed {want}"
    if problem:
        partial.restart()
        raise ChecksumMismatch(
            f"{file.path}: {problem}; deleted the bad temporary file {partial.path}. Run the "
            "same command again to download it afresh; if it fails again, the server (or "
            "HF_ENDPOINT mirror) serves different bytes than it lists, so try another."
        )
