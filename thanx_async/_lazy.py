"""Lazy package namespaces (PEP 562): public names are imported on first use.

Importing ``thanx_async`` or ``thanx_async.testing`` (which pytest does in every
run, through our plugin) then costs almost nothing until a name is used.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

__all__ = ["lazy_namespace"]


def lazy_namespace(
    package: str, exports: Mapping[str, str], public: Sequence[str], namespace: dict[str, Any]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """Module ``__getattr__`` and ``__dir__`` for ``package``.

    Args:
        package: the package's ``__name__``.
        exports: public name -> the private module defining it.
        public: the package's ``__all__``.
        namespace: the package's ``globals()``, where resolved names are cached.
    """

    def __getattr__(name: str) -> Any:  # noqa: N807 - it is the module's __getattr__
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value  # later lookups skip __getattr__
        return value

    def __dir__() -> list[str]:  # noqa: N807 - it is the module's __dir__
        return sorted(public)

    return __getattr__, __dir__
