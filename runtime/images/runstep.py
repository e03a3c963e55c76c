"""RUN instructions as containers of wasmlab's own runtime over the build's rootfs, each recorded in the build's work
folder and deleted with the build, however it ends."""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from wasmlab.runtime.errors import BuildError, WasmlabError
from wasmlab.runtime.images.work import Work, delete_container, signals_deferred


class ContainerRuntime(Protocol):
    """What a RUN step needs of :class:`wasmlab.runtime.lifecycle.Runtime`."""

    root: str

    def create(self, container_id: str, bundle: str, *, stdin: int | None = None, stdout: int | None = None,
               stderr: int | None = None, with_caller: bool = False) -> dict[str, Any]: ...

    def start(self, container_id: str) -> None: ...

    def wait(self, container_id: str, timeout: float | None = None) -> Any: ...


def run_config(rootfs: str, argv: list[str], env: list[str], cwd: str, user: tuple[int, int]) -> dict[str, Any]:
    """The config.json of a RUN container: the build's rootfs, writable; pid, mount, uts and ipc namespaces (and,
    rootless, a user namespace mapping the builder's own user to root, as `wasmlab run` has)."""
    from wasmlab.runtime.spec.runtime import default_config

    rootless = os.geteuid() != 0
    if rootless and user != (0, 0):
        raise BuildError(f"a RUN step as user {user[0]}:{user[1]} cannot run rootless: only your own user is "
                         "mapped, as root", "drop the USER line before the RUN steps, or build as root")
    cfg = default_config(argv, rootless=rootless)
    cfg["root"] = {"path": rootfs, "readonly": False}
    cfg["process"].update(env=env, cwd=cwd or "/", terminal=False, user={"uid": user[0], "gid": user[1]})
    cfg["linux"]["namespaces"] = [{"type": t} for t in ("pid", "mount", "uts", "ipc", *(("user",) if rootless else ()))]
    cfg["mounts"] = [m for m in cfg["mounts"] if m["destination"] in ("/proc", "/dev", "/dev/pts", "/dev/shm")]
    cfg["linux"]["maskedPaths"] = []
    cfg["linux"]["readonlyPaths"] = []
    return cfg


RunOutput = Callable[[list[str], bytes], None]
"""``on_output(argv, chunk)``: a piece of a RUN step's output (stdout and stderr together), as it comes."""


class ContainerRunStep:
    """``run_step`` for :func:`wasmlab.runtime.images.build.build`: one container per RUN, its output going to OUTPUT
    (a file descriptor, or a :data:`RunOutput` callable fed from a pipe as the step runs).

    The container is recorded in the build's work folder before it is created, and a stop signal is held back while
    it is being created, so the build's cleanup (or, after a SIGKILL, the next sweep) always finds it."""

    def __init__(self, runtime: ContainerRuntime, work: Work, output: int | RunOutput = 2) -> None:
        self.runtime = runtime
        self.work = work
        self.output = output
        self._count = 0

    def __call__(self, rootfs: Path, argv: list[str], env: list[str], cwd: str,
                 user: tuple[int, int] = (0, 0)) -> int:
        self._count += 1
        bundle = self.work.path / f"run-{self._count}"
        bundle.mkdir()
        with open(bundle / "config.json", "w") as fh:
            json.dump(run_config(str(rootfs), argv, env, cwd, user), fh)
        cid = f"build-{os.getpid()}-{secrets.token_hex(4)}"
        record = {"root": self.runtime.root, "id": cid}
        null = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        read_end, out = -1, self.output
        if not isinstance(out, int):
            read_end, out = os.pipe2(os.O_CLOEXEC)
        try:
            try:
                with signals_deferred():
                    self.work.note_container(self.runtime.root, cid)
                    # A killed build takes its RUN with it (nothing keeps writing into the stage root after it).
                    self.runtime.create(cid, str(bundle), stdin=null, stdout=out, stderr=out, with_caller=True)
            except BaseException:
                self._discard(record)
                raise
            finally:
                os.close(null)
                if read_end >= 0:
                    os.close(out)   # the container holds the write end now: EOF comes when it is done
            try:
                self.runtime.start(cid)
                if read_end >= 0 and not isinstance(self.output, int):
                    while chunk := os.read(read_end, 1 << 16):
                        self.output(argv, chunk)
                code = _exit_code(self.runtime.wait(cid))
            finally:
                self._discard(record)
        finally:
            if read_end >= 0:
                os.close(read_end)
        return code

    def _discard(self, record: dict[str, str]) -> None:
        try:
            delete_container(record)
        except WasmlabError:
            if self.work.claimed:
                return  # kept in the record: the build's cleanup (or the next sweep) tries again
            raise
        self.work.forget_container(record["id"])


def _exit_code(record: Any) -> int:
    code = getattr(record, "exit_code", None)
    if code is None:
        signum = getattr(record, "signal", None)
        return 128 + int(signum) if signum else 1
    return int(code)
