"""An app file as text: YAML read with the line of every value, and problems that name
their field and line (what ``hearth apps validate`` prints and the web editor marks)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

from hearth.errors import UserError

Lines = dict[tuple[Any, ...], int]


@dataclass(frozen=True)
class Problem:
    path: str  # dotted field path ("variants.default.system"); "" for the whole file
    message: str
    line: int | None = None  # 1-based line in the file

    def __str__(self) -> str:
        where = f"line {self.line}: " if self.line else ""
        return f"{where}{self.path + ': ' if self.path else ''}{self.message}"


class AppInvalid(UserError):
    code = "invalid_app"

    def __init__(self, source: str, problems: list[Problem]) -> None:
        listed = "; ".join(str(p) for p in problems[:10])
        more = f" (and {len(problems) - 10} more)" if len(problems) > 10 else ""
        super().__init__(f"{source}: {listed}{more}", param="app")
        self.problems = problems


def load(text: str, source: str) -> tuple[dict[str, Any], Lines]:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as e:
        line = e.problem_mark.line + 1 if e.problem_mark else None
        raise AppInvalid(source, [Problem("", f"not valid YAML: {e.problem}", line)]) from None
    except yaml.YAMLError as e:
        raise AppInvalid(source, [Problem("", f"not valid YAML: {e}")]) from None
    if not isinstance(data, dict):
        raise AppInvalid(
            source,
            [Problem("", "an app file is a mapping with 'app' and 'variants' at the top", 1)],
        )
    lines: Lines = {}
    _index(node, (), lines)
    return data, lines


def _index(node: yaml.Node | None, path: tuple[Any, ...], out: Lines) -> None:
    """The line of every value in the file, by its path."""
    if node is None:
        return
    block = isinstance(node, yaml.ScalarNode) and node.style in ("|", ">")
    out[path] = node.start_mark.line + 1 + block  # a block scalar's text starts below it
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            _index(value, (*path, key.value), out)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _index(item, (*path, i), out)


def dotted(path: Any) -> str:
    return ".".join(str(p) for p in path)


def template_line(lines: Lines, name: str, line: int | None) -> int | None:
    """A template's line in the file: where its value starts, plus its own line. Block
    scalars (``|``) start on the line after the key."""
    path = tuple(int(p) if p.isdigit() else p for p in name.split("."))
    start = lines.get(path)
    if start is None:
        return None
    return start + (line or 1) - 1
