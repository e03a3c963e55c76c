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
    args = spec.args
    prog = args[0] if args else ""
    candidates = [prog] if "/" in prog else [
        os.path.join(d, prog) for e in spec.env if e.startswith("PATH=") for d in e[5:].split(":")] or [
        f"/usr/bin/{prog}", f"/bin/{prog}"]
    head: bytes | None = None
    path = prog
    # As the container looks it up: the first executable file on PATH, else the first file at all.
    hosts = [(cand, _inside(spec.rootfs, cand if cand.startswith("/") else os.path.join(spec.cwd, cand)))
             for cand in candidates]
    files = [(cand, host) for cand, host in hosts if os.path.isfile(host)]
    chosen = next(((c, h) for c, h in files if os.access(h, os.X_OK)), files[0] if files else None)
    if chosen is not None:
        path, host = chosen
        with open(host, "rb") as fh:
            head = fh.read(64)
    return decide(anns, path, head, default_engine=default_engine, extra_engines=extra_engines)
