"""Package attributes imported on first use (PEP 562), so that importing a package stays cheap.

``import mtt_helpers`` must not import torch: the ONNX predictor, the command line's ``--help``
and the torch-free helpers need none of it. A package lists each public name with the module
that defines it; the module is imported when the name is first read.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

Exports = tuple[Callable[[str], Any], Callable[[], list[str]], list[str]]


def lazy_exports(package: str, modules: Mapping[str, str]) -> Exports:
    """``__getattr__``, ``__dir__`` and ``__all__`` for ``package``: a name's module is imported when it is first read.

    Args:
        package: The package's ``__name__``.
        modules: Module (relative to ``package``, like ``".model.encoder"``, or absolute) -> the
            public names it defines, separated by spaces.

    Example:
        ``__getattr__, __dir__, __all__ = lazy_exports(__name__, {".model.encoder": "embed load_encoder"})``
    """
    exports = {name: module for module, names in modules.items() for name in names.split()}

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(exports[name], package), name)

    def __dir__() -> list[str]:
        return sorted(set(exports) | set(importlib.import_module(package).__dict__))

    return __getattr__, __dir__, sorted(exports)
