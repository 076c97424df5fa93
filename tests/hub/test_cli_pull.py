"""The `pull` command function, mounted on a Typer app as `hearth models pull` will be."""

from __future__ import annotations

from pathlib import Path

import typer
from typer.testing import CliRunner

from hearth.cli.pull import pull
from hearth.hub.errors import NoMatchingFiles
from hearth.hub.local import registered_models
from tests.hub.hubserver import FakeHub, HubFile
from tests.hub.test_register import tiny_gguf

app = typer.Typer()
app.command("pull")(pull)


@app.command("list")
def _list() -> None:
    """A second command, so `pull` is a subcommand as under `hearth models`."""


def test_cli_pull_downloads_and_registers(fake_hub: FakeHub, tmp_path: Path) -> None:
    fake_hub.repos["acme/Tiny-GGUF"] = {
        "tiny-q4_k_m.gguf": HubFile(tiny_gguf(tmp_path / "t.gguf", 2048)),
        "README.md": HubFile(b"# tiny\n", lfs=False),
    }
    home = tmp_path / "home"
    env = {"HEARTH_HOME": str(home), "COLUMNS": "200"}
    args = ["pull", "acme/Tiny-GGUF", "--file", "*Q4_K_M*", "--revision", "main"]
    out = CliRunner().invoke(app, args, env=env)
    assert out.exit_code == 0, out.output
    assert "tiny-q4_k_m.gguf" in out.output and "downloaded, verified" in out.output
    assert "hearth serve --model tiny-q4_k_m" in out.output
    assert registered_models(home)["tiny-q4_k_m"]["context"] == 2048

    again = CliRunner().invoke(app, args, env=env)
    assert "already downloaded and verified" in again.output

    miss = CliRunner().invoke(app, ["pull", "acme/Tiny-GGUF", "-f", "*.safetensors"], env=env)
    assert isinstance(miss.exception, NoMatchingFiles)
    assert "tiny-q4_k_m.gguf" in miss.exception.message


def test_cli_pull_help_names_the_options() -> None:
    out = CliRunner().invoke(app, ["pull", "--help"], env={"COLUMNS": "200"})
    for option in ("--file", "--revision", "--source", "hf", "modelscope"):
        assert option in out.output
