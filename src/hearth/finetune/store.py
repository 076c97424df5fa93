"""Finished adapters: ``<home>/adapters/NAME/`` holds ``adapter.gguf`` and ``manifest.json``.

A finished adapter is registered in models.toml as a model of its own (``base`` +
``adapter``), served by ``hearth serve`` over its base's loaded weights.

With a PostgreSQL database the adapters live there too (file, manifest and models.toml
table), so that every replica serves the same ones: registering, re-evaluating or removing
one publishes it, and :func:`sync` (run by ``hearth serve`` and ``hearth finetune list``)
brings a machine's adapters directory and models.toml in line with the database.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hearth.config import Settings
from hearth.errors import UserError
from hearth.hub.local import register, registered_models, unregister
from hearth.storage.adapters import SharedAdapters
from hearth.storage.db import dialect_of

log = logging.getLogger(__name__)

ADAPTERS = "adapters"
RUNS = ".runs"  # unfinished runs and their checkpoints
MANIFEST = "manifest.json"
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


@dataclass(frozen=True)
class Manifest:
    name: str
    base: str
    base_sha256: str
    template_sha256: str
    method: str
    hyperparameters: dict[str, Any]
    data: list[str]
    data_sha256: str
    examples: int
    trained_tokens: int
    seed: int
    versions: dict[str, str]
    loss_curve: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    peak_rss_mib: float = 0.0
    check: dict[str, Any] = field(default_factory=dict)
    created: str = ""
    evaluation: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def adapter_dir(home: Path, name: str) -> Path:
    if not NAME.fullmatch(name):
        raise UserError(f"adapter name {name!r}: use letters, digits, '.', '_' or '-' (at most 64)")
    return home / ADAPTERS / name


def register_adapter(settings: Settings, manifest: Manifest, gguf: Path) -> Path:
    """Move the checked adapter into place, write its manifest, then register it."""
    home = settings.home
    final = adapter_dir(home, manifest.name)
    staging = home / ADAPTERS / f".{manifest.name}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    os.replace(gguf, staging / "adapter.gguf")
    _write_manifest(staging, manifest)
    os.replace(staging, final)
    base = settings.models[manifest.base]
    register(
        home,
        manifest.name,
        {
            "engine": "llamacpp",
            "base": manifest.base,
            "adapter": (final / "adapter.gguf").relative_to(home).as_posix(),
            "template_sha256": manifest.template_sha256,
            "description": f"{manifest.method} adapter over {manifest.base}",
            **({"sampling": dict(base.sampling)} if base.sampling else {}),
        },
    )
    publish(settings, manifest.name)
    return final


def read(home: Path, name: str) -> Manifest:
    path = adapter_dir(home, name) / MANIFEST
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"no adapter '{name}'; `hearth finetune list` shows them") from None
    except ValueError as e:
        raise UserError(f"{path} is not valid JSON: {e}") from e
    known = Manifest.__dataclass_fields__
    return Manifest(**{k: v for k, v in raw.items() if k in known})


def listing(home: Path) -> tuple[list[Manifest], list[str]]:
    """Finished adapters, and the names of unfinished runs (resumable with --resume)."""
    root = home / ADAPTERS
    done = [
        read(home, d.name)
        for d in sorted(root.iterdir() if root.exists() else [])
        if d.is_dir() and not d.name.startswith(".") and (d / MANIFEST).exists()
    ]
    runs = root / RUNS
    unfinished = sorted(d.name for d in runs.iterdir()) if runs.exists() else []
    return done, unfinished


def remove(settings: Settings, name: str) -> bool:
    """Unregister and delete adapter ``name`` (and any unfinished run of that name)."""
    found = _remove_local(settings.home, name)
    with _shared(settings) as shared:
        if shared is not None and name in shared.all():
            shared.delete(name)
            found = True
    return found


def _remove_local(home: Path, name: str) -> bool:
    found = unregister(home, name)
    for path in (adapter_dir(home, name), home / ADAPTERS / RUNS / name):
        if path.exists():
            shutil.rmtree(path)
            found = True
    return found


def save(settings: Settings, manifest: Manifest) -> None:
    """Rewrite a registered adapter's manifest (e.g. with its evaluation), atomically."""
    _write_manifest(adapter_dir(settings.home, manifest.name), manifest)
    publish(settings, manifest.name)


@contextmanager
def _shared(settings: Settings) -> Iterator[SharedAdapters | None]:
    """The database's adapters when it is PostgreSQL (shared by replicas), else None."""
    if dialect_of(settings.db_url) != "postgresql":
        yield None
        return
    from hearth.storage.calllog import open_calllog

    calllog = open_calllog(settings.db_url)
    try:
        yield SharedAdapters(calllog.db)
    finally:
        calllog.close()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def publish(settings: Settings, name: str) -> None:
    """Put adapter ``name`` as it is here (file, manifest, models.toml table) in the shared
    database; nothing without one."""
    with _shared(settings) as shared:
        if shared is not None:
            _publish(shared, settings.home, name)


def _publish(shared: SharedAdapters, home: Path, name: str) -> None:
    directory = adapter_dir(home, name)
    gguf = directory / "adapter.gguf"
    table = registered_models(home).get(name)
    if table is None or not gguf.is_file():
        return
    manifest = (directory / MANIFEST).read_text(encoding="utf-8")
    shared.put(name, manifest, json.dumps(table), gguf.read_bytes(), _sha256(gguf))


def sync(settings: Settings) -> list[str]:
    """Bring this machine's adapters in line with the shared database: adapters added or
    changed elsewhere are written here and registered, ones removed elsewhere removed, and
    ones only here published. Returns the names whose registration changed here (models.toml
    must then be read again). Nothing without a shared database."""
    home = settings.home
    changed: list[str] = []
    with _shared(settings) as shared:
        if shared is None:
            return changed
        rows = shared.all()
        registered = registered_models(home)
        for name, row in rows.items():
            directory = adapter_dir(home, name)
            gguf = directory / "adapter.gguf"
            if row.deleted:
                if _remove_local(home, name):
                    changed.append(name)
                continue
            if name in registered and gguf.is_file() and _sha256(gguf) == row.sha256:
                # the same file: only its manifest may have changed (an evaluation), and
                # the adapter's bytes need not cross the network again
                manifest = shared.manifest(name)
                if (
                    manifest is not None
                    and (directory / MANIFEST).read_text(encoding="utf-8") != manifest
                ):
                    (directory / MANIFEST).write_text(manifest, encoding="utf-8")
                continue
            got = shared.get(name)
            if got is None:
                continue
            manifest, model, data = got
            table = json.loads(model)
            if table.get("base") not in settings.models:
                log.warning(
                    "adapter '%s' is over model '%s', which this machine does not have: "
                    "not registered here",
                    name,
                    table.get("base"),
                )
                continue
            staging = home / ADAPTERS / f".{name}.sync"
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir(parents=True)
            (staging / "adapter.gguf").write_bytes(data)
            (staging / MANIFEST).write_text(manifest, encoding="utf-8")
            shutil.rmtree(directory, ignore_errors=True)
            os.replace(staging, directory)
            register(home, name, table)
            changed.append(name)
        for manifest_ in listing(home)[0]:
            if manifest_.name not in rows:
                _publish(shared, home, manifest_.name)
    return changed


def _write_manifest(directory: Path, manifest: Manifest) -> None:
    path = directory / MANIFEST
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(manifest.to_json(), ensure_ascii=False, indent=2), encoding="utf-8")
    os.replace(tmp, path)
