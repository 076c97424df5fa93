"""The parts of the Hugging Face Hub protocol a download needs, over plain httpx.

- ``GET {endpoint}/api/models/{repo}/revision/{rev}?blobs=true`` lists the files of one
  commit (``sha``) with sizes, git blob ids, and ``lfs.sha256`` for Git LFS files.
- ``GET {endpoint}/{repo}/resolve/{commit}/{path}`` serves a file (usually a redirect to a CDN
  for LFS files) and honours ``Range``.
- ``HEAD`` on the same URL, without following redirects, answers ``X-Linked-Size`` and
  ``X-Linked-Etag`` (the sha256) for LFS files, ``Content-Length`` and ``ETag`` (the git blob
  id) for others; it fills in what a listing left out, as some mirrors drop ``blobs``.

``HF_ENDPOINT`` picks a mirror (e.g. https://hf-mirror.com) exactly as ``huggingface_hub``
does, and the token comes from ``HF_TOKEN`` or the file ``huggingface-cli login`` writes.
We speak the protocol ourselves rather than call ``huggingface_hub`` so that both hubs share
one resume-and-verify path (``hearth.hub.transfer``) and every failure gets a message that
says what to do.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from hearth.hub.errors import AccessDenied, HubError, RepoNotFound
from hearth.hub.transfer import Listing, RemoteFile, raise_for_status

NAME = "hf"
DEFAULT_REVISION = "main"
AUTH_HINT = (
    "If the repository is gated, accept its terms on the model page, then set HF_TOKEN "
    "(or run `huggingface-cli login`) with a token that can read it."
)
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_HEX40 = re.compile(r"^[0-9a-f]{40}$")


def endpoint() -> str:
    return (os.environ.get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/")


def headers() -> dict[str, str]:
    token = _token()
    return {"Authorization": f"Bearer {token}"} if token else {}


def _token() -> str | None:
    for var in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        if os.environ.get(var):
            return os.environ[var].strip()
    home = Path(os.environ.get("HF_HOME") or Path.home() / ".cache" / "huggingface")
    path = Path(os.environ.get("HF_TOKEN_PATH") or home / "token").expanduser()
    try:
        return path.read_text(encoding="utf-8").strip() or None
    except OSError:
        return None  # no token saved: public repositories still work


def list_files(client: httpx.Client, repo: str, revision: str) -> Listing:
    base = endpoint()
    url = f"{base}/api/models/{repo}/revision/{quote(revision, safe='')}"
    response = client.get(url, params={"blobs": "true"})
    _raise_for_listing(response, repo, revision)
    data = _json(response)
    commit = data.get("sha") if isinstance(data.get("sha"), str) else None
    pinned = quote(commit or revision, safe="")
    files = []
    for sibling in data.get("siblings") or []:
        path = sibling.get("rfilename")
        if not isinstance(path, str):
            raise HubError(f"{response.url} listed a file without a name: {sibling!r}")
        file_url = f"{base}/{repo}/resolve/{pinned}/{quote(path)}"
        lfs = sibling.get("lfs") or {}
        file = RemoteFile(
            path=path,
            url=file_url,
            size=lfs.get("size", sibling.get("size")),
            sha256=lfs.get("sha256"),
            git_sha1=None if lfs else sibling.get("blobId"),
        )
        files.append(file)
    return Listing(revision=revision, commit=commit, files=files)


def complete(client: httpx.Client, file: RemoteFile) -> RemoteFile:
    """Fill in size and checksum from the file's headers when the listing left them out."""
    if file.size is not None and file.checksum is not None:
        return file
    response = client.head(file.url, follow_redirects=False)
    if response.status_code >= 400:
        raise_for_status(response, f"checking {file.path}", AUTH_HINT)
    h = response.headers
    size = h.get("X-Linked-Size") or (h.get("Content-Length") if response.is_success else None)
    etag = (h.get("X-Linked-Etag") or h.get("ETag") or "").removeprefix("W/").strip('"').lower()
    return RemoteFile(
        path=file.path,
        url=file.url,
        size=file.size if file.size is not None else (int(size) if size else None),
        sha256=file.sha256 or (etag if _HEX64.match(etag) else None),
        git_sha1=file.git_sha1 or (etag if _HEX40.match(etag) else None),
    )


def _raise_for_listing(response: httpx.Response, repo: str, revision: str) -> None:
    code = response.status_code
    error = response.headers.get("X-Error-Code", "")
    where = endpoint()
    if error == "RevisionNotFound":
        raise RepoNotFound(
            f"revision '{revision}' does not exist in '{repo}' on {where}; "
            "pass a branch, tag or commit that exists with --revision."
        )
    if code == 401 and "Invalid credentials" in response.headers.get("X-Error-Message", ""):
        raise AccessDenied(
            f"{where} rejected the token (HF_TOKEN or the saved `huggingface-cli login`); "
            "create a new read token, or unset HF_TOKEN for public repositories."
        )
    if error == "GatedRepo":
        raise AccessDenied(f"'{repo}' is gated on {where}. {AUTH_HINT}")
    # The hub answers 401 rather than 404 for a repo it will not admit exists to an
    # anonymous caller, so both mean "check the name, or authenticate".
    if code == 404 or (code == 401 and error in ("", "RepoNotFound")):
        raise RepoNotFound(
            f"repository '{repo}' was not found on {where} (HTTP {code}). Check the name "
            "(owner/name, as in the model page URL); if it is private, set HF_TOKEN. "
            "Use --source modelscope for ModelScope repositories."
        )
    raise_for_status(response, f"listing '{repo}' on {where}", AUTH_HINT)


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError as e:
        raise HubError(
            f"{response.url} did not answer JSON; is HF_ENDPOINT ({endpoint()}) a Hugging Face "
            "hub or mirror?"
        ) from e
    if not isinstance(data, dict):
        raise HubError(f"{response.url} answered {type(data).__name__}, expected an object")
    return data
