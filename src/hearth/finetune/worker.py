"""The training process: ``python -m hearth.finetune.worker JOB.json``.

It runs apart from the caller so that torch gets the thread count chosen for it (one
thread per core that is free; more threads on a busy machine made a step 8x slower), so
that Ctrl-C or a crash cannot leave the caller's state half-written, and so that torch's
memory goes back to the system when it ends. Examples arrive already tokenized by the
serving engine's tokenizer, so no second tokenizer can drift from the one that serves.

It reports on stdout, one JSON object per line prefixed with ``@hearth``: ``loaded``,
``step`` (step, loss, tokens/s), ``saved``, ``done`` (the loss curve, peak memory, the
trained model's top log-probabilities on the check prompts) or ``error``.
"""

from __future__ import annotations

import gc
import json
import os
import resource
import shutil
import sys
import time
from pathlib import Path
from typing import Any

MARK = "@hearth "
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def emit(event: str, **fields: Any) -> None:
    sys.stdout.write(MARK + json.dumps({"event": event, **fields}, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(job_path: str) -> int:
    job = json.loads(Path(job_path).read_text(encoding="utf-8"))
    try:
        run(job)
    except KeyboardInterrupt:
        emit("error", message="interrupted")
        return 130
    except Exception as e:
        emit("error", message=f"{type(e).__name__}: {e}")
        raise
    return 0


def run(job: dict[str, Any]) -> None:
    import torch

    torch.set_num_threads(int(job["threads"]))
    torch.manual_seed(int(job["seed"]))
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    started = time.monotonic()
    base = Path(job["base_gguf"])
    out = Path(job["out_dir"])
    model = _dequantised(
        AutoModelForCausalLM.from_pretrained(
            str(base.parent), gguf_file=base.name, dtype=torch.float32
        )
    )
    plain = out / "base-float32"
    if job["method"] == "qlora":
        # QLoRA: the frozen base in 4-bit NF4 (bitsandbytes, CPU backend), LoRA in float32.
        # transformers cannot quantize while reading a GGUF, so the dequantised weights go
        # through a float32 copy on disk (removed at the end) and are read back quantized.
        model.save_pretrained(plain)
        del model
        gc.collect()
        model = _nf4(plain)
    lora = LoraConfig(
        r=int(job["rank"]),
        lora_alpha=float(job["alpha"]),
        lora_dropout=float(job["dropout"]),
        target_modules=[t for t in TARGETS if _has(model, t)],
        task_type="CAUSAL_LM",
        bias="none",
    )
    trainable, total = 0, 0
    if job["method"] != "dpo":
        model = get_peft_model(model, lora)
        trainable, total = (int(n) for n in model.get_nb_trainable_parameters())
    emit(
        "loaded",
        seconds=round(time.monotonic() - started, 1),
        trainable=trainable,
        parameters=total,
        rss_mib=round(peak_rss_mib()),
    )
    trainer = (_dpo if job["method"] == "dpo" else _sft)(model, lora, job, out)
    last = last_checkpoint(out)
    resume = str(last[1]) if job.get("resume") and last else None
    trainer.train(resume_from_checkpoint=resume)
    model = trainer.model
    model.eval()
    state = {k: v.detach().float().cpu().numpy() for k, v in _lora_state(model).items()}
    from hearth.finetune.adapter import BaseShape, gguf_tensors, write

    config = model.config
    shape = BaseShape(
        arch=job["arch"],
        blocks=int(config.num_hidden_layers),
        heads=int(config.num_attention_heads),
        kv_heads=int(getattr(config, "num_key_value_heads", None) or config.num_attention_heads),
    )
    tmp = out / "adapter.gguf.tmp"
    write(tmp, gguf_tensors(state, shape), shape, float(job["alpha"]), job.get("gguf_meta"))
    os.replace(tmp, out / "adapter.gguf")
    if job["method"] == "qlora":
        # Served, the adapter sits on the GGUF's weights, not on NF4 ones: the export check
        # compares against the adapter on the dequantised float32 base.
        del model, trainer
        gc.collect()
        model = _with_state(
            _dequantised(AutoModelForCausalLM.from_pretrained(str(plain), dtype=torch.float32)),
            lora,
            state,
        )
        shutil.rmtree(plain, ignore_errors=True)
    prompts, top_k = job.get("check_prompts", []), int(job.get("top_k", 5))
    with model.disable_adapter():
        base_top = _top_logprobs(model, prompts, top_k)
    emit(
        "done",
        seconds=round(time.monotonic() - started, 1),
        peak_rss_mib=round(peak_rss_mib()),
        check=_top_logprobs(model, prompts, top_k),
        check_base=base_top,
    )


def _dequantised(model: Any) -> Any:
    """A model read from a GGUF, its weights already float32, without the GGUF label."""
    model.config.use_cache = False
    # The weights are dequantised to float32 on load; only the "quantized with GGUF" label
    # remains, and the trainer (and save_pretrained) refuse that label although nothing is
    # quantized any more.
    model.is_quantized = False
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    return model


def _nf4(path: Path) -> Any:
    import torch
    from peft import prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    quantization = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.float32,
    )
    model = AutoModelForCausalLM.from_pretrained(
        str(path), dtype=torch.float32, quantization_config=quantization
    )
    model.config.use_cache = False
    return prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)


def _with_state(model: Any, lora: Any, state: dict[str, Any]) -> Any:
    import torch
    from peft import get_peft_model, set_peft_model_state_dict

    model = get_peft_model(model, lora)
    set_peft_model_state_dict(model, {k: torch.from_numpy(v) for k, v in state.items()})
    model.eval()
    return model


def last_checkpoint(out: Path) -> tuple[int, Path] | None:
    """The newest complete checkpoint's step and directory (the trainer writes
    trainer_state.json last)."""
    done = [
        (int(p.name.rsplit("-", 1)[1]), p)
        for p in (out / "checkpoints").glob("checkpoint-*")
        if p.name.rsplit("-", 1)[1].isdigit() and (p / "trainer_state.json").exists()
    ]
    return max(done) if done else None


def _has(model: Any, name: str) -> bool:
    return any(n.endswith("." + name) for n, _ in model.named_modules())


def _lora_state(model: Any) -> dict[str, Any]:
    from peft import get_peft_model_state_dict

    return dict(get_peft_model_state_dict(model))


def _arguments(job: dict[str, Any], out: Path, cls: Any, **extra: Any) -> Any:
    steps = int(job.get("steps") or 0)
    return cls(
        output_dir=str(out / "checkpoints"),
        max_steps=steps if steps else -1,
        num_train_epochs=float(job.get("epochs") or 1),
        learning_rate=float(job["lr"]),
        per_device_train_batch_size=int(job["batch_size"]),
        gradient_accumulation_steps=int(job.get("grad_accum", 1)),
        lr_scheduler_type="constant_with_warmup" if steps and steps <= 100 else "cosine",
        warmup_steps=int(job.get("warmup", 0)),
        weight_decay=0.0,
        logging_steps=1,
        save_strategy="steps",
        save_steps=int(job["save_every"]),
        save_total_limit=2,
        seed=int(job["seed"]),
        data_seed=int(job["seed"]),
        use_cpu=True,
        report_to=[],
        disable_tqdm=True,
        dataloader_num_workers=0,
        remove_unused_columns=False,
        **extra,
    )


class _Tokens:
    """Counts the trained-on tokens that go through the collator, for tokens/s."""

    def __init__(self) -> None:
        self.count = 0


def _callback(tokens: _Tokens, job: dict[str, Any]) -> Any:
    from transformers import TrainerCallback

    class Progress(TrainerCallback):  # type: ignore[misc]
        def __init__(self) -> None:
            self.started = time.monotonic()
            self.first_step: int | None = None

        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any) -> None:
            logs = logs or {}
            if "loss" not in logs:
                return
            if self.first_step is None:
                self.first_step = state.global_step - 1
            elapsed = time.monotonic() - self.started
            emit(
                "step",
                step=state.global_step,
                max_steps=state.max_steps,
                loss=round(float(logs["loss"]), 5),
                lr=float(logs.get("learning_rate", 0.0)),
                tokens=tokens.count,
                seconds=round(elapsed, 2),
                tokens_per_s=round(tokens.count / elapsed, 1) if elapsed else 0.0,
                rss_mib=round(peak_rss_mib()),
                **{k: float(v) for k, v in logs.items() if k.startswith("rewards/")},
            )

        def on_save(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            emit("saved", step=state.global_step)

    return Progress()


def _sft(model: Any, lora: Any, job: dict[str, Any], out: Path) -> Any:
    import torch
    from transformers import Trainer, TrainingArguments

    rows = _read(Path(job["train"]))
    tokens = _Tokens()

    def collate(batch: list[dict[str, list[int]]]) -> dict[str, Any]:
        width = max(len(r["input_ids"]) for r in batch)
        ids = torch.zeros((len(batch), width), dtype=torch.long)
        labels = torch.full((len(batch), width), -100, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for i, r in enumerate(batch):
            n = len(r["input_ids"])
            ids[i, :n] = torch.tensor(r["input_ids"])
            labels[i, :n] = torch.tensor(r["labels"])
            mask[i, :n] = 1
            tokens.count += n
        return {"input_ids": ids, "labels": labels, "attention_mask": mask}

    return Trainer(
        model=model,
        args=_arguments(job, out, TrainingArguments),
        train_dataset=rows,
        data_collator=collate,
        callbacks=[_callback(tokens, job)],
    )


def _dpo(model: Any, lora: Any, job: dict[str, Any], out: Path) -> Any:
    from datasets import Dataset
    from transformers import AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    class Pretokenized(DPOTrainer):  # type: ignore[misc]
        # The pairs come tokenized by the serving engine; trl's own tokenizing is skipped.
        def _prepare_dataset(self, dataset: Any, *args: Any, **kwargs: Any) -> Any:
            return dataset

    rows = _read(Path(job["train"]))
    base = Path(job["base_gguf"])
    # Only for trl's padding: the ids themselves come from the serving engine.
    tokenizer = AutoTokenizer.from_pretrained(str(base.parent), gguf_file=base.name)
    tokens = _Tokens()
    args = _arguments(job, out, DPOConfig, beta=float(job.get("beta", 0.1)), max_length=None)
    trainer = Pretokenized(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
        peft_config=lora,
        callbacks=[_callback(tokens, job)],
    )
    collate = trainer.data_collator

    def counting(batch: list[dict[str, Any]]) -> Any:
        out = collate(batch)
        tokens.count += sum(int(v.sum()) for k, v in out.items() if k.endswith("attention_mask"))
        return out

    trainer.data_collator = counting
    return trainer


def _read(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _top_logprobs(model: Any, prompts: list[list[int]], k: int) -> list[list[list[float]]]:
    """For each prompt, the next token's top-k as [token id, log-probability] pairs."""
    import torch

    out = []
    with torch.no_grad():
        for ids in prompts:
            logits = model(input_ids=torch.tensor([ids])).logits[0, -1].float()
            logprobs = torch.log_softmax(logits, dim=-1)
            top = torch.topk(logprobs, k)
            out.append([[int(i), float(v)] for v, i in zip(top.values, top.indices, strict=True)])
    return out


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
