"""A played pod's verbs after `kube play` (podman's pod stop, start, restart, kill, exists, prune): each ends or
starts the pod's keeper around its work, so that a stopped pod stays stopped, and holds the pod's lock meanwhile."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from wasmlab.runtime.errors import (
    InvalidState,
    PodNotFound,
    PodNotRunning,
    PrivilegeError,
    StoreError,
    WasmlabError,
)
from wasmlab.runtime.pods import keeper, sandbox
from wasmlab.runtime.pods.play import (
    KeeperSettings,
    PodHost,
    PodInfo,
    info_of,
    load_record,
    pod_dir,
    remove_pod_held,
    write_record,
)
from wasmlab.runtime.progress import ProgressCallback
from wasmlab.runtime.store.atomic import Lock

LOCK = ".pod.lock"  # in the pod's folder: the verbs that change a pod take it (removed with the folder)
ALIVE = ("running", "created", "paused")
INFRA_STOP_TIMEOUT = 5.0  # pause leaves at once on SIGTERM; SIGKILL after this, whatever -t said for the apps
STOPPED = "stopped"  # pod.json's key: true once `pod stop` stopped it (until `pod start`)


class PodControlHost(PodHost, Protocol):
    """What the pod verbs need from the Lab besides what playing needs."""

    def pod_start_again(self, cid: str) -> int: ...  # the container started again (same root, log); its pid
    def pod_signal(self, cid: str, signum: int) -> bool: ...  # False when it had ended


def refuse_rootless(verb: str) -> None:
    """Pods need root here (doctor's rootless line): refused in one line before anything is read or changed."""
    if os.geteuid() != 0:
        raise PrivilegeError(f"{verb} needs root: wasmlab's pods are refused rootless (bringing a pod's loopback "
                             "up joins its network namespace, which needs root here)",
                             "run it as root; rootless, `wasmlab run` runs single containers "
                             "(`wasmlab doctor` lists what works rootless)")


@contextmanager
def held(home: Path, namespace: str, name: str) -> Iterator[dict[str, Any]]:
    """The pod's lock, then its record (read once the lock is held: a pod removed meanwhile is not found)."""
    folder = pod_dir(home, namespace, name)
    load_record(home, namespace, name)  # PodNotFound in one line, before any lock file is made
    lock = Lock(folder / LOCK)
    try:
        lock.acquire()
    except StoreError:
        load_record(home, namespace, name)  # removed between the two: not found
        raise
    try:
        yield load_record(home, namespace, name)
    finally:
        lock.release()


def pinned(home: Path, namespace: str, name: str) -> bool:
    """Whether the pod's namespaces outlive its infra container (pinned under its folder; not with
    shareProcessNamespace or the sandbox-rule-off scenario, whose infra container holds them)."""
    return (pod_dir(home, namespace, name) / sandbox.PINS / "net").exists()


def exists(home: Path, namespace: str, name: str) -> bool:
    try:
        load_record(home, namespace, name)
    except PodNotFound:
        return False
    return True


def _apps(info: PodInfo) -> list[Any]:
    return [c for c in info.containers if c.role == "container"]


def _infra(info: PodInfo) -> Any:
    return next((c for c in info.containers if c.role == "sandbox"), None)


def _end_keeper(folder: Path, record: dict[str, Any]) -> None:
    """End the pod's keeper (waited for: no restart can follow) and say so in pod.json and keeper.json."""
    keeper.end(record.get("keeper"))
    if record.pop("keeper", None) is not None:
        write_record(folder, record)
    keeper.record_stopped(folder)


def stop(host: PodControlHost, home: Path, namespace: str, name: str, *, timeout: float = 10.0,
         progress: ProgressCallback | None = None) -> PodInfo:
    """`podman pod stop`: its keeper first (so nothing restarts what is stopped), then its app containers
    (SIGTERM, SIGKILL after TIMEOUT s, one wait for all of them), then its infra container when the pod's
    namespaces are pinned (they outlive it; `pod start` makes it again). With shareProcessNamespace the infra
    container is the pod's pid 1 and holds its namespaces: it stays up, so the pod can start again."""
    with held(home, namespace, name) as record:
        folder = pod_dir(home, namespace, name)
        _end_keeper(folder, record)
        info = info_of(host, home, record)
        host.pod_stop_containers([c.id for c in _apps(info)], timeout, progress)
        infra = _infra(info)
        if infra is not None and pinned(home, namespace, name):  # pause ends on SIGTERM: not worth a word
            host.pod_stop_containers([infra.id], INFRA_STOP_TIMEOUT, None)
            record["infra_pid"] = 0
        record[STOPPED] = True
        write_record(folder, record)
        return info_of(host, home, record)


def start(host: PodControlHost, home: Path, namespace: str, name: str, *,
          keeping: KeeperSettings | None = None) -> PodInfo:
    """`podman pod start`: its infra container again if it stopped (in the pod's pinned namespaces), then each app
    container that is not running (the same container: its root keeps what it wrote, its log goes on), then a
    keeper again for restartPolicy Always/OnFailure. Init containers are not run again. A running pod is left as
    it is. If a container cannot start, those started here are stopped again and the pod stays stopped."""
    with held(home, namespace, name) as record:
        folder = pod_dir(home, namespace, name)
        info = info_of(host, home, record)
        keeper_alive = info.keeper_pid != 0
        apps = _apps(info)
        if not record.get(STOPPED) and all(c.status in ALIVE for c in apps) and (
                keeper_alive or record.get("restart_policy") == "Never" or not apps):
            return info
        was_stopped = bool(record.get(STOPPED))
        _end_keeper(folder, record)  # no restart of its own may race these starts (a fresh one follows)
        started: list[str] = []
        try:
            infra = _infra(info)
            if infra is not None and infra.status not in ALIVE:
                if not pinned(home, namespace, name):
                    raise InvalidState(f"pod {info.identity} has lost its sandbox: its infra container ended, and "
                                       "its namespaces with it (shareProcessNamespace: it was their pid 1)",
                                       f"`wasmlab pod rm -f {info.identity}`, then `wasmlab kube play` it again")
                record["infra_pid"] = host.pod_start_again(infra.id)
                started.append(infra.id)
            for c in apps:
                if c.status not in ALIVE:
                    host.pod_start_again(c.id)
                    started.append(c.id)
        except BaseException:
            try:
                host.pod_stop_containers(list(reversed(started)), 0, None)
            except WasmlabError:
                pass
            if not was_stopped:  # as it was: kept (a stopped pod stays stopped)
                _keep(home, folder, info.identity, record, keeping)
            raise
        record.pop(STOPPED, None)
        write_record(folder, record)
        _keep(home, folder, info.identity, record, keeping)
        return info_of(host, home, record)


def _keep(home: Path, folder: Path, identity: str, record: dict[str, Any], keeping: KeeperSettings | None) -> None:
    """A keeper for the pod again (restartPolicy Always or OnFailure, and app containers to keep)."""
    if record.get("restart_policy") == "Never" or not any(c.get("role") == "container"
                                                          for c in record.get("containers") or []):
        return
    keeping = keeping or KeeperSettings()
    record["keeper"] = keeper.spawn(home, folder, identity, base=keeping.backoff_base,
                                    engine=keeping.default_engine, log_max=keeping.log_max)
    write_record(folder, record)


def kill(host: PodControlHost, home: Path, namespace: str, name: str, signum: int = signal.SIGKILL) -> PodInfo:
    """`podman pod kill`: SIGNUM to each running app container of the pod (not its infra container: the sandbox
    is no workload). Its keeper stays: a container that dies of it is restarted per restartPolicy, as one that
    died by itself (podman applies the restart policy after a kill too)."""
    with held(home, namespace, name) as record:
        info = info_of(host, home, record)
        running = [c for c in _apps(info) if c.status in ("running", "paused")]
        if record.get(STOPPED) or not running:
            raise PodNotRunning(f"pod {info.identity} has no running container to signal",
                               f"`wasmlab pod start {info.identity}` starts it")
        sent = [c for c in running if host.pod_signal(c.id, signum)]
        if not sent:
            raise PodNotRunning(f"pod {info.identity}'s containers ended before the signal reached them",
                               "`wasmlab pod ps` shows them")
        return info


def prunable(info: PodInfo) -> bool:
    """Every app container stopped, and nothing will restart one: no keeper is alive (a stopped pod's keeper was
    ended; under Never there is none; under OnFailure it ends once all completed). The infra container, the
    sandbox, is no workload: a pod whose containers all completed is pruned though it still holds namespaces."""
    return info.keeper_pid == 0 and not any(c.status in ALIVE for c in _apps(info))


def prune(host: PodControlHost, home: Path, records: list[dict[str, Any]],
          on_removed: Callable[[PodInfo], None] | None = None) -> list[PodInfo]:
    """`podman pod prune`: remove every pod whose containers are all stopped (see prunable), each under its lock
    and checked again there (a pod started meanwhile stays)."""
    removed = []
    for seen in records:
        ns, pod = seen["namespace"], seen["name"]
        if not prunable(info_of(host, home, seen)):
            continue
        try:
            with held(home, ns, pod) as record:
                if not prunable(info_of(host, home, record)):
                    continue
                gone = remove_pod_held(host, home, record, force=True)
        except PodNotFound:
            continue  # removed by someone else meanwhile
        removed.append(gone)
        if on_removed is not None:
            on_removed(gone)
    return removed
