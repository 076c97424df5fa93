"""App files in a directory (``$HEARTH_HOME/apps``), re-read when they change.

Every lookup stats the directory (tens of microseconds for a few hundred files) and parses
only files whose size or modification time moved, so an edit, a copy or ``PUT
/v1/apps/{name}`` takes effect on the next request without a restart. A file that does not
parse is reported by ``broken()`` and serves nothing; it never takes the others down.
Writes go to a temporary file that is renamed into place, so a reader never sees half a file.

With a shared database (PostgreSQL, several replicas) the directory is each replica's copy
of the ``app_files`` table: what ``put``/``delete`` change goes to the table too, and every
replica brings its directory up to date from the table at most ``SYNC_S`` after a change.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

from hearth.apps.schema import NAME_PATTERN
from hearth.apps.source import AppInvalid, Problem
from hearth.apps.spec import App, parse_app
from hearth.errors import UserError
from hearth.storage.appfiles import SharedAppFiles

SUFFIXES = (".yaml", ".yml", ".json")
SYNC_S = 0.5  # how stale a replica's copy of the shared app files may be
log = logging.getLogger(__name__)


class AppNotFound(UserError):
    status = 404
    code = "app_not_found"

    def __init__(self, name: str, known: list[str]) -> None:
        names = ", ".join(known) or "none"
        super().__init__(
            f"No app '{name}'. Apps: {names}. Add one with `hearth apps add FILE` or "
            "PUT /v1/apps/{name}.",
            param="app",
        )


@dataclass(frozen=True)
class _Entry:
    stamp: tuple[int, int]  # (mtime_ns, size)
    app: App | None
    error: AppInvalid | None


class AppStore:
    def __init__(self, directory: Path, shared: SharedAppFiles | None = None) -> None:
        self.directory = directory
        self.shared = shared
        self._files: dict[Path, _Entry] = {}
        self._lock = threading.Lock()
        self._synced_at = -SYNC_S
        self._seen: dict[str, float] = {}  # shared app -> the version this copy has
        self._sync_lock = threading.Lock()

    def _sync(self) -> None:
        """Bring the directory up to date with the shared table (throttled)."""
        if self.shared is None or time.monotonic() - self._synced_at < SYNC_S:
            return
        with self._sync_lock:
            if time.monotonic() - self._synced_at < SYNC_S:
                return
            first = not self._seen and self._synced_at < 0
            versions = self.shared.versions()
            if first:
                self._publish_local(versions)
                versions = self.shared.versions()
            local = self._scan_local()
            for name, (updated, deleted) in versions.items():
                if self._seen.get(name) == updated:
                    continue
                path = local[name].path if name in local else None
                if deleted:
                    if path is not None:
                        path.unlink(missing_ok=True)
                else:
                    text = self.shared.text(name)
                    if text is not None:
                        _write(path or self.directory / f"{name}.yaml", text)
                self._seen[name] = updated
            self._synced_at = time.monotonic()

    def _publish_local(self, versions: dict[str, tuple[float, bool]]) -> None:
        """On first sync, apps only this directory has go to the table (a first replica
        seeds it); apps deleted in the table are not brought back."""
        assert self.shared is not None
        for app in self._scan_local().values():
            if app.name not in versions and app.path is not None:
                self.shared.put(app.name, app.path.read_text(encoding="utf-8-sig"))
                log.info("app '%s' published to the shared database", app.name)

    def _scan(self) -> dict[str, App]:
        self._sync()
        return self._scan_local()

    def _scan_local(self) -> dict[str, App]:
        with self._lock:
            seen: dict[Path, tuple[int, int]] = {}
            try:
                with os.scandir(self.directory) as it:
                    for e in it:
                        if e.name.endswith(SUFFIXES) and not e.name.startswith("."):
                            st = e.stat()
                            seen[Path(e.path)] = (st.st_mtime_ns, st.st_size)
            except FileNotFoundError:
                pass
            for path in list(self._files):
                if path not in seen:
                    del self._files[path]
            for path, stamp in seen.items():
                entry = self._files.get(path)
                if entry is None or entry.stamp != stamp:
                    self._files[path] = _read(path, stamp)
            apps: dict[str, App] = {}
            for path in sorted(self._files):
                app = self._files[path].app
                if app is not None:
                    apps.setdefault(app.name, app)  # two files, one name: the first wins
            return apps

    def names(self) -> list[str]:
        return sorted(self._scan())

    def all(self) -> list[App]:
        apps = self._scan()
        return [apps[n] for n in sorted(apps)]

    def find(self, name: str) -> App | None:
        return self._scan().get(name)

    def get(self, name: str) -> App:
        apps = self._scan()
        if name not in apps:
            raise AppNotFound(name, sorted(apps))
        return apps[name]

    def broken(self) -> dict[str, AppInvalid]:
        """Files that do not parse, with why, by file name."""
        self._scan()
        return {p.name: e.error for p, e in sorted(self._files.items()) if e.error is not None}

    def put(self, text: str, *, name: str | None = None) -> tuple[App, bool]:
        """Check ``text`` and store it as ``<app>.yaml``; True when it is new. ``name``, when
        given, must be the app's own name (the URL of ``PUT /v1/apps/{name}``)."""
        if name is not None and not re.match(NAME_PATTERN, name):
            raise UserError(f"'{name}' is not a valid app name", param="name")
        app = parse_app(text, source=name or "app", base=self.directory)
        if name is not None and app.name != name:
            raise UserError(
                f"the file is app '{app.name}' but the URL names '{name}'; make them agree",
                param="app",
            )
        existing = self._path_of(app.name)
        target = existing or self.directory / f"{app.name}.yaml"
        if target.suffix == ".json" and not text.lstrip().startswith("{"):
            target = target.with_suffix(".yaml")  # YAML text does not go into a .json file
            if existing is not None:
                existing.unlink()
        _write(target, text)
        if self.shared is not None:
            self._seen[app.name] = self.shared.put(app.name, text)
        return self.get(app.name), existing is None

    def delete(self, name: str) -> None:
        path = self._path_of(name)
        if path is None:
            raise AppNotFound(name, self.names())
        path.unlink(missing_ok=True)
        if self.shared is not None:
            self._seen[name] = self.shared.delete(name)

    def _path_of(self, name: str) -> Path | None:
        self._scan()
        with self._lock:
            for path, entry in sorted(self._files.items()):
                if entry.app is not None and entry.app.name == name:
                    return path
        return None


def _write(target: Path, text: str) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text if text.endswith("\n") else text + "\n")
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _read(path: Path, stamp: tuple[int, int]) -> _Entry:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        return _Entry(stamp, None, AppInvalid(path.name, [Problem("", f"cannot read it: {e}")]))
    try:
        app = parse_app(text, source=path.name, base=path.parent)
    except AppInvalid as e:
        return _Entry(stamp, None, e)
    return _Entry(stamp, replace(app, path=path), None)
