"""Names a package offers but imports on first use (PEP 562), so that importing the package stays light."""

from __future__ import annotations

from importlib import import_module
from typing import Callable


def lazy_names(package: str, names: dict[str, str], namespace: dict) -> tuple[Callable, Callable]:
    """The module-level __getattr__ and __dir__ of a package offering names (name -> its module, relative to the
    package) that are imported when first asked for, and kept in namespace (the package's globals()) from then on."""

    def __getattr__(name: str):
        module = names.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(import_module(module, package), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(names))

    return __getattr__, __dir__
