from __future__ import annotations

from pathlib import Path

import pytest

from hearth.config import DEFAULT_MODEL, load_settings
from hearth.errors import ConfigError


def test_defaults_without_files(tmp_path: Path) -> None:
    s = load_settings(home=tmp_path, env={})
    assert s.default_model == DEFAULT_MODEL
    assert (s.host, s.port) == ("127.0.0.1", 8000)
    assert s.models[DEFAULT_MODEL].sampling["repeat_penalty"] == pytest.approx(1.1)
    assert s.db_url == f"sqlite:///{tmp_path.resolve() / 'hearth.db'}"


def test_pulled_models_load_and_config_wins(tmp_path: Path) -> None:
    (tmp_path / "models.toml").write_text(
        '[models.pulled]\nengine = "llamacpp"\npath = "models/hf/x/main/a.gguf"\ncontext = 2048\n',
        encoding="utf-8",
    )
    s = load_settings(home=tmp_path, env={})
    assert s.models["pulled"].path == str(tmp_path.resolve() / "models/hf/x/main/a.gguf")
    (tmp_path / "config.toml").write_text("[models.pulled]\ncontext = 1024\n", encoding="utf-8")
    assert load_settings(home=tmp_path, env={}).models["pulled"].context == 1024


def test_environment_overrides(tmp_path: Path) -> None:
    env = {"HEARTH_PORT": "9001", "HEARTH_HOST": "0.0.0.0", "HEARTH_MODEL": "smollm2-135m-instruct"}
    s = load_settings(home=tmp_path, env=env)
    assert (s.host, s.port) == ("0.0.0.0", 9001)
    assert s.served_models() == ["smollm2-135m-instruct"]
    assert s.default_model == "smollm2-135m-instruct"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[models.x\n", "not valid TOML"),
        ('[models.x]\nengine = "warp"\n', "engine must be one of"),
        ('[models.x]\nengine = "llamacpp"\n', "needs path"),
        ('[models.x]\nengine = "remote"\n', "needs url"),
        ('[models.x]\nengine = "transformers"\n', "needs path = .*hf-model-dir"),
        (
            '[models.x]\nengine = "transformers"\npath = "m"\ntrust_remote_code = "yes"\n',
            "trust_remote_code must be true or false",
        ),
        ('[models.x]\nengine = "fake"\ncolour = "red"\n', "unknown keys"),
    ],
)
def test_bad_config_says_what_to_fix(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "config.toml").write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=message):
        load_settings(home=tmp_path, env={})


def test_bad_port_and_unknown_served_model(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="HEARTH_PORT"):
        load_settings(home=tmp_path, env={"HEARTH_PORT": "eighty"})
    with pytest.raises(ConfigError, match="Unknown model 'nope'"):
        load_settings(home=tmp_path, env={"HEARTH_MODEL": "nope"})
