"""How llama.cpp's exceptions are read: the request's fault before tokens, ours after."""

from __future__ import annotations

from hearth.engines.llamacpp import _failure
from hearth.errors import EngineError, InvalidRequest


def test_request_errors_before_generation_are_the_clients() -> None:
    for exc in (ValueError("Cannot have 2 or more assistant messages"), TypeError("too big")):
        failure = _failure(exc, started=False)
        assert isinstance(failure, InvalidRequest) and str(exc) in failure.message


def test_faults_and_errors_mid_answer_are_the_servers() -> None:
    assert isinstance(_failure(RuntimeError("decode failed"), started=False), EngineError)
    assert isinstance(_failure(ValueError("bad output"), started=True), EngineError)
