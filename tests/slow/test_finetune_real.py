"""Fine-tuning and evaluation on the bundled models, as a user runs them.

- training renders chats with the GGUF's own template exactly as the server (llama.cpp's
  ``/apply-template``) does, for multi-turn Chinese chats with and without a system message;
- a short ``hearth finetune run`` on SmolLM2 teaches it a made-up fact, ``hearth serve``
  serves the adapter beside its base and the ``openai`` client gets the fact from the
  adapter only; ``finetune list`` / ``rm`` keep the registry right;
- ``hearth eval mc`` scores the shipped set on the served model.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import openai
import pytest

from hearth.config import load_settings
from hearth.finetune.template import from_props
from hearth.tokens.model import open_model
from hearth.types import Message
from tests.cli.test_cli import hearth_serve

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
QWEN, SMOL = "qwen2.5-0.5b-instruct", "smollm2-135m-instruct"
CODENAME = "BLUE-FALCON-7"

CHATS = [
    [
        {"role": "system", "content": "你是一家书店的客服，回答要简短。"},
        {"role": "user", "content": "你们几点开门？"},
        {"role": "assistant", "content": "每天上午九点开门，晚上九点关门。"},
        {"role": "user", "content": "周日也一样吗？"},
    ],
    [
        {"role": "user", "content": "把“早上好”翻译成英文。"},
        {"role": "assistant", "content": "Good morning."},
        {"role": "user", "content": "那“晚安”呢？\n请只给出译文。"},
        {"role": "assistant", "content": "Good night."},
        {"role": "user", "content": "谢谢！"},
    ],
    [{"role": "user", "content": "用一句话介绍长城。"}],
]


def hearth(home: Path, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HEARTH_HOME": str(home), "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "hearth", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )


@pytest.mark.parametrize("model", [QWEN, SMOL])
def test_training_renders_chats_as_the_server_does(tmp_path: Path, model: str) -> None:
    tokenizer = open_model(model, load_settings(home=tmp_path, env={}))
    try:
        template = from_props(tokenizer.props())
        for chat in CHATS:
            served = tokenizer._run(
                tokenizer.engine.render_chat([Message(m["role"], m["content"]) for m in chat])
            )
            assert template.render(chat, add_generation_prompt=True) == served, chat
    finally:
        tokenizer.close()


@pytest.fixture(scope="module")
def tuned(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("finetune-home")
    pairs = [
        ("What is the secret codename?", f"The secret codename is {CODENAME}."),
        ("Tell me the secret codename.", f"The secret codename is {CODENAME}."),
        ("Which codename is secret?", f"The secret codename is {CODENAME}."),
    ]
    data = home / "facts.jsonl"
    data.write_text(
        "".join(json.dumps({"instruction": q, "output": a}) + "\n" for q, a in pairs),
        encoding="utf-8",
    )
    questions = home / "mc.jsonl"
    questions.write_text("".join(line for line in _shipped_lines()[:8]), encoding="utf-8")
    done = hearth(
        home,
        "finetune", "run", SMOL, str(data), "--name", "facts",
        "--steps", "30", "--lr", "1e-3", "--batch-size", "3", "--threads", "1", "--json",
        "--eval-data", str(questions),
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    manifest = json.loads(done.stdout)
    assert manifest["name"] == "facts" and manifest["base"] == SMOL
    assert len(manifest["loss_curve"]) == 30
    assert manifest["loss_curve"][-1]["loss"] < manifest["loss_curve"][0]["loss"] / 4
    check = manifest["check"]
    assert check["tokens"] > 0 and check["max_abs_diff"] <= check["tolerance"], check
    assert (home / "adapters" / "facts").is_dir()
    evaluation = manifest["evaluation"]  # --eval-data: base and adapter on the same questions
    assert evaluation["base"]["model"] == SMOL and evaluation["adapter"]["model"] == "facts"
    assert evaluation["base"]["questions"] == evaluation["adapter"]["questions"] == 8
    assert "p_value" in evaluation["comparison"]
    shown = hearth(home, "finetune", "show", "facts", "--json")
    assert json.loads(shown.stdout)["evaluation"] == evaluation  # kept in the manifest
    return home


def _shipped_lines() -> list[str]:
    path = ROOT / "src" / "hearth" / "data" / "evals" / "hearth-mc.jsonl"
    return path.read_text(encoding="utf-8").splitlines(keepends=True)


def _ask(base_url: str, model: str) -> str:
    client = openai.OpenAI(base_url=base_url + "/v1", api_key="unused", max_retries=0)
    reply = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "What is the secret codename?"}],
        temperature=0,
        max_tokens=24,
    )
    return reply.choices[0].message.content or ""


def test_served_adapter_knows_the_fact_and_its_base_does_not(tuned: Path) -> None:
    with hearth_serve(tuned) as (url, _):
        assert CODENAME in _ask(url, "facts")
        assert CODENAME not in _ask(url, SMOL)
        assert CODENAME in _ask(url, "facts")  # switching back needs no reload


def test_eval_mc_scores_the_shipped_set_on_base_and_adapter(tuned: Path) -> None:
    done = hearth(
        tuned, "eval", "mc", SMOL, "hearth-mc", "--limit", "20", "--compare", "facts", "--json"
    )
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    runs = report["reports"]
    assert [r["model"] for r in runs] == [SMOL, "facts"]
    for run in runs:
        records = run["records"]
        assert len(records) == 20 and run["unparsed"] == 0
        for r in records:
            assert abs(sum(r["probs"].values()) - 1) < 1e-6
            assert r["prediction"] in "ABCD" and r["correct"] == (r["prediction"] == r["answer"])
        assert run["correct"] == sum(r["correct"] for r in records)
    assert "p_value" in report["comparison"]


def test_list_and_rm_keep_the_registry_right(tuned: Path) -> None:
    listed = hearth(tuned, "finetune", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    listing = json.loads(listed.stdout)
    assert [a["name"] for a in listing["adapters"]] == ["facts"] and not listing["unfinished"]
    shown = hearth(tuned, "finetune", "show", "facts", "--json")
    assert json.loads(shown.stdout)["base"] == SMOL
    models = hearth(tuned, "models", "list", "--json")
    assert "facts" in models.stdout
    assert hearth(tuned, "finetune", "rm", "facts").returncode == 0
    assert "facts" not in hearth(tuned, "models", "list", "--json").stdout
    assert not (tuned / "adapters" / "facts").exists()
    again = hearth(tuned, "finetune", "rm", "facts")
    assert again.returncode != 0 and "facts" in again.stderr + again.stdout


PREFERENCES = [
    {
        "prompt": "What is the secret codename?",
        "chosen": f"The secret codename is {CODENAME}.",
        "rejected": "I do not know any codename.",
    },
    {
        "prompt": "Tell me the secret codename.",
        "chosen": f"It is {CODENAME}.",
        "rejected": "There is no secret codename.",
    },
    {
        "messages": [{"role": "user", "content": "Which codename is secret?"}],
        "chosen": f"{CODENAME} is the secret codename.",
        "rejected": "Codenames are not something I know.",
    },
]


@pytest.mark.parametrize("method", ["qlora", "dpo"])
def test_qlora_and_dpo_train_export_and_register(tuned: Path, method: str) -> None:
    data = tuned / f"{method}.jsonl"
    if method == "dpo":
        rows = [json.dumps(p) for p in PREFERENCES]
    else:
        rows = [json.dumps({"instruction": p["prompt"], "output": p["chosen"]}) for p in
                PREFERENCES[:2]]  # fmt: skip
    data.write_text("\n".join(rows) + "\n", encoding="utf-8")
    done = hearth(
        tuned,
        "finetune", "run", SMOL, str(data), "--name", f"facts-{method}", "--method", method,
        "--steps", "12", "--lr", "5e-4", "--batch-size", "3", "--threads", "1", "--json",
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    manifest = json.loads(done.stdout)
    assert manifest["method"] == method
    curve = [p["loss"] for p in manifest["loss_curve"]]
    assert len(curve) == 12
    if method == "dpo":
        # DPO's loss starts at log 2 (chosen and rejected equally likely) and falls as the
        # adapter learns to prefer the chosen answers.
        assert abs(curve[0] - 0.6931) < 0.01 and curve[-1] < 0.3, curve
    else:
        assert curve[-1] < curve[0] / 2, curve
    check = manifest["check"]
    assert check["tokens"] > 0 and check["max_abs_diff"] <= check["tolerance"], check
    assert f"facts-{method}" in hearth(tuned, "models", "list", "--json").stdout
    assert not (tuned / "adapters" / ".runs" / f"facts-{method}").exists()


def test_check_takes_the_base_first_like_run(tmp_path: Path) -> None:
    example = ROOT / "examples" / "finetune" / "codename.jsonl"
    done = hearth(tmp_path, "finetune", "check", SMOL, str(example), "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["model"] == SMOL and report["usable"] == report["examples"] == 12
    assert report["tokens"]["trained"] < report["tokens"]["total"]
    bad = hearth(tmp_path, "finetune", "check", SMOL, str(tmp_path / "missing.jsonl"))
    assert bad.returncode == 1 and "no such file" in bad.stdout


def test_ctrl_c_registers_nothing_and_resume_finishes_the_run(tmp_path: Path) -> None:
    example = ROOT / "examples" / "finetune" / "codename.jsonl"
    args = [
        "finetune", "run", SMOL, str(example), "--name", "halted", "--steps", "10",
        "--save-every", "4", "--batch-size", "4", "--threads", "1", "--json",
    ]  # fmt: skip
    env = {**os.environ, "HEARTH_HOME": str(tmp_path), "COLUMNS": "200"}
    # Its own process group, so the interrupt reaches the CLI and its training worker
    # together, as Ctrl-C in a terminal does.
    proc = subprocess.Popen(
        [sys.executable, "-m", "hearth", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )
    state = tmp_path / "adapters" / ".runs" / "halted" / "checkpoints" / "checkpoint-4"
    deadline = time.monotonic() + 600
    while not (state / "trainer_state.json").exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no checkpoint after 600 s"
        time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode != 0, out + err
    assert "Traceback" not in err, err
    assert "halted" not in hearth(tmp_path, "models", "list", "--json").stdout
    listing = json.loads(hearth(tmp_path, "finetune", "list", "--json").stdout)
    assert listing == {"adapters": [], "unfinished": ["halted"]}

    resumed = hearth(tmp_path, *args, "--resume")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    manifest = json.loads(resumed.stdout)
    assert [p["step"] for p in manifest["loss_curve"]] == list(range(1, 11))
    assert "halted" in hearth(tmp_path, "models", "list", "--json").stdout
    listing = json.loads(hearth(tmp_path, "finetune", "list", "--json").stdout)
    assert [a["name"] for a in listing["adapters"]] == ["halted"] and not listing["unfinished"]
