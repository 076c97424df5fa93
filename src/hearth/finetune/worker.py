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

import json
import os
import resource
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
    model = AutoModelForCausalLM.from_pretrained(
        str(base.parent), gguf_file=base.name, dtype=torch.float32
    )
    model.config.use_cache = False
    # The weights are dequantised to float32 on load; only the "quantized with GGUF" label
    # remains, and the trainer refuses that label although nothing is quantized any more.
    model.is_quantized = False
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
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
    out = Path(job["out_dir"])
    trainer = (_dpo if job["method"] == "dpo" else _sft)(model, lora, job, out)
    checkpoints = sorted((out / "checkpoints").glob("checkpoint-*"))
    resume = str(checkpoints[-1]) if job.get("resume") and checkpoints else None
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
    emit(
        "done",
        seconds=round(time.monotonic() - started, 1),
        peak_rss_mib=round(peak_rss_mib()),
        check=_top_logprobs(model, job.get("check_prompts", []), int(job.get("top_k", 5))),
    )


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
    tokens.count = 0
    args = _arguments(job, out, DPOConfig, beta=float(job.get("beta", 0.1)), max_length=None)
    trainer = Pretokenized(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
        peft_config=lora,
        callbacks=[_callback(tokens, job)],
    )
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
