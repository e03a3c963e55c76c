"""The pod keeper: one process per played pod that outlives `kube play` (as conmon does for podman), waits on the
pod's containers through pidfds, restarts them per restartPolicy with the kubelet's back-off, makes the sandbox again
when its infra container dies, and records restarts, states and the back-off deadline in the pod's keeper.json."""

from __future__ import annotations

import json
import os
import select
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

KEEPER_FILE = "keeper.json"   # written by the keeper alone (atomic replace): no lock needed
KEEPER_LOG = "keeper.log"
MODULE = "wasmlab.runtime.pods.keeper"
BACKOFF_ENV = "WASMLAB_POD_BACKOFF_BASE"  # a test and workshop setting: the kubelet's 10 s, scaled
DEFAULT_BASE = 10.0
CAP_FACTOR = 30                # the kubelet: 10 s doubling up to 5 min (300 s = 30 x 10 s)
POLICIES = ("Always", "OnFailure", "Never")

# What keeper.json says of each app container (as `kubectl get pods` words them).
RUNNING = "Running"
BACKOFF = "CrashLoopBackOff"
COMPLETED = "Completed"
ERROR = "Error"
STOPPED = "Stopped"  # `pod stop` ended the keeper and stopped the container: nothing restarts it


# -- the policy and the back-off (pure: unit-tested with an injected clock) ----------------------------------------

SANDBOX_KEY = "POD"  # the infra container's back-off key (app container names are lower case)


def should_restart(policy: str, exit_code: int | None) -> bool:
    """The kubelet's rule for an app container that exited: Always restarts it whatever its code, OnFailure only
    when it failed (an unknown code counts as a failure), Never never."""
    if policy == "Always":
        return True
    if policy == "OnFailure":
        return exit_code != 0
    return False


def backoff_base(environ: dict[str, str] | None = None) -> float:
    """The back-off's first delay in seconds: 10, or $WASMLAB_POD_BACKOFF_BASE (tests and workshops make it short;
    the cap and the reset scale with it)."""
    from wasmlab.runtime.errors import UsageError

    raw = (environ if environ is not None else os.environ).get(BACKOFF_ENV, "")
    if not raw:
        return DEFAULT_BASE
    try:
        base = float(raw)
    except ValueError:
        base = -1.0
    if not 0.01 <= base <= 3600:
        raise UsageError(f"{BACKOFF_ENV}={raw!r} is not a back-off in seconds",
                         f"give a number from 0.01 to 3600 (the kubelet's is {DEFAULT_BASE:g}), or unset it")
    return base


class BackOff:
    """The kubelet's container back-off (client-go flowcontrol.Backoff as kuberuntime's doBackOff uses it).

    After an exit at FINISHED: if the container has no entry, or its entry expired (it finished more than twice the
    cap after its last restart: it ran 10 min fine), it restarts at once; otherwise it waits until FINISHED plus the
    current delay (CrashLoopBackOff). Each restart sets the delay: BASE for a fresh entry, else double the last,
    at most CAP. So a container that keeps failing at once restarts after 0, 10, 20, 40, 80, 160, 300, 300 s."""

    def __init__(self, base: float = DEFAULT_BASE, cap: float | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.base = base
        self.cap = cap if cap is not None else base * CAP_FACTOR
        self.clock = clock
        self._entries: dict[str, tuple[float, float]] = {}  # key -> (delay, last restart)

    def _expired(self, finished: float, last: float) -> bool:
        return finished - last > 2 * self.cap

    def wait_until(self, key: str, finished: float) -> float | None:
        """The time to restart a container that finished at FINISHED, or None for now (IsInBackOffSince)."""
        entry = self._entries.get(key)
        if entry is None or self._expired(finished, entry[1]):
            return None
        delay, _last = entry
        return finished + delay if self.clock() - finished < delay else None

    def restarted(self, key: str, finished: float) -> float:
        """Record a restart (Next); returns the delay a next failure will wait."""
        entry = self._entries.get(key)
        delay = self.base if entry is None or self._expired(finished, entry[1]) else min(entry[0] * 2, self.cap)
        self._entries[key] = (delay, self.clock())
        return delay


# -- the records ------------------------------------------------------------------------------------------------

def read_state(folder: Path) -> dict[str, Any]:
    """keeper.json of a pod folder ({} when the pod has no keeper, or it has not written yet)."""
    try:
        data: dict[str, Any] = json.loads((folder / KEEPER_FILE).read_text())
        return data
    except (OSError, ValueError):
        return {}


def _write_state(folder: Path, state: dict[str, Any]) -> None:
    tmp = folder / f".{KEEPER_FILE}.tmp"
    tmp.write_text(json.dumps(state, indent=1))
    os.replace(tmp, folder / KEEPER_FILE)


def record_stopped(folder: Path) -> None:
    """After `pod stop` ended the keeper (waited for: it writes no more): keeper.json says the pod is stopped, each
    container Stopped with no restart due, and keeps the restart counts (a keeper of `pod start` goes on from
    them)."""
    state = read_state(folder)
    if not state:
        return
    state.update(pid=0, stopped=True, updated=time.time())
    for c in (state.get("containers") or {}).values():
        c["state"], c["next_restart"] = STOPPED, None
    _write_state(folder, state)


# -- starting and ending keepers (from the Lab's process) -------------------------------------------------------

def spawn(home: Path, folder: Path, identity: str, *, base: float, engine: str | None, log_max: int) -> dict[str, int]:
    """Start the keeper of the pod in FOLDER with posix_spawn (never a fork of the caller, which may be threaded),
    in a session of its own, its output in FOLDER/keeper.log; returns its pid and start time for pod.json."""
    from wasmlab.runtime.store.state import proc_start_time

    argv = [sys.executable, "-m", MODULE, "--home", str(home), "--pod", identity, "--base", repr(base),
            "--log-max", str(log_max)]
    if engine:
        argv += ["--engine", engine]
    log = os.open(folder / KEEPER_LOG, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
    try:
        pid = os.posix_spawn(sys.executable, argv, dict(os.environ), setsid=True, file_actions=[
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_DUP2, log, 1), (os.POSIX_SPAWN_DUP2, log, 2)])
    finally:
        os.close(log)
    _spawned.add(pid)
    return {"pid": pid, "start": proc_start_time(pid) or 0}


_spawned: set[int] = set()  # keepers this process started: its children until reaped


def reap_spawned() -> None:
    """Reap the keepers this process started that have ended meanwhile: another process's `pod stop` or `pod rm`
    ended them, and they would stay zombies of this one (a TUI or notebook that played the pod) until it exits."""
    for pid in list(_spawned):
        try:
            done, _status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            done = pid
        if done:
            _spawned.discard(pid)


def end(keeper: dict[str, Any] | None) -> None:
    """SIGTERM the keeper (through a pidfd: a reused pid is never signalled), wait until it is gone (SIGKILL after
    5 s), and reap it when this process started it. Before its containers go: no restart races their removal."""
    from wasmlab.runtime.linux import pidfd

    pid = int((keeper or {}).get("pid") or 0)
    if pid:
        pidfd.end(pid, int((keeper or {}).get("start") or 0) or None, first=signal.SIGTERM)
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass  # another process started it (the host's init reaps it)
        _spawned.discard(pid)
    reap_spawned()


def end_all(home: Path) -> None:
    """`system reset`: end every keeper of this home, found by its command line (as reset finds zygotes)."""
    from wasmlab.runtime.linux import pidfd

    wanted = str(home).encode()
    for proc in os.listdir("/proc"):
        if not proc.isdigit() or int(proc) == os.getpid():
            continue
        try:
            with open(f"/proc/{proc}/cmdline", "rb") as fh:
                cmdline = fh.read().split(b"\0")
        except OSError:
            continue
        if MODULE.encode() in cmdline and wanted in cmdline:
            pidfd.end(int(proc), first=signal.SIGTERM)
            try:
                os.waitpid(int(proc), os.WNOHANG)
            except ChildProcessError:
                pass


# -- the keeper process -----------------------------------------------------------------------------------------

@dataclass
class Watched:
    """One app container the keeper looks after."""

    name: str
    id: str
    fd: int | None = None            # a pidfd on its init while it runs
    restarts: int = 0
    state: str = RUNNING
    exit_code: int | None = None
    finished: float | None = None
    next_restart: float | None = None  # wall clock, while in CrashLoopBackOff


class Keeper:
    def __init__(self, home: Path, namespace: str, name: str, *, base: float, engine: str | None,
                 log_max: int) -> None:
        from wasmlab.runtime.store.home import runtime_root

        self.home = home
        self.folder = home / "pods" / namespace / name  # play.pod_dir, without importing what playing needs
        try:
            self.record: dict[str, Any] = json.loads((self.folder / "pod.json").read_text())
        except (OSError, ValueError):
            raise SystemExit(f"pod keeper: no pod {namespace}/{name} in {home}") from None
        self.identity = f"{namespace}/{name}"
        self.policy = str(self.record.get("restart_policy") or "Always")
        self.backoff = BackOff(base)
        self.engine = engine
        self.log_max = log_max
        self.root = str(runtime_root(home))
        self.runtime: Any = None  # made at the first restart: its zygote then forks the restarted containers
        self.stopping = False
        self.forwarders: dict[str, Any] = {}  # container id -> the -p forwarder this keeper started (reaped here)
        before = read_state(self.folder).get("containers") or {}  # a pod started again: its counts go on
        self.containers = [Watched(c["name"], c["id"], restarts=int((before.get(c["name"]) or {}).get("restarts")
                                                                     or 0))
                           for c in self.record.get("containers") or [] if c.get("role") == "container"]
        self.infra_id = next((str(c["id"]) for c in self.record.get("containers") or [] if c.get("role") == "sandbox"),
                             None)
        # Namespaces pinned under the pod's folder outlive its infra container, which can then be made again.
        self.pinned = (self.folder / "ns" / "net").exists()  # sandbox.PINS, without importing what playing needs
        self.sandbox_restarts = 0

    # The pids come from each container's runtime state; the exit from the record its reaper writes.
    def _open(self, c: Watched) -> None:
        from wasmlab.runtime.linux import pidfd
        from wasmlab.runtime.store.state import StateDir

        try:
            state = StateDir(self.root, c.id).read()
        except Exception:
            c.fd = None
            return
        c.fd = pidfd.open_process(int(state.get("pid") or 0), state.get("pid_start"))

    def _exit_of(self, c: Watched) -> tuple[int | None, float]:
        from wasmlab.runtime.lifecycle import Containers

        rec = Containers(self.root).exit_record(c.id)
        if rec is None:
            return None, time.time()
        return rec.exit_code, float(rec.finished_at or time.time())

    def log(self, text: str) -> None:
        now = time.time()
        print(f"{time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(now))}.{int(now % 1 * 1000):03d}Z {self.identity}: "
              f"{text}", flush=True)

    def write(self) -> None:
        _write_state(self.folder, {
            "pid": os.getpid(), "policy": self.policy, "backoff_base": self.backoff.base,
            "backoff_cap": self.backoff.cap, "updated": time.time(), "sandbox_restarts": self.sandbox_restarts,
            "containers": {c.name: {"id": c.id, "restarts": c.restarts, "state": c.state, "exit_code": c.exit_code,
                                    "finished_at": c.finished, "next_restart": c.next_restart}
                           for c in self.containers}})

    def exited(self, c: Watched) -> None:
        if c.fd is not None:
            os.close(c.fd)
            c.fd = None
        c.exit_code, c.finished = self._exit_of(c)
        if not should_restart(self.policy, c.exit_code):
            c.state = COMPLETED if c.exit_code == 0 else ERROR
            self.log(f"{c.name} exited with {c.exit_code}: restartPolicy {self.policy}, not restarted")
            return
        until = self.backoff.wait_until(c.name, c.finished)
        if until is None:
            self.restart(c)
            return
        c.state, c.next_restart = BACKOFF, until
        self.log(f"{c.name} exited with {c.exit_code}: back-off {until - c.finished:g} s (CrashLoopBackOff)")

    def restart(self, c: Watched, *, new_sandbox: bool = False) -> None:
        """Make C again and start it. NEW_SANDBOX: because its sandbox was made again, not because it failed (no
        back-off is counted against it)."""
        from wasmlab.runtime.errors import WasmlabError

        if not new_sandbox:
            self.backoff.restarted(c.name, c.finished or time.time())
        c.next_restart = None
        try:
            self._recreate(c.id)
        except WasmlabError as exc:
            c.state = ERROR
            self.log(f"{c.name}: cannot restart it: {exc.message}")
            return
        c.restarts += 1
        c.state = RUNNING
        self._open(c)
        self.log(f"{c.name} restarted ({c.restarts})")
        if c.fd is None:  # it ended before the keeper could open it (a quick exit): that exit counts as any other
            self.exited(c)

    def _recreate(self, cid: str) -> None:
        """The container again from its bundle, with the same id, its log continuing, and an empty writable layer:
        as the kubelet makes a new container from the same spec, it starts from the image alone (what the last
        one wrote outside its volumes is gone; `podman restart`, `wasmlab start` keep it)."""
        from wasmlab.runtime.errors import WasmlabError
        from wasmlab.runtime.images.unpack import fresh_writable_layer
        from wasmlab.runtime.lifecycle import Runtime

        if self.runtime is None:
            self.runtime = Runtime(root=self.root, default_engine=self.engine, home=str(self.home))
        folder = self.home / "containers" / cid
        try:
            self.runtime.delete(cid, force=True)
        except WasmlabError:
            pass
        if not fresh_writable_layer(folder / "bundle"):
            self.log(f"{cid}: its root is a copy (overlayfs not allowed here): it keeps what it wrote")
        null = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        try:
            self.runtime.create(cid, str(folder / "bundle"), stdin=null, stdout=null, stderr=null,
                                log=str(folder), log_max=self.log_max)
        finally:
            os.close(null)
        self._publish(cid, folder)
        self.runtime.start(cid)

    def _publish(self, cid: str, folder: Path) -> None:
        """A container with hostPorts gets its forwarder again (the last one ended with its process), as the Lab
        starts it: after create, before start; meta.json names the new one, so `pod rm` ends it."""
        from wasmlab.runtime.linux import pidfd, portforward
        from wasmlab.runtime.store.state import proc_start_time

        try:
            meta = json.loads((folder / "meta.json").read_text())
        except (OSError, ValueError):
            return
        if not meta.get("ports"):
            return
        old = meta.get("forwarder") or {}
        if old.get("pid"):  # its ports must be free first (it ends with its process: waited for, not signalled)
            pidfd.end(int(old["pid"]), int(old.get("start") or 0) or None, first=None, then=signal.SIGTERM)
        previous = self.forwarders.pop(cid, None)
        if previous is not None:
            previous.wait()
        proc, ready_r = portforward.spawn(int(self.runtime.state(cid).get("pid") or 0),
                                          [portforward.shown(p) for p in meta["ports"]])
        self.forwarders[cid] = proc
        said = portforward.answer(ready_r)
        meta["forwarder"] = {"pid": proc.pid, "start": proc_start_time(proc.pid) or 0}
        tmp = folder / ".meta.json.keeper"
        tmp.write_text(json.dumps(meta))
        os.replace(tmp, folder / "meta.json")
        if said != "ok":
            self.log(f"{cid}: cannot publish its ports again: {said or 'the forwarder ended'}")

    def run(self) -> int:
        from wasmlab.runtime.linux import pidfd

        wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(wake_w)

        def stop(_signum: int, _frame: object) -> None:
            self.stopping = True

        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, stop)
        for c in self.containers:
            self._open(c)
        infra = pidfd.open_process(int(self.record.get("infra_pid") or 0))
        if infra is None:  # it died before this keeper looked (started just after the play)
            infra = self.sandbox_ended(wake_r)
            if infra is None:
                return 0
        self.log(f"keeping {', '.join(c.name for c in self.containers)} (restartPolicy {self.policy}, back-off "
                 f"{self.backoff.base:g} s doubling to {self.backoff.cap:g} s)")
        try:
            for c in self.containers:
                if c.fd is None:
                    self.exited(c)  # it ended before the keeper looked
            self.write()
            while not self.stopping:
                poller = select.poll()
                poller.register(wake_r, select.POLLIN)
                poller.register(infra, select.POLLIN)
                for c in self.containers:
                    if c.fd is not None:
                        poller.register(c.fd, select.POLLIN)
                deadlines = [c.next_restart for c in self.containers if c.next_restart is not None]
                if not deadlines and all(c.fd is None for c in self.containers):
                    self.log("no container left to restart: the keeper ends")
                    break
                timeout = None if not deadlines else max(0, int((min(deadlines) - time.time()) * 1000) + 1)
                ready = {fd for fd, _ in poller.poll(timeout)}
                if wake_r in ready:
                    try:
                        os.read(wake_r, 64)
                    except BlockingIOError:
                        pass
                if self.stopping:
                    break
                if infra in ready:
                    ended, infra = infra, None
                    os.close(ended)
                    infra = self.sandbox_ended(wake_r)
                    if infra is None:
                        break
                    self.write()
                    continue
                changed = False
                for c in self.containers:
                    if c.fd is not None and c.fd in ready:
                        self.exited(c)
                        changed = True
                now = time.time()
                for c in self.containers:
                    if c.next_restart is not None and c.next_restart <= now and not self.stopping:
                        self.restart(c)
                        changed = True
                if changed and not self.stopping:
                    self.write()
        except FileNotFoundError:
            self.log("the pod's folder is gone: the keeper ends")
        finally:
            for c in self.containers:
                if c.fd is not None:
                    os.close(c.fd)
            if infra is not None:
                os.close(infra)
            if self.runtime is not None:
                self.runtime.close()
        self.log("stopped")
        return 0

    def sandbox_ended(self, wake: int) -> int | None:
        """The infra container ended. As the kubelet does when a pod's sandbox dies: make it again, then start
        every running container again in it (each restart counted). Possible only when the pod's namespaces are
        pinned (they outlive it); with shareProcessNamespace its namespaces went with it. Returns a pidfd on the
        new infra container, or None when the keeper must end. WAKE is readable once a stop signal came."""
        from wasmlab.runtime.errors import WasmlabError
        from wasmlab.runtime.linux import pidfd

        if not self.pinned or self.infra_id is None:
            self.log("the infra container ended, and the pod's namespaces with it (shareProcessNamespace: it was "
                     "their pid 1): nothing can restart in them; `wasmlab kube play` the pod again")
            return None
        finished = time.time()
        until = self.backoff.wait_until(SANDBOX_KEY, finished)
        if until is not None:  # a sandbox that keeps dying waits its back-off, as a container does
            self.log(f"the infra container ended again: back-off {until - finished:g} s")
            while not self.stopping and time.time() < until:
                select.select([wake], [], [], max(0.0, until - time.time()))
            if self.stopping:
                return None
        self.backoff.restarted(SANDBOX_KEY, finished)
        self.log("the infra container ended: making it again in the pod's pinned namespaces, then restarting its "
                 "containers, as the kubelet does when a sandbox dies")
        try:
            self._recreate(self.infra_id)
            pid = int(self.runtime.state(self.infra_id).get("pid") or 0)
        except WasmlabError as exc:
            self.log(f"cannot make the infra container again: {exc.message}")
            return None
        self.sandbox_restarts += 1
        self._record_infra(pid)
        for c in self.containers:
            if c.fd is None:
                continue  # waiting for its back-off, or done: it starts in the new sandbox when its turn comes
            os.close(c.fd)  # the delete that makes it again kills it first
            c.fd = None
            self.restart(c, new_sandbox=True)
        return pidfd.open_process(pid)

    def _record_infra(self, pid: int) -> None:
        """pod.json names the new infra container's pid (inspect and inspect-ns read the sandbox through it)."""
        record = json.loads((self.folder / "pod.json").read_text())
        record["infra_pid"] = pid
        tmp = self.folder / ".pod.json.keeper"
        tmp.write_text(json.dumps(record))
        os.replace(tmp, self.folder / "pod.json")
        self.record = record


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog=f"python -m {MODULE}", description=__doc__)
    parser.add_argument("--home", required=True)
    parser.add_argument("--pod", required=True, metavar="NAMESPACE/NAME")
    parser.add_argument("--base", type=float, default=DEFAULT_BASE)
    parser.add_argument("--engine")
    parser.add_argument("--log-max", type=int, default=0)
    args = parser.parse_args(argv)
    namespace, _, name = args.pod.partition("/")
    return Keeper(Path(args.home), namespace, name, base=args.base, engine=args.engine, log_max=args.log_max).run()


if __name__ == "__main__":
    sys.exit(main())
