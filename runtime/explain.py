"""Explain, without running anything, which handler a bundle's container would get and why."""

from __future__ import annotations

import os

from wasmlab.runtime.handlers.detect import Decision, decide
from wasmlab.runtime.linux.mounts import _inside
from wasmlab.runtime.spec import runtime as spec_mod


def explain(bundle: str, *, default_engine: str = "wasmtime", annotations: dict[str, str] | None = None,
            extra_engines: tuple[str, ...] = ()) -> Decision:
    """The handler decision for BUNDLE, resolving the entrypoint inside its rootfs as the container would."""
    spec = spec_mod.load(bundle)
    anns = spec.annotations | (annotations or {})
    def host(path: str) -> str:
        return _inside(spec.rootfs, path if path.startswith("/") else os.path.join(spec.cwd, path))

    # As the container looks it up (the one search, shared with the init).
    path = spec_mod.search_path(spec.args[0], spec.env, host) if spec.args else ""
    head: bytes | None = None
    if path and os.path.isfile(host(path)):
        with open(host(path), "rb") as fh:
            head = fh.read(64)
    return decide(anns, path, head, default_engine=default_engine, extra_engines=extra_engines)
