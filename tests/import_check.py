"""Checks, inside a fresh environment, that a notebook's imports can be imported there (stdlib only).

    python import_check.py STATEMENTS PACKAGES

Executes STATEMENTS (a notebook's import statements, which imports every module they load with its
module-level imports); then, for each module of PACKAGES (comma-separated) that STATEMENTS import from,
the imports inside the body of every function and class that module defines, which calls make later:
a module is one idea, installed by one extra, so a chapter that uses it installs what all of it needs
(a service the chapter starts in a child process imports FastAPI there, not in the notebook). Prints
one line per import that failed; exits 1 if any did.
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


def failed_imports(statements: str, packages: Iterable[str]) -> list[str]:
    """What fails, one line each (see the module docstring); raises if ``statements`` themselves fail."""
    exec(compile(statements, "<the notebook's imports>", "exec"), {})
    packages = tuple(packages)
    modules = {name for name, _ in absolute_imports(ast.parse(statements).body) if name.split(".")[0] in packages}
    problems = []
    for name in sorted(modules):
        module = importlib.import_module(name)
        for value in vars(module).values():
            if not callable(value) or getattr(value, "__module__", None) != name:
                continue  # defined elsewhere: that module is checked when it is imported from
            try:
                source = textwrap.dedent(inspect.getsource(value))
            except (OSError, TypeError):
                continue
            for target, _ in absolute_imports(ast.walk(ast.parse(source))):
                try:
                    importlib.import_module(target)
                except ImportError as error:
                    problems.append(f"{name}.{value.__qualname__} imports {target}: {error}")
    return sorted(set(problems))


if __name__ == "__main__":
    failed = failed_imports(sys.argv[1], sys.argv[2].split(","))
    print("\n".join(failed))
    sys.exit(1 if failed else 0)
