"""Settings: one typed object built at start-up and passed explicitly.

Sources, later ones winning: built-in defaults, ``$HEARTH_HOME/models.toml`` (written by
``hearth models pull``), ``$HEARTH_HOME/config.toml``, environment
variables (``HEARTH_HOME``, ``HEARTH_HOST``, ``HEARTH_PORT``, ``HEARTH_MODEL``,
``HEARTH_WEBHOOK``, ``HEARTH_OTLP_ENDPOINT``), then
command-line flags applied by the caller with :func:`dataclasses.replace`.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from hearth.errors import ConfigError
from hearth.types import Price

ENGINES = ("llamacpp", "remote", "fake", "e5", "transformers")
REMOTE_PARALLEL = 256  # a remote model's default requests in flight at once
DEFAULT_MODEL = "qwen2.5-0.5b-instruct"
DEFAULT_EMBEDDER = "multilingual-e5-small"


@dataclass(frozen=True)
class ModelSpec:
    name: str
    engine: str
    path: str | None = None  # local file (GGUF); None for bundled until assembled
    bundled: str | None = None  # key in hearth.hub.bundled.BUNDLED
    url: str | None = None  # remote: base URL of an OpenAI-compatible API (…/v1)
    # remote: more upstreams serving the same model, as (url, weight); requests go to the
    # healthy one with the fewest in flight per unit of weight (`url` has weight 1).
    urls: tuple[tuple[str, float], ...] = ()
    # models to answer with, in order, when every upstream of this one fails
    fallbacks: tuple[str, ...] = ()
    upstream_model: str | None = None  # remote: model id upstream (default: name)
    api_key_env: str | None = None  # remote: environment variable holding the key
    tokenizer: str | None = None  # remote: registered model whose tokenizer counts
    context: int = 4096
    parallel: int = 4
    threads: int = 0  # 0: all cores
    sampling: dict[str, float] = field(default_factory=dict)
    price: Price = field(default_factory=Price)
    embedding: bool = False  # serves /v1/embeddings rather than chat
    script: tuple[str, ...] = ()  # fake engine: replies, used in turn
    delay: float = 0.0  # fake engine: seconds between tokens
    description: str = ""
    # llamacpp: host memory for the prompts of finished requests, beyond what each slot keeps.
    # llama.cpp's own default is 8 GiB per model, which a busy server fills over hours; off
    # by default so memory stays what the model and its slots take.
    prompt_cache_mib: int = 0
    # remote: the upstream takes response_format json_schema. False for one that does not:
    # apps then ask for the schema in the prompt and check (and re-ask) every answer.
    json_schema: bool = True
    # What conversations with this model remember: {turns = N}, {tokens = N},
    # {summary = {model, max_tokens, turns}} or {none = true}; unset: every turn that fits.
    memory: dict[str, Any] | None = None
    # A fine-tuned adapter served over a registered llamacpp model (`hearth finetune run`):
    # the base's name, the adapter GGUF, and the base's chat template hash when trained.
    base: str | None = None
    adapter: str | None = None
    adapter_scale: float = 1.0
    template_sha256: str | None = None
    # llamacpp: adapter GGUFs loaded with the model (filled in when it loads, never configured)
    loras: tuple[str, ...] = ()
    # transformers: run Python code the model ships (auto_map in its config.json)
    trust_remote_code: bool = False


BUILTIN_MODELS: dict[str, ModelSpec] = {
    m.name: m
    for m in (
        ModelSpec(
            name=DEFAULT_MODEL,
            engine="llamacpp",
            bundled=DEFAULT_MODEL,
            context=4096,
            parallel=8,
            # Without a repeat penalty this model loops on long answers.
            sampling={"temperature": 0.7, "top_p": 0.8, "repeat_penalty": 1.1},
            description="Qwen2.5-Coder-0.5B-Instruct Q4_K_M (Chinese and English)",
        ),
        ModelSpec(
            name="smollm2-135m-instruct",
            engine="llamacpp",
            bundled="smollm2-135m-instruct",
            context=2048,
            parallel=8,
            sampling={"temperature": 0.2, "top_p": 0.9, "repeat_penalty": 1.1},
            description="SmolLM2-135M-Instruct Q4_1 (English only, fast)",
        ),
        ModelSpec(
            name=DEFAULT_EMBEDDER,
            engine="e5",
            bundled=DEFAULT_EMBEDDER,
            context=512,
            parallel=1,
            embedding=True,
            description="multilingual-e5-small, 4-bit, 384 dimensions",
        ),
    )
}


@dataclass(frozen=True)
class HookSettings:
    """Where each finished call is reported: the ``[hooks]`` table of config.toml."""

    webhook: str | None = None  # one JSON POST per call
    webhook_headers: dict[str, str] = field(default_factory=dict)
    webhook_timeout: float = 5.0  # seconds per attempt
    webhook_retries: int = 3  # attempts after the first failure
    otlp_endpoint: str | None = None  # OTLP/HTTP collector; spans go to {endpoint}/v1/traces
    service_name: str = "hearth"


@dataclass(frozen=True)
class Settings:
    home: Path
    host: str = "127.0.0.1"
    port: int = 8000
    models: dict[str, ModelSpec] = field(default_factory=lambda: dict(BUILTIN_MODELS))
    default_model: str = DEFAULT_MODEL
    served: tuple[str, ...] = ()  # models listed by /v1/models; empty: all registered
    max_loaded: int = 3  # loaded engines kept before the least recently used is unloaded
    queue_size: int = 64  # requests waiting per model before 429
    request_timeout: float = 600.0  # seconds per request, queueing included
    max_body_bytes: int = 8 * 1024 * 1024
    database_url: str = ""  # empty: sqlite file in home
    kb_url: str = ""  # knowledge bases: empty for a sqlite file in home, or postgresql://…
    max_upload_bytes: int = 50 * 1024 * 1024  # one knowledge-base upload
    auth: bool = False  # require keys before any exists; once one does they always are
    hooks: HookSettings = field(default_factory=HookSettings)
    # MCP servers apps may use: name -> {command = [...], args, env} or {url = "http://..."}
    mcp: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def models_dir(self) -> Path:
        return self.home / "models"

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home / 'hearth.db'}"

    @property
    def knowledge_url(self) -> str:
        return self.kb_url or f"sqlite:///{self.home / 'kb.db'}"

    def served_models(self) -> list[str]:
        return list(self.served) if self.served else list(self.models)

    def with_served(self, names: list[str]) -> Settings:
        for name in names:
            if name not in self.models:
                raise ConfigError(
                    f"Unknown model '{name}'. Known models: {', '.join(self.models)}. "
                    f'Add it to {self.home / "config.toml"} under [models."{name}"].'
                )
        default = names[0] if names else self.default_model
        return replace(self, served=tuple(names), default_model=default)


def _mcp_servers(raw: Any) -> dict[str, dict[str, Any]]:
    if not isinstance(raw, dict):
        raise ConfigError("[mcp] must hold tables: [mcp.NAME] with command = [...] or url = ...")
    out = {}
    for name, spec in raw.items():
        where = f"[mcp.{name}]"
        if not isinstance(spec, dict) or ("command" in spec) == ("url" in spec):
            raise ConfigError(
                f'{where} needs command = ["program", "arg", ...] (stdio) or url = '
                '"http://host/mcp" (streamable HTTP), not both'
            )
        command = spec.get("command")
        if command is not None and not (
            (isinstance(command, str) and command)
            or (isinstance(command, list) and command and all(isinstance(c, str) for c in command))
        ):
            raise ConfigError(f"{where} command must be a program or a list of strings")
        url = spec.get("url")
        if url is not None and not (
            isinstance(url, str) and url.startswith(("http://", "https://"))
        ):
            raise ConfigError(f"{where} url must be an http(s):// URL, got {url!r}")
        out[name] = dict(spec)
    return out


def load_settings(home: Path | None = None, env: dict[str, str] | None = None) -> Settings:
    env = dict(os.environ) if env is None else env
    home = (home or Path(env.get("HEARTH_HOME") or Path.home() / ".hearth")).expanduser().resolve()
    data = _read_toml(home / "config.toml")
    server = data.get("server", {})
    models = dict(BUILTIN_MODELS)
    # models.toml holds what `hearth models pull` registered; config.toml wins on a clash.
    pulled = _read_toml(home / "models.toml").get("models", {})
    configured = data.get("models", {})
    for name in {**pulled, **configured}:
        raw = {**pulled.get(name, {}), **configured.get(name, {})}
        models[name] = _model_spec(name, raw, home)
    for spec in models.values():
        if spec.base and (spec.base not in models or models[spec.base].engine != "llamacpp"):
            raise ConfigError(
                f'[models."{spec.name}"] base = "{spec.base}" is not a registered llamacpp model'
            )
        if spec.base and models[spec.base].base:
            raise ConfigError(f'[models."{spec.name}"] base "{spec.base}" is itself an adapter')
        unknown = [f for f in spec.fallbacks if f not in models]
        if unknown:
            raise ConfigError(
                f'[models."{spec.name}"] fallbacks name unregistered model(s) {unknown}'
            )
    kwargs: dict[str, Any] = {k: server[k] for k in _SERVER_KEYS if k in server}
    hooks = _hook_settings(data.get("hooks", {}), env)
    mcp = _mcp_servers(data.get("mcp", {}))
    settings = Settings(home=home, models=models, hooks=hooks, mcp=mcp, **kwargs)
    if "HEARTH_HOST" in env:
        settings = replace(settings, host=env["HEARTH_HOST"])
    if "HEARTH_PORT" in env:
        settings = replace(settings, port=_int(env["HEARTH_PORT"], "HEARTH_PORT"))
    if "HEARTH_DATABASE_URL" in env:
        settings = replace(settings, database_url=env["HEARTH_DATABASE_URL"])
    if "HEARTH_KB_URL" in env:
        settings = replace(settings, kb_url=env["HEARTH_KB_URL"])
    if env.get("HEARTH_MODEL"):
        settings = settings.with_served([m.strip() for m in env["HEARTH_MODEL"].split(",")])
    if settings.default_model not in settings.models:
        raise ConfigError(f"default_model '{settings.default_model}' is not a known model.")
    return settings


_SERVER_KEYS = (
    "host",
    "port",
    "default_model",
    "max_loaded",
    "queue_size",
    "request_timeout",
    "max_body_bytes",
    "database_url",
    "kb_url",
    "max_upload_bytes",
    "auth",
)
_MODEL_KEYS = {
    "engine",
    "json_schema",
    "path",
    "url",
    "urls",
    "fallbacks",
    "upstream_model",
    "api_key_env",
    "tokenizer",
    "context",
    "parallel",
    "threads",
    "sampling",
    "price",
    "embedding",
    "script",
    "delay",
    "description",
    "bundled",
    "prompt_cache_mib",
    "memory",
    "base",
    "adapter",
    "adapter_scale",
    "template_sha256",
    "trust_remote_code",
}


def _read_toml(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path} is not valid TOML: {e}") from e


def _model_spec(name: str, raw: dict[str, Any], home: Path) -> ModelSpec:
    unknown = set(raw) - _MODEL_KEYS
    if unknown:
        raise ConfigError(
            f'[models."{name}"] has unknown keys {sorted(unknown)}; known: {sorted(_MODEL_KEYS)}'
        )
    base = BUILTIN_MODELS.get(name)
    engine = raw.get("engine", base.engine if base else None)
    if engine not in ENGINES:
        raise ConfigError(f'[models."{name}"] engine must be one of {ENGINES}, got {engine!r}')
    fields: dict[str, Any] = {
        k: v for k, v in raw.items() if k not in ("price", "script", "urls", "fallbacks")
    }
    if "urls" in raw:
        fields["urls"] = _upstreams(name, raw["urls"])
    if not isinstance(raw.get("trust_remote_code", False), bool):
        raise ConfigError(f'[models."{name}"] trust_remote_code must be true or false')
    if "fallbacks" in raw:
        fallbacks = raw["fallbacks"]
        if not isinstance(fallbacks, list) or not all(isinstance(f, str) for f in fallbacks):
            raise ConfigError(
                f'[models."{name}"] fallbacks must be a list of model names, e.g. '
                f'fallbacks = ["other-model"]; got {fallbacks!r}'
            )
        if name in fallbacks:
            raise ConfigError(f'[models."{name}"] cannot fall back to itself')
        fields["fallbacks"] = tuple(fallbacks)
    if "price" in raw:
        p = raw["price"]
        fields["price"] = Price(float(p.get("input", 0)), float(p.get("output", 0)))
    if "script" in raw:
        fields["script"] = tuple(str(s) for s in raw["script"])
    for key in ("path", "adapter"):
        if key in raw:
            path = Path(str(raw[key])).expanduser()
            fields[key] = str(path if path.is_absolute() else home / path)
    if bool(raw.get("base")) != bool(raw.get("adapter")):
        raise ConfigError(
            f'[models."{name}"] an adapter model needs both base = "<model>" and '
            'adapter = "/path/to/adapter.gguf"'
        )
    if raw.get("base") and engine != "llamacpp":
        raise ConfigError(f'[models."{name}"] adapters are served by engine = "llamacpp"')
    if engine == "llamacpp" and not (
        fields.get("path") or fields.get("base") or (base and base.bundled)
    ):
        raise ConfigError(f'[models."{name}"] needs path = "/path/to/model.gguf"')
    if engine == "transformers" and not fields.get("path"):
        raise ConfigError(
            f'[models."{name}"] needs path = "/path/to/hf-model-dir" (config.json, '
            "*.safetensors and the tokenizer)"
        )
    if engine == "remote" and not (fields.get("url") or fields.get("urls")):
        raise ConfigError(f'[models."{name}"] needs url = "http://host:port/v1"')
    if fields.get("urls") and engine != "remote":
        raise ConfigError(f'[models."{name}"] urls = [...] is for engine = "remote"')
    memory = raw.get("memory")
    if memory is not None and (not isinstance(memory, dict) or len(memory) != 1):
        raise ConfigError(
            f'[models."{name}"] memory takes one of {{turns = N}}, {{tokens = N}}, '
            f"{{summary = {{...}}}} or {{none = true}}; got {memory!r}"
        )
    if engine == "remote" and "parallel" not in raw:
        # the upstream batches and queues on its own (vLLM runs 256 sequences at once by
        # default): hearth's slots only cap what one model has in flight to its upstreams
        fields["parallel"] = REMOTE_PARALLEL
    spec = base if base else ModelSpec(name=name, engine=engine)
    try:
        return replace(spec, **fields)
    except TypeError as e:
        raise ConfigError(f'[models."{name}"]: {e}') from e


def _upstreams(name: str, raw: Any) -> tuple[tuple[str, float], ...]:
    """``urls = ["http://a/v1", {url = "http://b/v1", weight = 2}]``."""
    where = f'[models."{name}"] urls'
    if not isinstance(raw, list):
        raise ConfigError(f'{where} must be a list, e.g. urls = ["http://10.0.0.2:8000/v1"]')
    out = []
    for item in raw:
        url, weight = (item, 1.0) if isinstance(item, str) else (None, None)
        if isinstance(item, dict):
            unknown = set(item) - {"url", "weight"}
            if unknown:
                raise ConfigError(f"{where}: unknown keys {sorted(unknown)}; known: url, weight")
            url, weight = item.get("url"), item.get("weight", 1.0)
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ConfigError(
                f'{where}: each entry is an http(s):// URL or {{url = "http://…", weight = N}}; '
                f"got {item!r}"
            )
        if isinstance(weight, bool) or not isinstance(weight, int | float) or weight <= 0:
            raise ConfigError(f"{where}: weight must be a number > 0, got {weight!r}")
        out.append((url, float(weight)))
    return tuple(out)


def _hook_settings(raw: Any, env: dict[str, str]) -> HookSettings:
    if not isinstance(raw, dict):
        raise ConfigError(f"hooks must be a [hooks] table, got {raw!r}")
    unknown = set(raw) - _HOOK_TYPES.keys()
    if unknown:
        raise ConfigError(
            f"[hooks] has unknown keys {sorted(unknown)}; known: {sorted(_HOOK_TYPES)}"
        )
    for key, value in raw.items():
        kind, example = _HOOK_TYPES[key]
        # bool is an int to Python, never a number of seconds or retries here
        if isinstance(value, bool) or not isinstance(value, kind):
            raise ConfigError(f"[hooks] {key} must be {example}, got {value!r}")
    headers = raw.get("webhook_headers", {})
    if not all(isinstance(v, str) for v in headers.values()):
        raise ConfigError(f"[hooks] webhook_headers values must be strings, got {headers!r}")
    if raw.get("webhook_timeout", 5.0) <= 0:
        raise ConfigError(
            f"[hooks] webhook_timeout must be > 0 seconds, got {raw['webhook_timeout']}"
        )
    if raw.get("webhook_retries", 0) < 0:
        raise ConfigError(
            f"[hooks] webhook_retries must be 0 or more, got {raw['webhook_retries']}"
        )
    fields = {**raw, "webhook_timeout": float(raw.get("webhook_timeout", 5.0))}
    # An empty variable switches the hook off, e.g. HEARTH_WEBHOOK= for one run.
    for key, var in (("webhook", "HEARTH_WEBHOOK"), ("otlp_endpoint", "HEARTH_OTLP_ENDPOINT")):
        url = env[var] if var in env else fields.get(key)
        if url and not url.startswith(("http://", "https://")):
            raise ConfigError(f"[hooks] {key} (or {var}) must be an http(s):// URL, got {url!r}")
        fields[key] = url or None
    return HookSettings(**fields)


_HOOK_TYPES: dict[str, tuple[type | tuple[type, ...], str]] = {
    "webhook": (str, 'a URL, e.g. "http://127.0.0.1:9000/events"'),
    "webhook_headers": (dict, 'a table, e.g. { Authorization = "Bearer …" }'),
    "webhook_timeout": ((int, float), "a number of seconds, e.g. 5.0"),
    "webhook_retries": (int, "a whole number, e.g. 3"),
    "otlp_endpoint": (str, 'a URL, e.g. "http://127.0.0.1:4318"'),
    "service_name": (str, 'a name, e.g. "hearth"'),
}


def _int(value: str, what: str) -> int:
    try:
        return int(value)
    except ValueError as e:
        raise ConfigError(f"{what} must be an integer, got {value!r}") from e
