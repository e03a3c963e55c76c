"""Seccomp filters from the runtime-spec, compiled and loaded through libseccomp when it is present."""

from __future__ import annotations

import ctypes
import errno
from typing import Any

from wasmlab.runtime.errors import SetupError

SCMP_ACT_KILL_PROCESS = 0x80000000
SCMP_ACT_KILL = 0x00000000
SCMP_ACT_TRAP = 0x00030000
SCMP_ACT_LOG = 0x7FFC0000
SCMP_ACT_ALLOW = 0x7FFF0000


def _errno(n: int) -> int:
    return 0x00050000 | (n & 0xFFFF)


def _trace(n: int) -> int:
    return 0x7FF00000 | (n & 0xFFFF)


_OPS = {"SCMP_CMP_NE": 1, "SCMP_CMP_LT": 2, "SCMP_CMP_LE": 3, "SCMP_CMP_EQ": 4, "SCMP_CMP_GE": 5,
        "SCMP_CMP_GT": 6, "SCMP_CMP_MASKED_EQ": 7}
_ARCHES = {"SCMP_ARCH_X86_64": 0xC000003E, "SCMP_ARCH_X86": 0x40000003, "SCMP_ARCH_X32": 0x4000003E,
           "SCMP_ARCH_AARCH64": 0xC00000B7}


class _Arg(ctypes.Structure):
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int), ("datum_a", ctypes.c_uint64),
                ("datum_b", ctypes.c_uint64)]


_lib: Any = None


def _load(soname: str, short: str) -> Any:
    """The library by its soname; ctypes.util's search (which imports tempfile, shutil and the archivers
    into the process that forks containers) only when that fails."""
    try:
        return ctypes.CDLL(soname, use_errno=True)
    except OSError:
        pass
    from ctypes.util import find_library

    found = find_library(short)
    if not found:
        return None
    try:
        return ctypes.CDLL(found, use_errno=True)
    except OSError:
        return None


def library() -> Any:
    """libseccomp, or None when it is not installed."""
    global _lib
    if _lib is None:
        _lib = _load("libseccomp.so.2", "seccomp") or False
        if _lib:
            _lib.seccomp_init.restype = ctypes.c_void_p
            _lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    return _lib or None


def _action(name: str, errno_ret: int | None, default_errno: int) -> int:
    if name == "SCMP_ACT_ALLOW":
        return SCMP_ACT_ALLOW
    if name == "SCMP_ACT_ERRNO":
        return _errno(errno_ret if errno_ret is not None else default_errno)
    if name == "SCMP_ACT_KILL" or name == "SCMP_ACT_KILL_THREAD":
        return SCMP_ACT_KILL
    if name == "SCMP_ACT_KILL_PROCESS":
        return SCMP_ACT_KILL_PROCESS
    if name == "SCMP_ACT_TRAP":
        return SCMP_ACT_TRAP
    if name == "SCMP_ACT_LOG":
        return SCMP_ACT_LOG
    if name == "SCMP_ACT_TRACE":
        return _trace(errno_ret or 0)
    raise SetupError(f"seccomp: unknown action {name!r}", "use an SCMP_ACT_* action from the runtime-spec")


SCMP_FLTATR_CTL_NNP = 3


def apply(cfg: dict[str, Any], *, no_new_privs: bool = True) -> None:
    """Load the filter into the calling process.

    libseccomp sets no_new_privs by default. When the spec does not ask for it, the filter is loaded
    while the process still has CAP_SYS_ADMIN, with that attribute off (as runc does).
    """
    lib = library()
    if lib is None:
        raise SetupError("seccomp is configured but libseccomp is not installed",
                         "apt-get install libseccomp2, or drop linux.seccomp")
    default_errno = int(cfg.get("defaultErrnoRet", errno.EPERM))
    ctx = lib.seccomp_init(ctypes.c_uint32(_action(cfg["defaultAction"], default_errno, default_errno)))
    if not ctx:
        raise SetupError("seccomp: cannot create a filter", "check linux.seccomp.defaultAction")
    ctx = ctypes.c_void_p(ctx)
    try:
        if not no_new_privs:
            lib.seccomp_attr_set(ctx, ctypes.c_int(SCMP_FLTATR_CTL_NNP), ctypes.c_uint32(0))
        for arch in cfg.get("architectures") or []:
            token = _ARCHES.get(arch)
            if token is not None:
                lib.seccomp_arch_add(ctx, ctypes.c_uint32(token))
        for rule in cfg.get("syscalls") or []:
            action = _action(rule["action"], rule.get("errnoRet"), default_errno)
            args = rule.get("args") or []
            arr = (_Arg * max(1, len(args)))()
            for i, a in enumerate(args):
                arr[i] = _Arg(a["index"], _OPS.get(a["op"], 4), a["value"], a.get("valueTwo", 0))
            for name in rule["names"]:
                nr = lib.seccomp_syscall_resolve_name(name.encode())
                if nr < 0:
                    continue  # unknown on this architecture, as runc does
                rc = lib.seccomp_rule_add_array(ctx, ctypes.c_uint32(action), ctypes.c_int(nr),
                                                ctypes.c_uint(len(args)), arr)
                if rc < 0 and rc != -errno.EEXIST and rc != -errno.EACCES:
                    raise SetupError(f"seccomp: cannot add a rule for {name}: {errno.errorcode.get(-rc, rc)}",
                                     "check linux.seccomp.syscalls")
        rc = lib.seccomp_load(ctx)
        if rc < 0:
            raise SetupError(f"seccomp: cannot load the filter: {errno.errorcode.get(-rc, rc)}", "check linux.seccomp")
    finally:
        lib.seccomp_release(ctx)
