"""The UI's message catalogues agree (same keys in every language, every key the pages and
scripts use is defined), and the vendored files are the ones THIRD_PARTY.md lists."""

from __future__ import annotations

import hashlib
import json
import re

from hearth.web import HERE, LANGUAGES


def _catalogue(lang: str) -> dict[str, str]:
    data: dict[str, str] = json.loads((HERE / "messages" / f"{lang}.json").read_text("utf-8"))
    return data


def test_every_language_has_the_same_keys_and_placeholders() -> None:
    base = _catalogue("en")
    for lang in LANGUAGES:
        other = _catalogue(lang)
        assert set(other) == set(base), lang
        for key, text in base.items():
            assert set(re.findall(r"\{(\w+)\}", other[key])) == set(
                re.findall(r"\{(\w+)\}", text)
            ), (lang, key)
            assert other[key].strip(), (lang, key)


def test_every_used_key_is_defined() -> None:
    used: set[str] = set()
    for path in (HERE / "templates").glob("*.html"):
        used |= set(re.findall(r"t\('([\w.]+)'", path.read_text("utf-8")))
    for path in (HERE / "static").glob("*.js"):
        used |= set(re.findall(r"\bt\(\"([\w.]+)\"", path.read_text("utf-8")))
    assert used, "no message keys found"
    assert used <= set(_catalogue("en")), used - set(_catalogue("en"))


def test_vendored_files_match_third_party() -> None:
    vendor = HERE / "static" / "vendor"
    listed = re.findall(
        r"^\| (\S+?) \*? ?\|.*\| ([0-9a-f]{64}) \|$", (vendor / "THIRD_PARTY.md").read_text(), re.M
    )
    assert {name for name, _ in listed} == {p.name for p in vendor.iterdir() if p.suffix != ".md"}
    for name, digest in listed:
        assert hashlib.sha256((vendor / name).read_bytes()).hexdigest() == digest, name
