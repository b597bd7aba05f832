"""Checks, inside a fresh environment, that a notebook's imports can be imported there (stdlib only).

    python import_check.py STATEMENTS PROJECT

Executes STATEMENTS (a notebook's import statements, which imports every module they load with its
module-level imports); then, for each function or class of PROJECT they name, the imports inside its
body, which a call would make later; then every name of each subpackage of PROJECT they loaded whose
names are imported on first use (``mtt_helpers.onnx``, ``mtt_helpers.serving``): a chapter that uses a
subpackage installs the extra behind all of it (a service the chapter starts in a child process imports
FastAPI there, not in the notebook). Prints one line per import that failed; exits 1 if any did.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import sys
import textwrap
from collections.abc import Iterable, Iterator


def absolute_imports(nodes: Iterable[ast.AST]) -> Iterator[tuple[str, tuple[str, ...]]]:
    """``(module, names)`` of each absolute import among ``nodes``: ``import a.b`` gives ``("a.b", ())``,
    ``from a import b, c`` gives ``("a", ("b", "c"))``; relative imports are skipped."""
    for node in nodes:
        if isinstance(node, ast.Import):
            yield from ((alias.name, ()) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module, tuple(alias.name for alias in node.names)


def failed_imports(statements: str, project: str) -> list[str]:
    """What fails, one line each (see the module docstring); raises if ``statements`` themselves fail."""
    names: dict = {}
    exec(compile(statements, "<the notebook's imports>", "exec"), names)
    problems = []
    for value in list(names.values()):
        if not callable(value) or str(getattr(value, "__module__", "")).split(".")[0] != project:
            continue
        try:
            source = textwrap.dedent(inspect.getsource(value))
        except (OSError, TypeError):
            continue
        for target, _ in absolute_imports(ast.walk(ast.parse(source))):
            try:
                importlib.import_module(target)
            except ImportError as error:
                problems.append(f"{value.__module__}.{value.__qualname__} imports {target}: {error}")
    for name, module in list(sys.modules.items()):  # a subpackage is one idea, installed by one extra: all of it
        if name.startswith(project + ".") and hasattr(module, "__path__") and hasattr(module, "__getattr__"):
            for public in getattr(module, "__all__", []):
                try:
                    getattr(module, public)  # imports the module behind a lazily exported name
                except ImportError as error:
                    problems.append(f"{name}.{public} (imported on first use) needs {error.name}: {error}")
    return sorted(set(problems))


if __name__ == "__main__":
    failed = failed_imports(sys.argv[1], sys.argv[2])
    print("\n".join(failed))
    sys.exit(1 if failed else 0)
