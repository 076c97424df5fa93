"""The parts of ModelScope's hub API a download needs, over plain httpx.

- ``GET {endpoint}/api/v1/models/{repo}/repo/files?Revision={rev}&Recursive=true`` lists
  every file with ``Path``, ``Size`` and ``Sha256``, inside ``{"Code": 200, "Data":
  {"Files": [...]}}``; directories come back as ``"Type": "tree"`` entries.
- ``GET {endpoint}/api/v1/models/{repo}/repo?Revision={rev}&FilePath={path}`` serves a file
  and honours ``Range``.

The endpoint is ``MODELSCOPE_ENDPOINT`` (a full URL), else ``https://$MODELSCOPE_DOMAIN`` as
the ``modelscope`` package reads it, else https://www.modelscope.cn. Only public repositories
are supported: ModelScope authenticates with login cookies, which hearth does not manage.
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import quote

import httpx

from hearth.hub.errors import HubError, RepoNotFound
from hearth.hub.transfer import Listing, RemoteFile, raise_for_status

NAME = "modelscope"
DEFAULT_REVISION = "master"
AUTH_HINT = (
    "hearth downloads public ModelScope repositories only; for a private one, download it "
    "with the `modelscope` CLI and add it to models.toml by path."
)


def endpoint() -> str:
    if os.environ.get("MODELSCOPE_ENDPOINT"):
        return os.environ["MODELSCOPE_ENDPOINT"].rstrip("/")
    if os.environ.get("MODELSCOPE_DOMAIN"):
        return "https://" + os.environ["MODELSCOPE_DOMAIN"].strip().rstrip("/")
    return "https://www.modelscope.cn"


def headers() -> dict[str, str]:
    return {}


def list_files(client: httpx.Client, repo: str, revision: str) -> Listing:
    base = endpoint()
    response = client.get(
        f"{base}/api/v1/models/{repo}/repo/files",
        params={"Revision": revision, "Recursive": "true"},
    )
    data = _json(response) if response.is_success else _error_body(response)
    if response.status_code == 404 or (response.is_success and data.get("Code") != 200):
        said = f" ModelScope says: {data['Message']}." if data.get("Message") else ""
        raise RepoNotFound(
            f"repository '{repo}' at revision '{revision}' was not found on {base}.{said} Check "
            "the name (owner/name, as in the model page URL) and --revision (ModelScope's "
            "default branch is master). Use --source hf for Hugging Face repositories."
        )
    raise_for_status(response, f"listing '{repo}' on {base}", AUTH_HINT)
    files = []
    for entry in (data.get("Data") or {}).get("Files") or []:
        if entry.get("Type") == "tree":
            continue
        path = entry.get("Path") or entry.get("Name")
        if not isinstance(path, str):
            raise HubError(f"{response.url} listed a file without a path: {entry!r}")
        size = entry.get("Size")
        files.append(
            RemoteFile(
                path=path,
                url=(
                    f"{base}/api/v1/models/{repo}/repo?Revision={quote(revision, safe='')}"
                    f"&FilePath={quote(path, safe='')}"
                ),
                size=int(size) if size is not None else None,
                sha256=entry.get("Sha256") or None,
            )
        )
    return Listing(revision=revision, commit=None, files=files)


def complete(client: httpx.Client, file: RemoteFile) -> RemoteFile:
    """ModelScope's listing already has size and sha256; nothing to fill in."""
    return file


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError as e:
        raise HubError(f"{response.url} did not answer valid JSON: {response.text[:200]}") from e
    if not isinstance(data, dict):
        raise HubError(f"{response.url} answered {type(data).__name__}, expected an object")
    return data


def _error_body(response: httpx.Response) -> dict[str, Any]:
    """The JSON an error answer may carry; an error page that is not JSON carries nothing."""
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}
