"""The handler registry: built-in handlers plus third-party ones from the `wasmlab.handlers` entry-point group."""

from __future__ import annotations

import os
from typing import Any

from wasmlab.runtime.handlers import installed
from wasmlab.runtime.handlers.base import Handler
from wasmlab.runtime.handlers.native import NativeHandler

ENTRY_POINT_GROUP = "wasmlab.handlers"


def cache_folder() -> str:
    from wasmlab.runtime.store.home import lab_home

    return str(lab_home() / "cache" / "modules")


def builtin(cache: str | None = None) -> list[Handler]:
    from wasmlab.runtime.handlers.wasmtime import WasmtimeHandler

    handlers: list[Handler] = [NativeHandler(), WasmtimeHandler(cache)]
    try:
        from wasmlab.runtime.handlers.wasmer import WasmerHandler

        handlers.append(WasmerHandler(cache))  # a lasting folder: `create` exits before the guest runs
    except ImportError:
        pass
    return handlers


def third_party() -> list[Handler]:
    import importlib

    found: list[Handler] = []
    for _name, target in installed.entry_points(ENTRY_POINT_GROUP):
        module, _, attr = target.partition(":")
        try:
            obj: Any = importlib.import_module(module.strip())
            for part in attr.strip().split(".") if attr.strip() else ():
                obj = getattr(obj, part)
            found.append(obj() if isinstance(obj, type) else obj)
        except Exception:
            continue
    return found


def load(cache: str | None = None, *, plugins: bool = True,
         prepare: tuple[str, ...] = ("wasmtime",)) -> dict[str, Handler]:
    """Name and alias -> handler, for the handlers usable here. Engines named in prepare are warmed now."""
    if cache is None:
        cache = os.environ.get("WASMLAB_MODULE_CACHE") or cache_folder()
    table: dict[str, Handler] = {}
    for handler in builtin(cache) + (third_party() if plugins else []):
        if handler.available() is not None:
            continue
        for name in (handler.name, *handler.aliases):
            table.setdefault(name, handler)
    for name in prepare:
        if name in table:
            table[name].prepare()
    return table


def describe(cache: str | None = None) -> list[dict[str, Any]]:
    """Every known handler with its availability, for `features` and `doctor`."""
    out = []
    for handler in builtin(cache) + third_party():
        reason = handler.available()
        out.append({"name": handler.name, "aliases": list(handler.aliases), "wasm": handler.wasm,
                    "available": reason is None, "reason": reason,
                    "version": handler.version() if reason is None else None})
    return out
