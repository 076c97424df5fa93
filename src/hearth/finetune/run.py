"""One fine-tuning run: prepare, train in a subprocess, export, check, then register.

Nothing is registered until the adapter GGUF exists and the served model agrees with the
trained one: a run works in ``<home>/adapters/.runs/NAME`` (its checkpoints stay there for
``--resume``), and only a finished, checked adapter moves to ``<home>/adapters/NAME`` and
into models.toml. Ctrl-C, a crash or a failed check leaves no model behind.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from hearth.config import Settings
from hearth.errors import HearthError, UserError, listing
from hearth.finetune.prepare import Prepared, prepare
from hearth.finetune.store import ADAPTERS, RUNS, Manifest, adapter_dir, register_adapter
from hearth.finetune.worker import MARK

METHODS = ("lora", "qlora", "dpo")
# The served adapter's top log-probabilities against the trained model's, in nats, on the
# tokens the trained model gives at least 1% (rarer tokens differ more through llama.cpp's
# quantised matrix products and say nothing about the export). The base alone already
# disagrees between the two (llama.cpp multiplies quantised weights by quantised
# activations; transformers uses the dequantised weights in float32) — up to ~0.12 nats
# measured on SmolLM2 — so the adapter may add TOLERANCE to the base's own disagreement on
# the same prompts. Measured: see the README.
TOLERANCE = 0.15
CURVE = "curve.jsonl"  # the loss curve as it grows, kept for --resume
BASE_FLOOR_CAP = 0.3  # a base that disagrees more than this is not a floor but a problem
MIN_LOGPROB = -4.6


@dataclass(frozen=True)
class Options:
    method: str = "lora"
    steps: int = 0  # 0: epochs
    epochs: float = 3.0
    lr: float = 2e-4
    rank: int = 8
    alpha: float = 16.0
    dropout: float = 0.0
    batch_size: int = 4
    max_len: int = 1024
    seed: int = 0
    threads: int = 0  # 0: one per core
    save_every: int = 50
    beta: float = 0.1  # dpo


Progress = Callable[[dict[str, Any]], None]


def check_name(settings: Settings, name: str) -> None:
    where = adapter_dir(settings.home, name)  # refuses a name that is not one
    spec = settings.models.get(name)
    if spec is not None and not spec.adapter:
        raise UserError(f"'{name}' is already a model; choose another --name")
    if where.exists():
        raise UserError(
            f"adapter '{name}' exists; remove it first with `hearth finetune rm {name}`"
        )


def check_base(settings: Settings, base: str) -> None:
    spec = settings.models.get(base)
    if spec is None:
        raise UserError(f"unknown base model '{base}'; see `hearth models list`")
    if spec.base:
        raise UserError(f"'{base}' is an adapter; train on its base '{spec.base}' instead")
    if spec.engine != "llamacpp":
        raise UserError(f"'{base}' is a {spec.engine} model; training needs a local GGUF model")


def train(
    settings: Settings,
    base: str,
    paths: list[Path],
    name: str,
    options: Options,
    *,
    resume: bool = False,
    progress: Progress = lambda event: None,
) -> Manifest:
    check_base(settings, base)
    check_name(settings, name)
    if options.method not in METHODS:
        raise UserError(f"--method must be one of {', '.join(METHODS)}")
    progress({"event": "preparing"})
    prepared = prepare(settings, base, paths, max_len=options.max_len)
    _usable(prepared, options)
    from hearth.engines.registry import resolve
    from hearth.hub.gguf_info import read_facts

    spec = resolve(settings.models[base], settings)
    gguf = Path(spec.path or "")
    info = read_facts(gguf)
    work = settings.home / ADAPTERS / RUNS / name
    job = _job(prepared, options, gguf, str(info.architecture), work)
    key = hashlib.sha256(json.dumps(job, sort_keys=True).encode()).hexdigest()
    previous = _read_json(work / "job.json")
    if not (resume and previous.get("key") == key):
        shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    _write_rows(work / "train.jsonl", prepared, options)
    job = {**job, "key": key, "resume": resume, "gguf_meta": {"base": base, "name": name}}
    (work / "job.json").write_text(json.dumps(job), encoding="utf-8")
    curve = _curve_so_far(work) if resume else []
    done = _spawn(work, job, curve, progress)
    progress({"event": "checking"})
    agreement = check_export(
        spec, work / "adapter.gguf", prepared.check_prompts, done["check"], done.get("check_base")
    )
    manifest = Manifest(
        name=name,
        base=base,
        base_sha256=_sha256(gguf),
        template_sha256=prepared.template.sha256,
        method=options.method,
        hyperparameters={**asdict(options), "threads": job["threads"]},
        data=[str(p) for p in paths],
        data_sha256=prepared.data_sha256,
        examples=len(prepared.encoded) + len(prepared.pairs),
        trained_tokens=prepared.trained_tokens,
        seed=options.seed,
        versions=_versions(),
        loss_curve=curve,
        seconds=float(done["seconds"]),
        peak_rss_mib=float(done["peak_rss_mib"]),
        check=agreement,
        created=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    register_adapter(settings, manifest, work / "adapter.gguf")
    shutil.rmtree(work, ignore_errors=True)
    return manifest


def _usable(prepared: Prepared, options: Options) -> None:
    problems = prepared.data.problems
    if problems:
        raise UserError(
            f"the data has {len(problems)} problem(s); fix them (`hearth finetune check` "
            f"lists them all):{listing(problems)}"
        )
    pairs = bool(prepared.pairs)
    if options.method == "dpo" and (not pairs or prepared.encoded):
        raise UserError("--method dpo trains on preference pairs (prompt, chosen, rejected) only")
    if options.method != "dpo" and pairs:
        raise UserError("the data holds preference pairs: train them with --method dpo")
    if not prepared.encoded and not prepared.pairs:
        raise UserError(
            f"no example fits --max-len {options.max_len}"
            if prepared.too_long
            else "the data holds no examples"
        )


def _job(prepared: Prepared, options: Options, gguf: Path, arch: str, work: Path) -> dict[str, Any]:
    threads = options.threads or max(1, (os.cpu_count() or 1))
    return {
        **asdict(options),
        "threads": threads,
        "base_gguf": str(gguf),
        "arch": arch,
        "out_dir": str(work),
        "train": str(work / "train.jsonl"),
        "data_sha256": prepared.data_sha256,
        "check_prompts": prepared.check_prompts,
        "top_k": 10,
    }


def _write_rows(path: Path, prepared: Prepared, options: Options) -> None:
    with path.open("w", encoding="utf-8") as f:
        for e in prepared.encoded:
            f.write(json.dumps({"input_ids": e.input_ids, "labels": e.labels}) + "\n")
        for p in prepared.pairs:
            row = {"prompt_ids": p.prompt_ids, "chosen_ids": p.chosen_ids}
            f.write(json.dumps({**row, "rejected_ids": p.rejected_ids}) + "\n")


def _spawn(
    work: Path, job: dict[str, Any], curve: list[dict[str, Any]], progress: Progress
) -> dict[str, Any]:
    threads = str(job["threads"])
    env = {
        **os.environ,
        "OMP_NUM_THREADS": threads,
        "MKL_NUM_THREADS": threads,
        "TOKENIZERS_PARALLELISM": "false",
        "TRANSFORMERS_VERBOSITY": "error",
        "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
        "HF_HUB_OFFLINE": "1",
    }
    log = work / "train.log"
    done: dict[str, Any] | None = None
    error = ""
    with log.open("w", encoding="utf-8") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "hearth.finetune.worker", str(work / "job.json")],
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            env=env,
        )
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                if not line.startswith(MARK):
                    continue
                event = json.loads(line[len(MARK) :])
                if event["event"] == "step":
                    point = {k: event[k] for k in ("step", "loss", "seconds")}
                    curve.append(point)
                    with (work / CURVE).open("a", encoding="utf-8") as f:
                        f.write(json.dumps(point) + "\n")
                elif event["event"] == "done":
                    done = event
                elif event["event"] == "error":
                    error = event["message"]
                progress(event)
            proc.wait()
        except BaseException:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
            raise
    if proc.returncode != 0 or done is None:
        raise HearthError(
            f"training failed: {error or f'exit code {proc.returncode}'}. The log is {log}; "
            "run again with --resume to continue from the last checkpoint."
        )
    return done


def _curve_so_far(work: Path) -> list[dict[str, Any]]:
    """On --resume, the loss curve up to the checkpoint the run continues from."""
    from hearth.finetune.worker import last_checkpoint

    last = last_checkpoint(work)
    if last is None:
        (work / CURVE).unlink(missing_ok=True)
        return []
    upto = last[0]
    try:
        lines = (work / CURVE).read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    kept = [p for p in (json.loads(line) for line in lines if line.strip()) if p["step"] <= upto]
    (work / CURVE).write_text("".join(json.dumps(p) + "\n" for p in kept), encoding="utf-8")
    return kept


def check_export(
    base: Any,
    adapter: Path,
    prompts: list[list[int]],
    trained: list[list[list[float]]],
    trained_base: list[list[list[float]]] | None = None,
) -> dict[str, Any]:
    """Serve base + adapter with llama.cpp and compare its top log-probabilities with the
    trained model's (and the served base's with the trained base's, the floor)."""
    from hearth.engines.llamacpp import LlamaCppEngine

    spec = replace(base, parallel=1, context=2048, loras=(str(adapter),))
    served = replace(spec, name="check", base=base.name, adapter=str(adapter))

    async def served_top() -> tuple[list[dict[int, float]], list[dict[int, float]]]:
        engine = LlamaCppEngine(spec)
        await engine.start()
        try:
            view = engine.with_adapter(served)
            with_adapter = [await view.next_token_logprobs(ids, 10) for ids in prompts]
            plain = [await engine.next_token_logprobs(ids, 10) for ids in prompts]
            return with_adapter, plain
        finally:
            await engine.close()

    got, got_base = asyncio.run(served_top())
    worst, compared = _disagreement(trained, got)
    floor, _ = _disagreement(trained_base, got_base, missing=None) if trained_base else (0.0, 0)
    floor = min(floor, BASE_FLOOR_CAP)
    result = {
        "prompts": len(prompts),
        "tokens": compared,
        "max_abs_diff": round(worst, 4),
        "base_max_abs_diff": round(floor, 4),
        "tolerance": round(TOLERANCE + floor, 4),
    }
    if worst > TOLERANCE + floor:
        raise HearthError(
            f"the exported adapter does not match the trained model: top log-probabilities "
            f"differ by up to {worst:.3f} nats (the base alone by {floor:.3f}, tolerance "
            f"{TOLERANCE} more); nothing was registered"
        )
    return result


def _disagreement(
    ours: list[list[list[float]]], theirs: list[dict[int, float]], missing: float | None = -99.0
) -> tuple[float, int]:
    """Largest |Δ log-probability| over the tokens ``ours`` gives at least 1%, and how many.

    A token missing from the served top-k counts as ``missing`` (None: skipped, for the
    base's floor, where a flat distribution reorders its tail)."""
    worst, compared = 0.0, 0
    for top, served in zip(ours, theirs, strict=True):
        for token, logprob in top:
            other = served.get(int(token), missing)
            if logprob < MIN_LOGPROB or other is None:
                continue
            compared += 1
            worst = max(worst, abs(logprob - other))
    return worst, compared


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for package in ("hearth", "torch", "transformers", "peft", "trl", "xllamacpp", "gguf"):
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return out


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return {}
