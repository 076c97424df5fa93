"""A Hugging Face model directory (safetensors) to a servable GGUF, with llama.cpp's own
converter.

The converter (``convert_hf_to_gguf.py`` with its ``conversion`` package and ``gguf-py``)
is not copied into hearth: it is taken from the llama-cpp-python source distribution on the
package index, pinned by version and sha256, and unpacked once into
``<HEARTH_HOME>/tools/llama.cpp-convert-<version>/`` (``HEARTH_CONVERTER_DIR`` names another
place, e.g. one prepared ahead on a machine without an index). The converter writes f32,
f16, bf16 and q8_0 itself; ``q4_k_m`` is quantised from its f16 output by llama.cpp's
``llama_model_quantize``, which only a built llama-cpp-python exports (``hearth[quantize]``).

A conversion writes ``<name>.<type>.gguf.part`` next to where the model goes and renames it
when whole, then registers it: an interrupted or failed run leaves nothing registered and no
file that looks finished.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hearth.errors import UserError
from hearth.hub.gguf_info import read_gguf
from hearth.hub.local import DEFAULT_MAX_CONTEXT, gguf_context, register, stored_path

LLAMA_CPP_PYTHON = "0.3.36"
SDIST_SHA256 = "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e"
VENDOR = f"llama_cpp_python-{LLAMA_CPP_PYTHON}/vendor/llama.cpp/"
KEEP = ("convert_hf_to_gguf.py", "conversion/", "gguf-py/", "LICENSE")

CONVERTER_TYPES = ("f32", "f16", "bf16", "q8_0")
TYPES = (*CONVERTER_TYPES, "q4_k_m")
LLAMA_FTYPE_MOSTLY_Q4_K_M = 15  # llama.h's enum llama_ftype
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")

Say = Callable[[str], None]


@dataclass(frozen=True)
class Source:
    directory: Path
    architecture: str
    model_type: str
    config: dict[str, Any]


@dataclass(frozen=True)
class Converted:
    name: str
    path: Path
    architecture: str
    parameters: int
    bytes: int
    seconds: float
    type: str
    chat_template: bool


def converter_dir(home: Path) -> Path:
    override = os.environ.get("HEARTH_CONVERTER_DIR")
    if override:
        return Path(override)
    return home / "tools" / f"llama.cpp-convert-{LLAMA_CPP_PYTHON}"


def ensure_converter(home: Path, say: Say = lambda _: None) -> Path:
    """The unpacked converter, fetched from the package index the first time."""
    target = converter_dir(home)
    if ready(target):
        return target
    if os.environ.get("HEARTH_CONVERTER_DIR"):
        raise UserError(
            f"HEARTH_CONVERTER_DIR={target} holds no prepared converter; prepare it with "
            f"`python -m hearth.hub.convert {target}` (reaches the package index once)"
        )
    fetch_converter(target, say)
    return target


def ready(target: Path) -> bool:
    """``target`` holds this version's converter, wholly unpacked."""
    marker = target / ".complete"
    return marker.is_file() and marker.read_text().split() == [LLAMA_CPP_PYTHON, SDIST_SHA256]


def fetch_converter(target: Path, say: Say = lambda _: None) -> None:
    """Download llama-cpp-python's sdist (checked against its pinned sha256) with pip, so
    the index, mirror and certificates pip is configured with apply, and unpack the
    converter's files from it into ``target``."""
    say(
        f"fetching llama.cpp's converter (llama-cpp-python {LLAMA_CPP_PYTHON} source, ~77 MB, once)"
    )
    with tempfile.TemporaryDirectory(prefix="hearth-converter-") as tmp:
        wanted = Path(tmp) / "requirements.txt"
        wanted.write_text(
            f"llama-cpp-python=={LLAMA_CPP_PYTHON} --hash=sha256:{SDIST_SHA256}\n",
            encoding="utf-8",
        )
        done = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
             "--require-hashes", "-r", str(wanted), "-d", tmp, "-q"],
            capture_output=True, text=True,
        )  # fmt: skip
        archives = list(Path(tmp).glob("llama_cpp_python-*.tar.gz"))
        if done.returncode != 0 or not archives:
            raise UserError(
                "could not download llama-cpp-python's source (for llama.cpp's converter) "
                f"from the package index: {(done.stderr or done.stdout).strip()[-800:]}"
            )
        staging = target.with_name(target.name + ".part")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        with tarfile.open(archives[0]) as tar:
            for member in tar.getmembers():
                inner = member.name.removeprefix(VENDOR)
                if member.name.startswith(VENDOR) and inner.startswith(KEEP):
                    member.name = inner
                    tar.extract(member, staging, filter="data")
        if not (staging / "convert_hf_to_gguf.py").is_file():
            raise UserError(f"llama-cpp-python {LLAMA_CPP_PYTHON} has no convert_hf_to_gguf.py")
        (staging / ".complete").write_text(f"{LLAMA_CPP_PYTHON} {SDIST_SHA256}\n")
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)


def supported_architectures(converter: Path) -> set[str]:
    """The ``architectures`` names the converter registers a class for (read from its
    ``@ModelBase.register(...)`` lines: importing it would import torch)."""
    names: set[str] = set()
    for source in [converter / "convert_hf_to_gguf.py", *(converter / "conversion").glob("*.py")]:
        text = source.read_text(encoding="utf-8")
        for args in re.findall(r"@\w+\.register\(([^)]*)\)", text):
            names.update(re.findall(r"""["']([A-Za-z0-9_]+)["']""", args))
    return names


def resolve(models_dir: Path, source: str) -> Path:
    """A directory path, or a repository pulled with ``hearth models pull`` (its newest
    revision; ``owner/name`` as on the hub)."""
    path = Path(source).expanduser()
    if path.is_dir():
        return path
    pulled = [
        d
        for hub in ("hf", "modelscope")
        for d in (models_dir / hub / source.replace("/", "--")).glob("*")
        if d.is_dir() and (d / "config.json").is_file()
    ]
    if not pulled:
        raise UserError(
            f"'{source}' is neither a directory nor a repository pulled here; pull it with "
            f"`hearth models pull {source}` (or `--source modelscope`), or give its path"
        )
    return max(pulled, key=lambda d: d.stat().st_mtime)


def inspect_source(directory: Path, converter: Path | None = None) -> Source:
    """What the directory holds, checked before any work: a config naming an architecture
    the converter knows, weights, a tokenizer."""
    config_file = directory / "config.json"
    if not config_file.is_file():
        raise UserError(
            f"{directory} has no config.json: not a Hugging Face model directory (for a GGUF "
            "file there is nothing to convert: register it by path)"
        )
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except ValueError as e:
        raise UserError(f"{config_file} is not valid JSON: {e}") from e
    arches = config.get("architectures") or []
    if not arches:
        raise UserError(f"{config_file} names no architectures: cannot tell what model it is")
    arch = str(arches[0])
    model_type = str(config.get("model_type", "?"))
    if converter is not None and arch not in (known := supported_architectures(converter)):
        near = sorted(a for a in known if a.lower().startswith(model_type.lower()[:4]))
        raise UserError(
            f"llama.cpp's converter (llama-cpp-python {LLAMA_CPP_PYTHON}) does not support "
            f"architecture '{arch}' (model_type '{model_type}')"
            + (f"; it knows {', '.join(near[:8])}" if near else "")
            + '. Serve it with engine = "transformers", or look for a GGUF made by others.'
        )
    weights = [*directory.glob("*.safetensors"), *directory.glob("pytorch_model*.bin")]
    if not weights:
        raise UserError(f"{directory} has no weights (*.safetensors or pytorch_model*.bin)")
    tokenizer = ("tokenizer.json", "tokenizer.model", "vocab.json", "tokenizer_config.json")
    if not any((directory / t).is_file() for t in tokenizer):
        raise UserError(f"{directory} has no tokenizer files ({', '.join(tokenizer)})")
    return Source(directory, arch, model_type, config)


def default_name(directory: Path, kind: str) -> str:
    # a pulled repository's directory is <owner>--<name>/<revision>
    base = directory.parent.name if (directory.parent.name.count("--") == 1) else directory.name
    base = base.split("--", 1)[-1]
    return re.sub(r"[^A-Za-z0-9._-]+", "-", f"{base}-{kind}".lower()).strip("-")[:64]


def convert(
    home: Path,
    source: str,
    *,
    name: str | None = None,
    kind: str = "f16",
    models_dir: Path | None = None,
    say: Say = lambda _: None,
    progress: Callable[[int, int], None] | None = None,
    max_context: int = DEFAULT_MAX_CONTEXT,
) -> Converted:
    """Convert ``source`` to ``kind`` and register it as ``name``."""
    if kind not in TYPES:
        raise UserError(f"--type {kind!r}: use one of {', '.join(TYPES)}")
    if kind == "q4_k_m":
        _quantizer()  # fail before the long part, not after it
    models_dir = models_dir or home / "models"
    directory = resolve(models_dir, source)
    _check_libraries(directory)
    converter = ensure_converter(home, say)
    src = inspect_source(directory, converter)
    name = name or default_name(directory, kind)
    if not NAME.fullmatch(name):
        raise UserError(f"--name {name!r}: use letters, digits, '.', '_' or '-' (at most 64)")
    out_dir = models_dir / "converted"
    out_dir.mkdir(parents=True, exist_ok=True)
    final = out_dir / f"{name}.gguf"
    part = final.with_name(final.name + ".part")
    f16_part = final.with_name(final.name + ".f16.part")
    start = time.monotonic()
    try:
        first = f16_part if kind == "q4_k_m" else part
        _run_converter(converter, src, first, "f16" if kind == "q4_k_m" else kind, progress)
        if kind == "q4_k_m":
            say("quantising to q4_k_m with llama.cpp")
            _quantize(f16_part, part)
            f16_part.unlink()
        os.replace(part, final)
    finally:
        for leftover in (part, f16_part):
            leftover.unlink(missing_ok=True)
    seconds = time.monotonic() - start
    facts = read_gguf(final)
    register(
        home,
        name,
        {
            "engine": "llamacpp",
            "path": stored_path(home, final),
            "context": gguf_context(final, max_context),
            "description": f"{src.architecture} converted to {kind} from {directory}",
        },
    )
    return Converted(
        name=name,
        path=final,
        architecture=facts.architecture or src.architecture,
        parameters=facts.params,
        bytes=final.stat().st_size,
        seconds=seconds,
        type=kind,
        chat_template=bool(facts.chat_template),
    )


def _check_libraries(directory: Path) -> None:
    """What llama.cpp's converter imports, present in this Python (it runs on it)."""
    import importlib.util

    needed = ["torch", "transformers", "numpy"]
    if (directory / "tokenizer.model").is_file():
        needed += ["sentencepiece", "google.protobuf"]
    missing = [m for m in needed if importlib.util.find_spec(m.split(".")[0]) is None]
    if missing:
        raise UserError(
            f"llama.cpp's converter needs {', '.join(missing)} in this Python: "
            "pip install 'hearth[transformers]'"
        )


_TENSOR_LINE = re.compile(r"^INFO:hf-to-gguf:\S+,\s+torch\.\w+ --> \w+, shape")


def _run_converter(
    converter: Path,
    src: Source,
    out: Path,
    outtype: str,
    progress: Callable[[int, int], None] | None,
) -> None:
    total = _tensor_count(src.directory)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("NO_LOCAL_GGUF", None)  # its own gguf-py, the version it was written against
    proc = subprocess.Popen(
        [sys.executable, str(converter / "convert_hf_to_gguf.py"), str(src.directory),
         "--outfile", str(out), "--outtype", outtype],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
    )  # fmt: skip
    tail: list[str] = []
    done = 0
    assert proc.stdout is not None
    try:
        for raw in proc.stdout:
            for line in raw.decode("utf-8", "replace").replace("\r", "\n").splitlines():
                if not line.strip():
                    continue
                tail = [*tail[-40:], line]
                if _TENSOR_LINE.match(line):
                    done += 1
                    if progress is not None:
                        progress(done, max(total, done))
        code = proc.wait()
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    if code != 0:
        detail = "\n".join(tail[-15:])
        if re.search(r"Model \S+ is not supported|Architecture \S+ not supported", detail):
            raise UserError(
                f"llama.cpp's converter does not support architecture '{src.architecture}' "
                f"(model_type '{src.model_type}'):\n{detail}"
            )
        raise UserError(f"llama.cpp's converter failed (exit {code}) on {src.directory}:\n{detail}")


def _tensor_count(directory: Path) -> int:
    """Tensors in the checkpoint, from the safetensors headers (no weights read)."""
    count = 0
    for file in directory.glob("*.safetensors"):
        with open(file, "rb") as f:
            size = int.from_bytes(f.read(8), "little")
            header = json.loads(f.read(size))
        count += sum(1 for k in header if k != "__metadata__")
    return count


def _quantizer() -> Any:
    try:
        import llama_cpp  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        raise UserError(
            "--type q4_k_m needs llama.cpp's quantizer, which only a built llama-cpp-python "
            "exports: `pip install 'hearth[quantize]'` (builds llama.cpp from source, about "
            "11 minutes on 2 cores). Or convert with --type q8_0 now: about 1.8x the size of "
            "q4_k_m, and closer to the original."
        ) from None
    return llama_cpp


def _quantize(src: Path, dst: Path) -> None:
    llama_cpp = _quantizer()
    try:  # llama.cpp logs every tensor it quantises; keep its errors only
        from llama_cpp import _logger  # type: ignore[import-not-found, unused-ignore]

        _logger.set_verbose(False)
    except (ImportError, AttributeError):
        pass
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = LLAMA_FTYPE_MOSTLY_Q4_K_M
    params.nthread = os.cpu_count() or 1
    code = llama_cpp.llama_model_quantize(
        str(src).encode(), str(dst).encode(), llama_cpp.ctypes.byref(params)
    )
    if code != 0 or not dst.is_file():
        raise UserError(f"llama.cpp could not quantise {src.name} to q4_k_m (code {code})")


def gguf_to_hf(gguf: Path, out: Path) -> Path:
    """The reverse, for checks and benchmarks: a GGUF as transformers reads it (dequantised
    to float32) saved in Hugging Face layout (config.json, model.safetensors, tokenizer)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.float32
    )
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # the dequantised weights are plain tensors now
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(loaded.state_dict())
    plain.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


if __name__ == "__main__":  # prepare a converter directory ahead: python -m hearth.hub.convert DIR
    if len(sys.argv) != 2:
        sys.exit("usage: python -m hearth.hub.convert DIR")
    where = Path(sys.argv[1])
    if not ready(where):
        fetch_converter(where, print)
    print(where)
