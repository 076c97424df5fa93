"""A local hub on 127.0.0.1 that speaks what `hearth models pull` uses of two protocols.

Hugging Face: ``GET /api/models/{repo}/revision/{rev}[?blobs=true]`` (siblings with sizes and
LFS sha256), ``HEAD``/``GET /{repo}/resolve/{rev}/{path}`` (LFS files redirect to ``/cdn/``
with ``X-Linked-Size`` and ``X-Linked-Etag``; git files answer with their blob id as ETag),
error codes in ``X-Error-Code``. ModelScope: ``/api/v1/models/{repo}/repo/files`` and
``/api/v1/models/{repo}/repo?FilePath=``. File bodies honour ``Range: bytes=N-``.

Knobs for failure tests: ``cut_after`` closes the connection after N body bytes (once per
file), ``ignore_range`` answers 200 to ranged requests, ``blobs=False`` drops sizes and
hashes from the HF listing, ``gated`` repos answer 401 GatedRepo for files.
"""

from __future__ import annotations

import hashlib
import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@dataclass
class HubFile:
    data: bytes
    lfs: bool = True
    listed_sha256: str | None = None  # what the listing claims; default: the real sha256

    @property
    def sha256(self) -> str:
        return self.listed_sha256 or hashlib.sha256(self.data).hexdigest()

    @property
    def git_sha1(self) -> str:
        return hashlib.sha1(b"blob %d\0" % len(self.data) + self.data).hexdigest()


@dataclass
class FakeHub:
    url: str = ""
    repos: dict[str, dict[str, HubFile]] = field(default_factory=dict)
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)  # method, path, Range
    cut_after: dict[str, int] = field(default_factory=dict)  # repo path -> bytes, then hang up
    ignore_range: bool = False
    blobs: bool = True
    gated: set[str] = field(default_factory=set)
    token: str | None = None  # when set, the listing wants exactly this bearer token
    authorizations: list[str | None] = field(default_factory=list)

    def ranges(self, suffix: str) -> list[str | None]:
        """Range headers of the GETs whose path ends with ``suffix`` (a file or cdn path)."""
        return [r for m, p, r in self.requests if m == "GET" and p.endswith(suffix)]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    hub: FakeHub

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_HEAD(self) -> None:
        self._route(head=True)

    def do_GET(self) -> None:
        self._route(head=False)

    def _route(self, head: bool) -> None:
        url = urlsplit(self.path)
        path, query = unquote(url.path), parse_qs(url.query)
        self.hub.requests.append(("HEAD" if head else "GET", self.path, self.headers["Range"]))
        if path.startswith("/api/v1/models/"):
            self._modelscope(path.removeprefix("/api/v1/models/"), query)
        elif path.startswith("/api/models/"):
            self._hf_listing(path.removeprefix("/api/models/"), query)
        elif path.startswith("/cdn/"):
            repo, _, name = path.removeprefix("/cdn/").partition("/-/")
            self._body(self.hub.repos[repo][name], name, head)
        elif "/resolve/" in path:
            self._hf_resolve(path, head)
        else:
            self._json(404, {"error": "no such route"})

    def _hf_listing(self, rest: str, query: dict[str, list[str]]) -> None:
        repo, _, revision = rest.partition("/revision/")
        self.hub.authorizations.append(self.headers["Authorization"])
        if self.hub.token and self.headers["Authorization"] != f"Bearer {self.hub.token}":
            bad = {"X-Error-Message": "Invalid credentials in Authorization header"}
            self._json(401, {"error": "Invalid credentials in Authorization header"}, bad)
            return
        if repo not in self.hub.repos:
            self._json(404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"})
            return
        if revision not in ("main", COMMIT):
            self._json(404, {"error": "Invalid rev id"}, {"X-Error-Code": "RevisionNotFound"})
            return
        siblings = []
        for name, f in self.hub.repos[repo].items():
            entry: dict[str, object] = {"rfilename": name}
            if self.hub.blobs and query.get("blobs") == ["true"]:
                entry.update(size=len(f.data), blobId=f.git_sha1)
                if f.lfs:
                    entry["lfs"] = {"sha256": f.sha256, "size": len(f.data), "pointerSize": 134}
            siblings.append(entry)
        self._json(200, {"id": repo, "sha": COMMIT, "siblings": siblings})

    def _hf_resolve(self, path: str, head: bool) -> None:
        repo, _, rest = path.lstrip("/").partition("/resolve/")
        revision, _, name = rest.partition("/")
        f = self.hub.repos.get(repo, {}).get(name)
        if repo in self.hub.gated:
            self._json(401, {"error": "gated"}, {"X-Error-Code": "GatedRepo"}, head)
        elif f is None or revision != COMMIT:
            self._json(404, {"error": "Entry not found"}, {"X-Error-Code": "EntryNotFound"}, head)
        elif f.lfs:
            self.send_response(302)
            self.send_header("Location", f"/cdn/{repo}/-/{name}")
            self.send_header("X-Repo-Commit", COMMIT)
            self.send_header("X-Linked-Size", str(len(f.data)))
            self.send_header("X-Linked-Etag", f'"{f.sha256}"')
            self.send_header("Content-Length", "0")
            self.end_headers()
        else:
            self._body(f, name, head, {"ETag": f'"{f.git_sha1}"', "X-Repo-Commit": COMMIT})

    def _modelscope(self, rest: str, query: dict[str, list[str]]) -> None:
        repo, _, tail = rest.partition("/repo")
        files = self.hub.repos.get(repo)
        if files is None:
            body = {"Code": 10010205001, "Message": "model not found", "Success": False}
            self._json(404, body)
        elif tail == "/files":
            listed: list[dict[str, object]] = [{"Name": "sub", "Path": "sub", "Type": "tree"}]
            for name, f in files.items():
                listed.append(
                    {
                        "Name": name.rsplit("/", 1)[-1],
                        "Path": name,
                        "Type": "blob",
                        "Size": len(f.data),
                        "Sha256": f.sha256,
                        "Revision": COMMIT,
                    }
                )
            self._json(200, {"Code": 200, "Data": {"Files": listed}, "Success": True})
        else:
            name = query["FilePath"][0]
            self._body(files[name], name, head=False)

    def _body(self, f: HubFile, name: str, head: bool, extra: dict[str, str] | None = None) -> None:
        data, start = f.data, 0
        asked = self.headers["Range"]
        if asked and not self.hub.ignore_range:
            start = int(asked.removeprefix("bytes=").split("-")[0])
            if start >= len(data):
                self._json(416, {"error": "range not satisfiable"}, head=head)
                return
        self.send_response(206 if start else 200)
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.send_header("Content-Length", str(len(data) - start))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        if head:
            return
        cut = self.hub.cut_after.pop(name, None)
        if cut is None:
            self.wfile.write(data[start:])
            return
        # Hang up mid-body, as a dropped connection does: the client sees a short read.
        self.wfile.write(data[start : start + cut])
        self.wfile.flush()
        self.connection.shutdown(socket.SHUT_RDWR)
        self.close_connection = True

    def _json(
        self,
        status: int,
        body: object,
        headers: dict[str, str] | None = None,
        head: bool = False,
    ) -> None:
        raw = json.dumps(body).encode()
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        if not head:
            self.wfile.write(raw)


@contextmanager
def running_hub() -> Iterator[FakeHub]:
    hub = FakeHub()
    handler = type("Handler", (_Handler,), {"hub": hub})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    hub.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield hub
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
