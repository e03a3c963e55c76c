"""The container process's credentials and limits: capabilities, rlimits, user and groups, no_new_privs, sysctl."""

from __future__ import annotations

import os
import resource
from dataclasses import dataclass
from typing import Any

from wasmlab.runtime.errors import SetupError, SpecError
from wasmlab.runtime.linux import syscalls as sc

CAPABILITIES = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT",
    "CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
    "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG",
    "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
)
CAP_NUMBERS = {name: i for i, name in enumerate(CAPABILITIES)}


def _last_cap() -> int:
    try:
        with open("/proc/sys/kernel/cap_last_cap") as fh:
            return int(fh.read())
    except OSError:
        return len(CAPABILITIES) - 1


LAST_CAP = _last_cap()

RLIMITS = {name: getattr(resource, name) for name in dir(resource) if name.startswith("RLIMIT_")}


@dataclass(frozen=True)
class Credentials:
    """Everything about the process's identity and limits, decided before fork."""

    uid: int
    gid: int
    groups: tuple[int, ...]
    umask: int | None
    bounding: int
    effective: int
    permitted: int
    inheritable: int
    ambient: tuple[int, ...]
    rlimits: tuple[tuple[int, int, int], ...]
    no_new_privs: bool
    oom_score_adj: int | None
    caps_given: bool
    bounding_drops: tuple[int, ...] = ()   # decided before fork: the child only calls prctl


def _mask(names: list[str], path: str) -> int:
    mask = 0
    for i, name in enumerate(names):
        num = CAP_NUMBERS.get(name)
        if num is None:
            raise SpecError(f"{path}[{i}]", f"unknown capability {name!r}", "see capabilities(7) for the names")
        if num <= LAST_CAP:
            mask |= 1 << num
    return mask


def plan_credentials(process: dict[str, Any]) -> Credentials:
    user = process.get("user") or {}
    caps = process.get("capabilities")
    sets = {k: _mask(list((caps or {}).get(k) or []), f"$.process.capabilities.{k}")
            for k in ("bounding", "effective", "permitted", "inheritable")}
    ambient = tuple(CAP_NUMBERS[c] for c in (caps or {}).get("ambient") or [] if CAP_NUMBERS.get(c, 99) <= LAST_CAP)
    rlimits = []
    for i, rl in enumerate(process.get("rlimits") or []):
        num = RLIMITS.get(rl["type"])
        if num is None:
            raise SpecError(f"$.process.rlimits[{i}].type", f"unknown rlimit {rl['type']!r}", "see getrlimit(2)")
        rlimits.append((num, _rlim_t(int(rl["soft"])), _rlim_t(int(rl["hard"]))))
    return Credentials(
        uid=int(user.get("uid", 0)), gid=int(user.get("gid", 0)),
        groups=tuple(int(g) for g in user.get("additionalGids") or []),
        umask=int(user["umask"]) & 0o777 if user.get("umask") is not None else None,
        bounding=sets["bounding"], effective=sets["effective"], permitted=sets["permitted"],
        inheritable=sets["inheritable"], ambient=ambient, rlimits=tuple(rlimits),
        no_new_privs=bool(process.get("noNewPrivileges")),
        oom_score_adj=process.get("oomScoreAdj"),
        caps_given=caps is not None,
        bounding_drops=tuple(cap for cap in range(LAST_CAP + 1) if not sets["bounding"] & (1 << cap)),
    )


def _rlim_t(value: int) -> int:
    """A limit as Python's resource module passes it to the kernel: it takes a signed 64-bit number, so the
    values from 2**63 up (RLIM_INFINITY is 2**64-1) go as their two's complement, which is the same rlim_t."""
    return value - 2**64 if value >= 2**63 else value


def apply_rlimits(creds: Credentials) -> None:
    for num, soft, hard in creds.rlimits:
        try:
            resource.setrlimit(num, (soft, hard))
        except (ValueError, OSError) as exc:
            soft, hard = soft % 2**64, hard % 2**64      # as the config said them
            name = next((k for k, v in RLIMITS.items() if v == num), str(num))
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise SetupError(f"cannot set {name} to soft {soft}, hard {hard}: {reason}",
                             "keep soft <= hard, and hard within the runtime's own hard limit (see `ulimit -H`)"
                             ) from None


def apply_oom_score(creds: Credentials) -> None:
    if creds.oom_score_adj is not None:
        with open("/proc/self/oom_score_adj", "w") as fh:
            fh.write(str(creds.oom_score_adj))


def apply_identity(creds: Credentials, *, setgroups_allowed: bool) -> None:
    """Drop the bounding set, switch user and group, then set the capability sets."""
    if creds.caps_given:
        drop = sc.raw_prctl
        for cap in creds.bounding_drops:
            drop(sc.PR_CAPBSET_DROP, cap, 0, 0, 0)  # errors ignored: a cap already gone stays gone
    # Keep capabilities across the uid change; set them explicitly afterwards.
    sc.prctl(8, 1)  # PR_SET_KEEPCAPS
    if setgroups_allowed:
        os.setgroups(list(creds.groups))
    os.setresgid(creds.gid, creds.gid, creds.gid)
    os.setresuid(creds.uid, creds.uid, creds.uid)
    if creds.umask is not None:
        os.umask(creds.umask)
    if creds.caps_given:
        sc.capset(creds.effective, creds.permitted, creds.inheritable)
        sc.prctl(sc.PR_CAP_AMBIENT, sc.PR_CAP_AMBIENT_CLEAR_ALL)
        for cap in creds.ambient:
            try:
                sc.prctl(sc.PR_CAP_AMBIENT, sc.PR_CAP_AMBIENT_RAISE, cap)
            except OSError:
                pass
    if creds.no_new_privs:
        sc.prctl(sc.PR_SET_NO_NEW_PRIVS, 1)


def apply_sysctl(sysctl: dict[str, str]) -> None:
    for key, value in sysctl.items():
        path = "/proc/sys/" + key.replace(".", "/")
        with open(path, "w") as fh:
            fh.write(value)
