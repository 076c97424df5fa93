"""The local model registry: ``<HEARTH_HOME>/models.toml``, written by ``hearth models pull``.

It holds ``[models."<name>"]`` tables in the same shape as ``config.toml``, so config can
merge them in; keeping them in their own file means a pull never rewrites the user's
hand-written config. Paths under the home are stored relative to it, as config resolves them,
so the whole home can move.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from pathlib import Path, PurePosixPath
from typing import Any

from hearth.errors import ConfigError, HearthError
from hearth.hub.transfer import disk_errors

MODELS_FILE = "models.toml"
DEFAULT_MAX_CONTEXT = 4096
# Shards of a split GGUF: llama.cpp is given the first and finds the rest next to it.
_SHARD = re.compile(r"-(\d{5})-of-(\d{5})$")


def registered_models(home: Path) -> dict[str, dict[str, Any]]:
    """The raw ``[models.*]`` tables of ``<home>/models.toml``; empty when there is none."""
    path = home / MODELS_FILE
    if not path.exists():
        return {}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(
            f"{path} is not valid TOML: {e}. Fix or delete it; `hearth models pull` rewrites "
            "entries for the models it downloads."
        ) from e
    models = data.get("models", {})
    if not isinstance(models, dict):
        raise ConfigError(f"{path}: 'models' must be a table of [models.\"<name>\"] tables")
    return models


def model_name(repo: str, path: str) -> str | None:
    """The served name for GGUF ``path`` of ``repo``, or None when it is not a model by itself.

    Repo basename plus file stem, lowercased; a stem that already starts with the basename
    (less a ``-GGUF`` suffix, as in most GGUF repos) is used alone, so
    ``Qwen/Qwen2.5-0.5B-Instruct-GGUF`` + ``qwen2.5-0.5b-instruct-q4_k_m.gguf`` is
    ``qwen2.5-0.5b-instruct-q4_k_m``. Split files register once, under their first shard.
    """
    p = PurePosixPath(path)
    if p.suffix.lower() != ".gguf" or p.name.lower().startswith("mmproj"):
        return None  # vision projectors go alongside a model, they are not served alone
    stem = p.stem.lower()
    shard = _SHARD.search(stem)
    if shard:
        if int(shard.group(1)) != 1:
            return None
        stem = stem[: shard.start()]
    base = repo.rsplit("/", 1)[-1].lower()
    base = base.removesuffix("-gguf").removesuffix("_gguf")
    return stem if stem.startswith(base) else f"{base}-{stem}"


def gguf_context(path: Path, cap: int = DEFAULT_MAX_CONTEXT) -> int:
    """The model's trained context length from GGUF metadata, capped to keep memory modest."""
    # gguf_info parses the header itself: gguf.GGUFReader takes seconds on a large vocabulary.
    from hearth.hub.gguf_info import read_gguf

    try:
        trained = read_gguf(path).context_length
    except (HearthError, OSError):
        return cap  # metadata we cannot read: the cap is a safe default for llama.cpp
    return min(trained, cap) if trained else cap


def register(home: Path, name: str, table: dict[str, Any]) -> None:
    """Merge ``table`` into ``[models."<name>"]`` of models.toml, written atomically.

    Keys the user edited by hand (e.g. ``parallel``, ``sampling``) survive a re-pull;
    ``context`` too, so a deliberately raised limit is not reset to the default cap.
    """
    models = registered_models(home)
    entry = dict(models.get(name, {}))
    for key, value in table.items():
        if key != "context" or "context" not in entry:
            entry[key] = value
    models[name] = entry
    _save(home, models)


def unregister(home: Path, name: str) -> bool:
    """Drop ``[models."<name>"]`` from models.toml; False when it was not there."""
    models = registered_models(home)
    if name not in models:
        return False
    del models[name]
    _save(home, models)
    return True


def _save(home: Path, models: dict[str, Any]) -> None:
    """Write models.toml atomically: a crash leaves the old file or the new one."""
    path = home / MODELS_FILE
    tmp = path.with_name(f".{MODELS_FILE}.{os.getpid()}.tmp")
    with disk_errors(path):
        home.mkdir(parents=True, exist_ok=True)
        tmp.write_text(_dump(models), encoding="utf-8")
        os.replace(tmp, path)


def stored_path(home: Path, path: Path) -> str:
    """``path`` as models.toml keeps it: relative to the home when inside it, so the home
    can move; absolute otherwise."""
    try:
        return path.resolve().relative_to(home.resolve()).as_posix()
    except ValueError:
        return str(path.resolve())


def register_hf_directory(
    home: Path,
    repo: str,
    directory: Path,
    *,
    source: str,
    revision: str,
    max_context: int = DEFAULT_MAX_CONTEXT,
) -> str | None:
    """Register a downloaded Hugging Face model directory (config.json and safetensors
    weights) as a ``transformers`` model; returns its name, or None when it is not one."""
    if not (directory / "config.json").is_file() or not any(directory.glob("*.safetensors")):
        return None
    name = repo.rsplit("/", 1)[-1].lower()
    try:
        config = json.loads((directory / "config.json").read_text(encoding="utf-8"))
    except ValueError:
        config = {}
    positions = config.get("max_position_embeddings")
    context = min(positions, max_context) if isinstance(positions, int) else max_context
    register(
        home,
        name,
        {
            "engine": "transformers",
            "path": stored_path(home, directory),
            "context": context,
            "description": f"{repo} (safetensors) from {source}@{revision}, with transformers",
        },
    )
    return name


def register_gguf(
    home: Path,
    repo: str,
    repo_path: str,
    file: Path,
    *,
    source: str,
    revision: str,
    max_context: int = DEFAULT_MAX_CONTEXT,
) -> str | None:
    """Register a downloaded GGUF as a servable llama.cpp model; returns its name."""
    name = model_name(repo, repo_path)
    if name is None:
        return None
    register(
        home,
        name,
        {
            "engine": "llamacpp",
            "path": stored_path(home, file),
            "context": gguf_context(file, max_context),
            "description": f"{repo_path} from {source}:{repo}@{revision}",
        },
    )
    return name


def _dump(models: dict[str, dict[str, Any]]) -> str:
    lines = ["# Written by `hearth models pull`; edits to existing keys are kept on re-pull."]
    for name in sorted(models):
        lines.append("")
        lines.append(f"[models.{json.dumps(name)}]")
        for key, value in models[name].items():
            lines.append(f"{_key(key)} = {_value(value)}")
    return "\n".join(lines) + "\n"


def _key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


def _value(value: Any) -> str:
    # JSON strings are valid TOML basic strings (same escapes), so json.dumps quotes them.
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + " }"
    raise ConfigError(f"cannot write {value!r} to {MODELS_FILE}; edit that entry by hand")
