"""`hearth apps`, run as a user runs it: validate, add, list, show, run, test, rm — on the
scripted models, so no model weights are needed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli.test_cli import run

CONFIG = """
[models.echo]
engine = "fake"

[models.json]
engine = "fake"
script = ["fresh noodles"]
"""

APP = """\
app: shop
inputs: {shop: {type: string, required: true}}
variants:
  default:
    model: echo
    system: You answer for {{ shop }}.
    user: "Q: {{ input }}"
  json:
    system: 只输出 JSON。
output:
  schema: schemas/reply.json
tests:
  - name: echo case
    vars: {shop: Noodles}
    input: hello
    assert: [{type: contains, value: "Q: hello"}, {type: not-contains, value: http}]
"""


@pytest.fixture
def home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    (home / "config.toml").write_text(CONFIG, encoding="utf-8")
    return home


def write_app(tmp_path: Path, text: str = APP, *, schema_required: str = "reply") -> Path:
    (tmp_path / "schemas").mkdir(exist_ok=True)
    schema = {
        "type": "object",
        "properties": {"reply": {"type": "string"}},
        "required": [schema_required],
    }
    (tmp_path / "schemas" / "reply.json").write_text(json.dumps(schema), encoding="utf-8")
    path = tmp_path / "shop.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_validate_reports_problems_with_lines_and_exits_1(home: Path, tmp_path: Path) -> None:
    good = write_app(tmp_path)
    bad = tmp_path / "bad.yaml"
    bad.write_text("app: bad\nvariants:\n  default:\n    system: '{{ nope }}'\n", encoding="utf-8")
    r = run(home, "apps", "validate", str(good), str(bad))
    assert r.returncode == 1
    assert "✓" in r.stdout and "shop" in r.stdout
    assert "line 4" in r.stderr and "nope" in r.stderr
    assert run(home, "apps", "validate", str(good)).returncode == 0


def test_add_list_show_rm(home: Path, tmp_path: Path) -> None:
    path = write_app(tmp_path)
    added = run(home, "apps", "add", str(path))
    assert added.returncode == 0, added.stderr
    assert (home / "apps" / "shop.yaml").exists()
    assert (home / "apps" / "schemas" / "reply.json").exists()  # the schema file came along
    again = run(home, "apps", "add", str(path))
    assert again.returncode == 2 and "--force" in again.stderr
    assert run(home, "apps", "add", str(path), "--force").returncode == 0
    listed = json.loads(run(home, "apps", "list", "--json").stdout)
    assert listed == [
        {
            "app": "shop",
            "description": "",
            "models": ["echo", "json"],
            "variants": ["default", "json"],
            "tests": 1,
        }
    ]
    shown = run(home, "apps", "show", "shop")
    assert "variant default -> model echo" in shown.stdout.replace("  ", " ")
    (home / "apps" / "broken.yaml").write_text("app: [\n", encoding="utf-8")
    assert "invalid" in run(home, "apps", "list").stderr
    assert run(home, "apps", "rm", "shop").returncode == 0
    gone = run(home, "apps", "show", "shop")
    assert gone.returncode == 2 and "No app 'shop'" in gone.stderr


def test_run_prints_the_answer_and_json(home: Path, tmp_path: Path) -> None:
    path = write_app(tmp_path)
    out = run(home, "apps", "run", str(path), "--var", "shop=Noodles", "-i", "hi")
    assert out.returncode == 0, out.stderr
    assert "You said: Q: hi" in out.stdout
    as_json = run(
        home, "apps", "run", str(path), "-v", "shop=N", "-i", "hi", "-m", "json", "--json"
    )
    data = json.loads(as_json.stdout)
    assert data["output"] == {"reply": "fresh noodles"} and data["variant"] == "json"
    missing = run(home, "apps", "run", str(path), "-i", "hi")
    assert (
        missing.returncode == 2 and "shop" in missing.stderr and "Traceback" not in missing.stderr
    )


def test_test_runs_the_matrix_and_fails_on_a_failed_assertion(home: Path, tmp_path: Path) -> None:
    path = write_app(tmp_path)
    ok = run(home, "apps", "test", str(path), "--model", "echo")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "1/1 cases passed" in ok.stdout
    both = run(home, "apps", "test", str(path), "--json")
    results = json.loads(both.stdout)
    assert {r["model"] for r in results} == {"echo", "json"}
    # the json model's answer does not contain "Q: hello": that cell fails, the run exits 1
    assert both.returncode == 1
    failed = [r for r in results if not r["passed"]]
    assert [r["model"] for r in failed] == ["json"]
    assert failed[0]["assertions"][0]["passed"] is False
