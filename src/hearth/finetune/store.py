"""Finished adapters: ``<home>/adapters/NAME/`` holds ``adapter.gguf`` and ``manifest.json``.

A finished adapter is registered in models.toml as a model of its own (``base`` +
``adapter``), served by ``hearth serve`` over its base's loaded weights.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hearth.config import Settings
from hearth.errors import UserError
from hearth.hub.local import register, unregister

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


def remove(home: Path, name: str) -> bool:
    """Unregister and delete adapter ``name`` (and any unfinished run of that name)."""
    found = unregister(home, name)
    for path in (adapter_dir(home, name), home / ADAPTERS / RUNS / name):
        if path.exists():
            shutil.rmtree(path)
            found = True
    return found


def save(home: Path, manifest: Manifest) -> None:
    """Rewrite a registered adapter's manifest (e.g. with its evaluation), atomically."""
    _write_manifest(adapter_dir(home, manifest.name), manifest)


def _write_manifest(directory: Path, manifest: Manifest) -> None:
    path = directory / MANIFEST
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(manifest.to_json(), ensure_ascii=False, indent=2), encoding="utf-8")
    os.replace(tmp, path)
