"""The native handler: execve the entrypoint, as any OCI runtime does."""

from __future__ import annotations

import os

from wasmlab.runtime.handlers.base import Workload


class NativeHandler:
    name = "native"
    aliases: tuple[str, ...] = ("linux", "default")
    wasm = False

    def available(self) -> str | None:
        return None

    def version(self) -> str:
        return os.uname().release

    def prepare(self) -> None:
        return None

    def can_handle(self, workload: Workload) -> bool:
        return True

    def run(self, workload: Workload) -> int:
        env = dict(e.split("=", 1) for e in workload.env)
        os.execve(workload.path, workload.args, env)
        return 127  # not reached
