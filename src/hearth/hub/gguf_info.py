"""Model facts read from a GGUF file or a Hugging Face ``config.json``: architecture, shapes,
parameter count, quantisation, tokenizer and chat template.

GGUF headers are parsed here with gguf's own constants rather than ``gguf.GGUFReader``: the
reader materialises every vocabulary string and merge as numpy views (about 8 s for a
150k-token vocabulary), while we only need each array's length. The tests check both agree.
"""

from __future__ import annotations

import json
import mmap
import struct
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFValueType, LlamaFileType

from hearth.config import Settings
from hearth.errors import UserError
from hearth.hub.bundled import BUNDLED, ensure

GGUF_MAGIC = b"GGUF"
_KEEP_ARRAY = 64  # arrays longer than this (vocabularies, merges) are kept as a length only
_SCALARS = {
    GGUFValueType.UINT8: "B",
    GGUFValueType.INT8: "b",
    GGUFValueType.UINT16: "H",
    GGUFValueType.INT16: "h",
    GGUFValueType.UINT32: "I",
    GGUFValueType.INT32: "i",
    GGUFValueType.FLOAT32: "f",
    GGUFValueType.BOOL: "?",
    GGUFValueType.UINT64: "Q",
    GGUFValueType.INT64: "q",
    GGUFValueType.FLOAT64: "d",
}


class UnknownModel(UserError):
    status = 404
    code = "model_not_found"


class NotAModelFile(UserError):
    code = "invalid_model_file"


@dataclass(frozen=True)
class TensorMix:
    """Tensors of one ggml type in a file."""

    type: str
    tensors: int
    params: int
    bytes: int


@dataclass(frozen=True)
class ModelFacts:
    path: str
    format: str  # "gguf" or "hf-config"
    architecture: str
    name: str = ""
    params: int = 0  # GGUF: sum of tensor elements; HF: computed from the config's shapes
    weights_bytes: int | None = None  # bytes of all tensors, when the files say
    file_type: str = ""  # GGUF: llama.cpp file type (Q4_K_M); HF: torch dtype (bf16)
    tensor_mix: tuple[TensorMix, ...] = ()
    context_length: int | None = None
    embedding_length: int | None = None
    feed_forward_length: int | None = None
    layers: int | None = None
    heads: int | None = None
    kv_heads: int | None = None
    head_dim: int | None = None
    vocab_size: int | None = None
    tied_embeddings: bool | None = None
    tokenizer: str = ""  # GGUF: tokenizer.ggml.model (gpt2, llama); HF: tokenizer.json model
    tokenizer_pre: str = ""
    chat_template: str | None = None
    rope: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def resolve(model: str, settings: Settings) -> Path:
    """Path of a registered model's file (bundled ones are assembled), or ``model`` as a path."""
    spec = settings.models.get(model)
    if spec is None:
        path = Path(model).expanduser()
        if path.exists():
            return path
        raise UnknownModel(
            f"'{model}' is neither a registered model ({', '.join(settings.models)}) nor an "
            "existing path. Run `hearth models list`, or pass a .gguf file, a Hugging Face "
            "config.json or a model directory.",
            param="model",
        )
    if spec.path:
        path = Path(spec.path)
        if not path.exists():
            raise NotAModelFile(
                f"model '{model}' points to {path}, which does not exist; fix its path in "
                f"{settings.home / 'config.toml'}.",
                param="model",
            )
        return path
    if spec.bundled in BUNDLED:
        return ensure(spec.bundled, settings.models_dir)
    raise NotAModelFile(
        f"model '{model}' (engine {spec.engine}) has no GGUF file to read; pass a .gguf path "
        "or a Hugging Face config.json instead.",
        param="model",
    )


def read_facts(path: Path) -> ModelFacts:
    """Facts from a .gguf file, a config.json, or a directory holding a config.json."""
    if path.is_dir() or path.suffix == ".json":
        return read_hf_config(path)
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic != GGUF_MAGIC:
        raise NotAModelFile(
            f"{path} is not a GGUF file (it starts with {magic!r}, not b'GGUF'). Pass a .gguf "
            "file, a Hugging Face config.json or a model directory.",
            param="model",
        )
    return read_gguf(path)


# --- GGUF -----------------------------------------------------------------------------------


@dataclass
class _Header:
    fields: dict[str, Any]  # long arrays appear as their length, under "<key>#len"
    tensors: list[tuple[str, GGMLQuantizationType, int]]  # name, type, elements


class _Cursor:
    def __init__(self, buf: mmap.mmap, order: str) -> None:
        self.buf, self.pos = buf, 0
        self.structs = {code: struct.Struct(order + code) for code in "BbHhIifQqd?"}

    def unpack(self, code: str) -> Any:
        packer = self.structs[code]
        (value,) = packer.unpack_from(self.buf, self.pos)
        self.pos += packer.size
        return value

    def string(self) -> str:
        n = self.unpack("Q")
        self.pos += n
        return bytes(self.buf[self.pos - n : self.pos]).decode("utf-8", errors="replace")

    def value(self, vtype: GGUFValueType, key: str, out: dict[str, Any]) -> Any:
        if vtype == GGUFValueType.STRING:
            return self.string()
        if vtype != GGUFValueType.ARRAY:
            return self.unpack(_SCALARS[vtype])
        itype, count = GGUFValueType(self.unpack("I")), self.unpack("Q")
        if count <= _KEEP_ARRAY or itype == GGUFValueType.ARRAY:
            return [self.value(itype, key, out) for _ in range(count)]
        out[key + "#len"] = count
        if itype == GGUFValueType.STRING:
            for _ in range(count):
                n = self.unpack("Q")
                self.pos += n
        else:
            self.pos += count * self.structs[_SCALARS[itype]].size
        return None


def _read_header(path: Path) -> _Header:
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        # A version whose low half is zero was written on a machine of the other byte order.
        order = "<" if struct.unpack_from("<I", buf, 4)[0] & 0xFFFF else ">"
        cur = _Cursor(buf, order)
        cur.pos = 4
        version, n_tensors, n_kv = cur.unpack("I"), cur.unpack("Q"), cur.unpack("Q")
        if version < 2:
            raise NotAModelFile(f"{path} is GGUF version {version}; re-convert it with llama.cpp.")
        fields: dict[str, Any] = {}
        for _ in range(n_kv):
            key = cur.string()
            value = cur.value(GGUFValueType(cur.unpack("I")), key, fields)
            if value is not None:
                fields[key] = value
        tensors = []
        for _ in range(n_tensors):
            name = cur.string()
            dims = [cur.unpack("Q") for _ in range(cur.unpack("I"))]
            ttype = GGMLQuantizationType(cur.unpack("I"))
            cur.unpack("Q")  # data offset
            elements = 1
            for d in dims:
                elements *= d
            tensors.append((name, ttype, elements))
        return _Header(fields, tensors)


def read_gguf(path: Path) -> ModelFacts:
    try:
        header = _read_header(path)
    except (struct.error, ValueError, KeyError) as e:
        raise NotAModelFile(
            f"{path} is not a readable GGUF file ({e}); re-download it, or upgrade gguf "
            "(`pip install -U gguf`) if it uses a newer tensor type.",
            param="model",
        ) from e
    f = header.fields
    arch = str(f.get("general.architecture", ""))

    def arch_int(key: str) -> int | None:
        value = f.get(f"{arch}.{key}")
        if isinstance(value, list):  # per-layer counts (e.g. OpenELM): the largest
            value = max(value, default=None)
        return int(value) if value is not None else None

    heads, hidden = arch_int("attention.head_count"), arch_int("embedding_length")
    head_dim = arch_int("attention.key_length")
    if head_dim is None and heads and hidden:
        head_dim = hidden // heads
    mix = _tensor_mix(header.tensors)
    tokens = f.get("tokenizer.ggml.tokens")
    vocab = len(tokens) if tokens else f.get("tokenizer.ggml.tokens#len") or arch_int("vocab_size")
    return ModelFacts(
        path=str(path),
        format="gguf",
        architecture=arch,
        name=str(f.get("general.name", "")),
        params=sum(m.params for m in mix),
        weights_bytes=sum(m.bytes for m in mix),
        file_type=_file_type(f.get("general.file_type"), mix),
        tensor_mix=mix,
        context_length=arch_int("context_length"),
        embedding_length=hidden,
        feed_forward_length=arch_int("feed_forward_length"),
        layers=arch_int("block_count"),
        heads=heads,
        kv_heads=arch_int("attention.head_count_kv") or heads,
        head_dim=head_dim,
        vocab_size=int(vocab) if vocab else None,
        tied_embeddings=not any(name == "output.weight" for name, _, _ in header.tensors),
        tokenizer=str(f.get("tokenizer.ggml.model", "")),
        tokenizer_pre=str(f.get("tokenizer.ggml.pre", "")),
        chat_template=f.get("tokenizer.chat_template"),
        rope={k.split(".rope.", 1)[1]: v for k, v in f.items() if k.startswith(f"{arch}.rope.")},
    )


def _tensor_mix(tensors: list[tuple[str, GGMLQuantizationType, int]]) -> tuple[TensorMix, ...]:
    totals: dict[GGMLQuantizationType, list[int]] = {}
    for _, ttype, elements in tensors:
        block, size = GGML_QUANT_SIZES[ttype]
        row = totals.setdefault(ttype, [0, 0, 0])
        row[0] += 1
        row[1] += elements
        row[2] += elements * size // block
    mix = [TensorMix(t.name, n, params, size) for t, (n, params, size) in totals.items()]
    return tuple(sorted(mix, key=lambda m: -m.bytes))


def _file_type(value: Any, mix: tuple[TensorMix, ...]) -> str:
    if value is None:  # not recorded: name the type holding most of the bytes
        return mix[0].type if mix else ""
    try:
        return LlamaFileType(int(value)).name.removeprefix("MOSTLY_").removeprefix("ALL_")
    except ValueError:
        return f"file type {value}"


# --- Hugging Face config.json ------------------------------------------------------------------

# Families whose MLP is up/down only (no gate), and whose config omits tie_word_embeddings
# because their default ties the input and output embeddings.
_UNGATED = {"gpt2", "gpt_neo", "gpt_neox", "gptj", "bloom", "opt", "falcon", "phi", "starcoder2"}
_TIED_BY_DEFAULT = {"gpt2", "gpt_neo", "gptj", "bloom", "opt"}


def read_hf_config(path: Path) -> ModelFacts:
    """Shapes from a config.json; the parameter count is computed from them (see below)."""
    config = path / "config.json" if path.is_dir() else path
    try:
        raw = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise NotAModelFile(
            f"cannot read {config} as a Hugging Face config.json ({e}); pass a .gguf file, a "
            "config.json, or a directory holding one.",
            param="model",
        ) from e
    cfg = {**raw, **raw.get("text_config", {})}  # multimodal configs nest the language model
    get = _first(cfg)
    hidden = get("hidden_size", "n_embd", "d_model")
    layers = get("num_hidden_layers", "n_layer", "num_layers")
    heads = get("num_attention_heads", "n_head", "num_heads")
    if not (hidden and layers and heads):
        raise NotAModelFile(
            f"{config} has no hidden_size / num_hidden_layers / num_attention_heads; is it a "
            "decoder language model's config.json?",
            param="model",
        )
    model_type = str(cfg.get("model_type", ""))
    kv_heads = get("num_key_value_heads", "num_kv_heads", "n_head_kv", "multi_query_group_num")
    head_dim = get("head_dim") or hidden // heads
    ffn = get("intermediate_size", "n_inner", "ffn_hidden_size") or 4 * hidden
    vocab = get("vocab_size", "padded_vocab_size") or 0
    tied = bool(cfg.get("tie_word_embeddings", model_type in _TIED_BY_DEFAULT))
    kv_heads = kv_heads or heads
    experts = get("num_local_experts", "num_experts", "n_routed_experts") or 1
    expert_ffn = get("moe_intermediate_size") or ffn
    attention = 2 * hidden * heads * head_dim + 2 * hidden * kv_heads * head_dim
    mlp = (2 if model_type in _UNGATED else 3) * hidden * expert_ffn * experts
    if experts > 1:
        mlp += hidden * experts  # router
    params = vocab * hidden * (1 if tied else 2) + layers * (attention + mlp + 2 * hidden) + hidden
    dtype = str(cfg.get("torch_dtype") or cfg.get("dtype") or "")
    folder = config.parent
    index = _json(folder / "model.safetensors.index.json")
    tokenizer = _json(folder / "tokenizer.json").get("model", {})
    template = _json(folder / "tokenizer_config.json").get("chat_template")
    if template is None and (folder / "chat_template.jinja").is_file():
        template = (folder / "chat_template.jinja").read_text(encoding="utf-8")
    return ModelFacts(
        path=str(config),
        format="hf-config",
        architecture=model_type or ",".join(cfg.get("architectures", [])),
        name=str(cfg.get("_name_or_path", "")),
        params=params,
        weights_bytes=index.get("metadata", {}).get("total_size"),
        file_type={"bfloat16": "bf16", "float16": "fp16", "float32": "fp32"}.get(dtype, dtype),
        context_length=get("max_position_embeddings", "n_positions", "seq_length"),
        embedding_length=hidden,
        feed_forward_length=ffn,
        layers=layers,
        heads=heads,
        kv_heads=kv_heads,
        head_dim=head_dim,
        vocab_size=vocab or None,
        tied_embeddings=tied,
        tokenizer=str(tokenizer.get("type", "")) if isinstance(tokenizer, dict) else "",
        chat_template=template if isinstance(template, str) else None,
        rope={k: v for k, v in cfg.items() if k.startswith("rope_") and v is not None},
    )


def _first(cfg: dict[str, Any]) -> Callable[..., int | None]:
    def get(*keys: str) -> int | None:
        for key in keys:
            if isinstance(cfg.get(key), int) and not isinstance(cfg[key], bool):
                return int(cfg[key])
        return None

    return get


def _json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}  # optional side files: a broken one must not hide the config's facts
    return data if isinstance(data, dict) else {}
