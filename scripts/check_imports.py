"""Fail when a module imports from a higher layer (see ARCHITECTURE.md, "Dependency direction").

Layers, lowest first: errors/types < config < engines/storage/hub/tokens
< rag/apps/finetune/evals < server/cli. A module may import its own layer or below.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

LAYERS = {
    "errors": 1,
    "types": 1,
    "config": 2,
    "engines": 3,
    "storage": 3,
    "hub": 3,
    "tokens": 3,
    "rag": 4,
    "apps": 4,
    "conversations": 4,
    "agents": 4,
    "finetune": 4,
    "evals": 4,
    "server": 5,
    "cli": 5,
    "web": 5,
}
TOP = {"__init__", "__main__"}  # entry points may import anything
ROOT = Path(__file__).resolve().parent.parent / "src" / "hearth"


def layer_of(parts: list[str]) -> int | None:
    return LAYERS.get(parts[0]) if parts else None


def imported(tree: ast.AST) -> list[tuple[int, str]]:
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.lineno, node.module))
    return [(line, name) for line, name in out if name == "hearth" or name.startswith("hearth.")]


def main() -> int:
    problems = []
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT).with_suffix("").parts
        if rel[0] in TOP:
            continue
        own = layer_of(list(rel))
        if own is None:
            problems.append(f"{path}: module is in no layer; add it to LAYERS in {__file__}")
            continue
        for line, name in imported(ast.parse(path.read_text(encoding="utf-8"))):
            target = layer_of(name.split(".")[1:])
            if target is not None and target > own:
                problems.append(
                    f"{path}:{line}: layer {own} ({rel[0]}) imports {name} (layer {target})"
                )
    for p in problems:
        print(p)
    print(f"import direction: {'FAIL' if problems else 'ok'} ({len(problems)} problems)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
