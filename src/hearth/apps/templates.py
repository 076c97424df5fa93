"""An app's prompt templates: Jinja2 in a sandbox, compiled once, with errors that name the
template and the line.

The sandbox (``ImmutableSandboxedEnvironment``) refuses attribute access to Python internals
(``{{ x.__class__ }}``) and methods that mutate values, so an app file cannot reach into the
server. Undefined variables are errors (``StrictUndefined``), never silently empty.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass
from typing import Any

from jinja2 import FunctionLoader, StrictUndefined, TemplateSyntaxError, meta, nodes
from jinja2.exceptions import SecurityError, TemplateError, UndefinedError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from hearth.errors import UserError


class TemplateProblem(UserError):
    """A template that does not compile or render; ``where`` is its field in the app file."""

    def __init__(self, where: str, line: int | None, message: str) -> None:
        at = f"{where} line {line}" if line else where
        super().__init__(f"{at}: {message}", param=where)
        self.where = where
        self.line = line


@dataclass(frozen=True)
class Undeclared:
    name: str
    line: int


class Templates:
    """Named templates (``variants.default.system`` …) compiled in one sandbox."""

    def __init__(self, sources: dict[str, str]) -> None:
        self.sources = dict(sources)
        self.env = ImmutableSandboxedEnvironment(
            loader=FunctionLoader(self._source),
            undefined=StrictUndefined,
            autoescape=False,
            keep_trailing_newline=False,
        )
        self._asts: dict[str, nodes.Template] = {}
        for name, source in self.sources.items():
            try:
                self._asts[name] = self.env.parse(source, name=name)
                self.env.get_template(name)
            except TemplateSyntaxError as e:
                raise TemplateProblem(name, e.lineno, e.message or "syntax error") from None

    def _source(self, name: str) -> tuple[str, str, Any] | None:
        # The template's name as its file name: Jinja's traceback frames then carry it.
        source = self.sources.get(name)
        return None if source is None else (source, name, lambda: True)

    def undeclared(self, name: str) -> list[Undeclared]:
        """Variables ``name`` reads without setting them, each with its first line."""
        ast = self._asts[name]
        wanted = meta.find_undeclared_variables(ast)
        first: dict[str, int] = {}
        for node in ast.find_all(nodes.Name):
            if node.name in wanted and node.ctx == "load":
                first.setdefault(node.name, node.lineno)
        return [Undeclared(n, first.get(n, 1)) for n in sorted(wanted)]

    def fields(self, name: str, variable: str) -> set[str]:
        """The names template ``name`` reads off ``variable``: ``steps.opening`` and
        ``steps['opening']`` both give "opening"."""
        out = set()
        for node in self._asts[name].find_all((nodes.Getattr, nodes.Getitem)):
            target = getattr(node, "node", None)
            if not (isinstance(target, nodes.Name) and target.name == variable):
                continue
            if isinstance(node, nodes.Getattr):
                out.add(node.attr)
            elif isinstance(node, nodes.Getitem):
                arg = node.arg
                if isinstance(arg, nodes.Const) and isinstance(arg.value, str):
                    out.add(arg.value)
        return out

    def uses(self, variable: str) -> bool:
        return any(variable in meta.find_undeclared_variables(a) for a in self._asts.values())

    def render(self, name: str, variables: dict[str, Any]) -> str:
        try:
            return self.env.get_template(name).render(variables)
        except UndefinedError as e:
            raise TemplateProblem(
                name, _line(e, name), f"{e.message}; pass it in 'variables' or give it a default"
            ) from None
        except SecurityError as e:
            raise TemplateProblem(name, _line(e, name), f"not allowed in a template: {e}") from None
        except TemplateError as e:
            raise TemplateProblem(name, _line(e, name), str(e)) from None
        except (TypeError, ValueError, ArithmeticError, LookupError) as e:
            raise TemplateProblem(name, _line(e, name), f"{type(e).__name__}: {e}") from None


def _line(error: BaseException, name: str) -> int | None:
    """Jinja rewrites tracebacks so that template frames carry the template's own name and
    line; the innermost such frame is where rendering failed."""
    line = None
    for frame in traceback.extract_tb(error.__traceback__):
        if frame.filename == name or frame.filename.endswith(f"/{name}"):
            line = frame.lineno
    return line
