"""The Lab: podman-like containers from images, with logs, names and a run history, over the embedded runtime."""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from wasmlab.runtime.errors import ContainerExists, ContainerNotFound, InvalidState, UsageError, WasmlabError
from wasmlab.runtime.handlers.detect import ENGINE_ANNOTATION, WASM_ENGINES
from wasmlab.runtime.store.home import checked_home, lab_home

NAME_ANNOTATION = "wasmlab.io/name"
ALIVE = ("created", "running", "paused")
IMAGE_ANNOTATION = "wasmlab.io/image"


@dataclass
class ContainerInfo:
    """One lab container, as `wasmlab ps` shows it."""

    id: str
    name: str
    image: str
    command: list[str]
    status: str
    created: float
    handler: str | None = None
    exit_code: int | None = None
    pid: int = 0
    annotations: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class LabRun:
    """The outcome of `wasmlab run`: a container id and, in the foreground, its exit code and timings."""

    id: str
    name: str
    exit_code: int | None
    decision: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    memory: dict[str, int] = field(default_factory=dict)
    reports: dict[str, Any] = field(default_factory=dict)


class Lab:
    """The service the faces use: images, containers by name, logs and history, all under one lab home."""

    def __init__(self, home: str | os.PathLike[str] | None = None, *, default_engine: str | None = None) -> None:
        from wasmlab.runtime.images import Images
        from wasmlab.runtime.lifecycle import Runtime
        from wasmlab.runtime.store.history import History

        self.home = checked_home(home) if home is not None else lab_home()
        self.images = Images(self.home)
        self.runtime = Runtime(root=str(self.home / "run"), default_engine=default_engine, home=str(self.home))
        self.history = History(self.home / "history.db")
        self.containers_dir = self.home / "containers"

    def close(self) -> None:
        self.runtime.close()
        self.history.close()

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- containers ---------------------------------------------------------------------------------------------
    def _dir(self, cid: str) -> Path:
        return self.containers_dir / cid

    def _meta(self, cid: str) -> dict[str, Any]:
        try:
            data: dict[str, Any] = json.loads((self._dir(cid) / "meta.json").read_text())
            return data
        except (OSError, ValueError):
            raise ContainerNotFound(f"no container {cid!r}", "list them with `wasmlab ps -a`") from None

    def _all_meta(self) -> list[dict[str, Any]]:
        out = []
        if self.containers_dir.is_dir():
            for entry in sorted(self.containers_dir.iterdir()):
                try:
                    out.append(json.loads((entry / "meta.json").read_text()))
                except (OSError, ValueError):
                    continue
        return out

    def resolve(self, name_or_id: str) -> str:
        """The container id for a name, an id, or a unique id prefix."""
        if not name_or_id.strip():
            raise UsageError("no container name given", "list them with `wasmlab ps -a`")
        metas = self._all_meta()
        for m in metas:
            if name_or_id in (m["name"], m["id"]):
                return str(m["id"])
        matches = [m for m in metas if m["id"].startswith(name_or_id)]
        if len(matches) == 1:
            return str(matches[0]["id"])
        raise ContainerNotFound(f"no container named {name_or_id!r}", "list them with `wasmlab ps -a`")

    def run(self, image: str, command: Sequence[str] | None = None, *, name: str | None = None, rm: bool = False,
            detach: bool = False, annotations: Mapping[str, str] | None = None, env: Sequence[str] | None = None,
            engine: str | None = None, entrypoint: Sequence[str] | None = None,
            stdio: tuple[int, int, int] | None = None, on_created: Callable[[str], None] | None = None) -> LabRun:
        """Run IMAGE like `podman run`. In the foreground, output goes to stdio (and the log) and this waits.

        on_created(id) is called once the container exists (a face forwards signals to it from then on)."""
        if engine is not None and engine not in WASM_ENGINES:
            raise UsageError(f"unknown engine {engine!r}", f"use one of {', '.join(WASM_ENGINES)}")
        cid = secrets.token_hex(6)
        name = name or f"wasmlab_{cid[:6]}"
        if not _NAME.match(name):
            raise UsageError(f"invalid container name {name!r}",
                             "names start with a letter or digit, then letters, digits, '_', '.' or '-'")
        anns = dict(annotations or {})
        if engine:
            anns[ENGINE_ANNOTATION] = engine
        anns[NAME_ANNOTATION] = name
        anns[IMAGE_ANNOTATION] = image
        cdir = self._dir(cid)
        self.containers_dir.mkdir(parents=True, exist_ok=True)
        with _locked(self.containers_dir.parent / ".container-names.lock"):
            # Checked and claimed under one lock (the claim is a first meta.json): two runs with one --name
            # cannot both win.
            if any(m["name"] == name for m in self._all_meta()):
                raise ContainerExists(f"the name {name!r} is in use", f"`wasmlab rm {name}` or pick another --name")
            cdir.mkdir(parents=True)
            (cdir / "meta.json").write_text(json.dumps({"id": cid, "name": name, "image": image, "command": [],
                                                        "created": time.time(), "rm": rm, "detach": detach,
                                                        "creating": True}))
        try:
            unpacked = self.images.unpack(image, cdir / "bundle", args=list(command) if command else None,
                                          env=_host_env(env or []), annotations=anns,
                                          entrypoint=list(entrypoint) if entrypoint is not None else None)
            if os.geteuid() == 0:
                # A cgroup of its own, as podman gives each container: pause/unpause, peak memory, OOM.
                config_path = cdir / "bundle" / "config.json"
                config = json.loads(config_path.read_text())
                config.setdefault("linux", {})["cgroupsPath"] = f"wasmlab/{cid}"
                config_path.write_text(json.dumps(config))
            meta = {"id": cid, "name": name, "image": image, "image_digest": unpacked.digest,
                    "command": unpacked.args, "created": time.time(), "rm": rm, "detach": detach}
            (cdir / "meta.json").write_text(json.dumps(meta))
            log_fd = os.open(cdir / "ctr.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
        except BaseException:
            shutil.rmtree(cdir, ignore_errors=True)
            raise
        try:
            if detach:
                null = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
                try:
                    self.runtime.create(cid, str(cdir / "bundle"), stdin=null, stdout=log_fd, stderr=log_fd)
                finally:
                    os.close(null)
                self.runtime.start(cid)
                return LabRun(cid, name, None)
            return self._foreground(cid, name, cdir, log_fd, stdio, rm, on_created)
        except WasmlabError:
            self._discard(cid)
            raise
        finally:
            os.close(log_fd)

    def _foreground(self, cid: str, name: str, cdir: Path, log_fd: int, stdio: tuple[int, int, int] | None,
                    rm: bool, on_created: Callable[[str], None] | None = None) -> LabRun:
        out_r, out_w = os.pipe2(os.O_CLOEXEC)
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        sinks = stdio or (0, 1, 2)
        try:
            state = self.runtime.create(cid, str(cdir / "bundle"), stdin=sinks[0], stdout=out_w, stderr=err_w)
        finally:
            os.close(out_w)
            os.close(err_w)
        relays = [threading.Thread(target=_relay, args=(out_r, (sinks[1], log_fd)), daemon=True),
                  threading.Thread(target=_relay, args=(err_r, (sinks[2], log_fd)), daemon=True)]
        for t in relays:
            t.start()
        if on_created is not None:
            on_created(cid)
        try:
            self.runtime.start(cid)
            rec = self.runtime.wait(cid)
        except BaseException:
            self.runtime.kill(cid, signal.SIGKILL)
            raise
        finally:
            for t in relays:
                t.join(5)
        result = LabRun(cid, name, rec.exit_code, decision=state.get("decision") or {},
                        timings=state.get("timings") or {}, memory={"max_rss_kb": rec.max_rss_kb})
        if rm:
            self._discard(cid)
        return result

    def _discard(self, cid: str) -> None:
        try:
            self.runtime.delete(cid, force=True)
        except WasmlabError:
            pass
        shutil.rmtree(self._dir(cid), ignore_errors=True)

    def ps(self, *, all: bool = False) -> list[ContainerInfo]:
        rows = []
        for m in self._all_meta():
            info = self._info(m)
            if m.get("rm") and m.get("detach") and info.status not in ALIVE and not m.get("creating"):
                self._discard(m["id"])  # `run -d --rm`: gone once it has exited, as with podman
                continue
            if all or info.status in ALIVE:
                rows.append(info)
        return sorted(rows, key=lambda r: r.created, reverse=True)

    def _info(self, m: dict[str, Any]) -> ContainerInfo:
        try:
            st = self.runtime.state(m["id"])
            status, extra = st["status"], st.get("wasmlab") or {}
            exit_code = (extra.get("exit") or {}).get("exit_code")
            return ContainerInfo(m["id"], m["name"], m["image"], m["command"], status, m["created"],
                                 extra.get("handler"), exit_code, int(st.get("pid") or 0), st.get("annotations") or {})
        except ContainerNotFound:
            status = "creating" if m.get("creating") else "exited"
            return ContainerInfo(m["id"], m["name"], m["image"], m["command"], status, m["created"])

    def inspect(self, name: str) -> dict[str, Any]:
        cid = self.resolve(name)
        info = self._info(self._meta(cid))
        out = info.as_dict()
        try:
            out["state"] = self.runtime.state(cid)
        except ContainerNotFound:
            pass
        out["bundle"] = str(self._dir(cid) / "bundle")
        return out

    def logs(self, name: str, *, follow: bool = False, poll: float = 0.1) -> Iterator[bytes]:
        """The container's output; with follow, keep yielding until it stops."""
        cid = self.resolve(name)
        path = self._dir(cid) / "ctr.log"
        with open(path, "rb") as fh:
            while True:
                chunk = fh.read(65536)
                if chunk:
                    yield chunk
                    continue
                if not follow or self._info(self._meta(cid)).status not in ALIVE:
                    rest = fh.read()
                    if rest:
                        yield rest
                    return
                time.sleep(poll)

    def stop(self, name: str, *, timeout: float = 10.0) -> ContainerInfo:
        """SIGTERM, then SIGKILL after timeout seconds, as podman stop does."""
        cid = self.resolve(name)
        info = self._info(self._meta(cid))
        if info.status not in ALIVE:
            return info
        if info.status == "paused":
            self.runtime.resume(cid)  # a frozen process cannot act on SIGTERM
        self.runtime.kill(cid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._info(self._meta(cid)).status not in ALIVE:
                return self._info(self._meta(cid))
            time.sleep(0.02)
        self.runtime.kill(cid, signal.SIGKILL)
        for _ in range(250):
            if self._info(self._meta(cid)).status not in ALIVE:
                break
            time.sleep(0.02)
        return self._info(self._meta(cid))

    def exec(self, name: str, command: Sequence[str], *, env: Sequence[str] = (), tty: bool = False) -> int:
        """Run a command in a running container, like `podman exec`; returns its exit status.

        The caller may be multi-threaded (this process runs the zygote's reader thread), so the process
        is started by a fresh wasmlab-oci, never by forking here.
        """
        import subprocess
        import sys

        cid = self.resolve(name)
        argv = [sys.executable, "-m", "wasmlab.runtime.cli.oci", "--root", self.runtime.root, "exec"]
        argv += [f"--env={e}" for e in _host_env(env)] + (["--tty"] if tty else []) + [cid, *command]
        return subprocess.run(argv, check=False).returncode

    def pause(self, name: str) -> str:
        cid = self.resolve(name)
        self.runtime.pause(cid)
        return cid

    def unpause(self, name: str) -> str:
        cid = self.resolve(name)
        self.runtime.resume(cid)
        return cid

    def image_users(self, image: str) -> list[ContainerInfo]:
        """The containers (running or not) made from the image that IMAGE names."""
        digest = self.images.store.resolve(image).digest
        users = []
        for m in self._all_meta():
            used = m.get("image_digest")
            if used is None:  # made before the digest was recorded: go by the name it was run as
                try:
                    used = self.images.store.resolve(m["image"]).digest
                except WasmlabError:
                    continue
            if used == digest:
                users.append(self._info(m))
        return users

    def rmi(self, image: str, *, force: bool = False) -> Any:
        """`podman rmi`: remove a name; the image goes with its last name, refused while containers use
        it unless FORCE, which removes those containers first (stopping running ones)."""
        found, matched = self.images.store.match(image)
        if matched is None or len(found.names) <= 1:
            users = self.image_users(image)
            if users and not force:
                names = ", ".join(u.name for u in users)
                raise InvalidState(f"image {image} is in use by container{'s' if len(users) > 1 else ''} {names}",
                                   f"`wasmlab rm {users[0].name}` first, or `wasmlab rmi -f {image}` to remove "
                                   "the containers too")
            for user in users:
                self.rm(user.id, force=True)
        return self.images.remove(image)

    def rm(self, name: str, *, force: bool = False) -> str:
        cid = self.resolve(name)
        info = self._info(self._meta(cid))
        if info.status in ("running", "paused") and not force:
            raise InvalidState(f"container {info.name} is running", f"`wasmlab stop {info.name}` or use `rm -f`")
        self._discard(cid)
        return cid


def _relay(src: int, sinks: tuple[int, ...]) -> None:
    """Copy a container's output to the terminal and its log as it comes."""
    try:
        while True:
            chunk = os.read(src, 65536)
            if not chunk:
                return
            for fd in sinks:
                try:
                    os.write(fd, chunk)
                except OSError:
                    pass
    finally:
        os.close(src)


def _host_env(env: Sequence[str]) -> list[str]:
    """`-e NAME` without a value passes the caller's NAME through, as podman does (left out if unset)."""
    out = []
    for entry in env:
        name = entry.partition("=")[0]
        if not name or not name.replace("_", "a").isalnum() or name[0].isdigit():
            raise UsageError(f"invalid environment entry {entry!r}",
                             "write -e NAME=VALUE, or -e NAME to pass on this shell's value")
        if "=" in entry:
            out.append(entry)
        elif entry in os.environ:
            out.append(f"{entry}={os.environ[entry]}")
    return out


_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    import fcntl

    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
