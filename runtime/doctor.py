"""wasmlab doctor: what this machine lets the lab do (privileges, user namespaces, cgroups, handlers, tools)."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import fields
from pathlib import Path
from typing import Any


def user_namespaces() -> tuple[bool, str]:
    """Whether an unprivileged user namespace can be made here, and why not."""
    try:
        with open("/proc/sys/user/max_user_namespaces") as fh:
            if int(fh.read()) == 0:
                return False, "user.max_user_namespaces is 0: sysctl -w user.max_user_namespaces=15000"
    except OSError:
        pass
    try:
        with open("/proc/sys/kernel/unprivileged_userns_clone") as fh:
            if fh.read().strip() == "0":
                return False, "kernel.unprivileged_userns_clone is 0: sysctl -w kernel.unprivileged_userns_clone=1"
    except OSError:
        pass
    try:
        res = subprocess.run(["unshare", "-U", "-r", "true"], capture_output=True, timeout=10)
        if res.returncode != 0:
            return False, res.stderr.decode(errors="replace").strip() or "unshare -U failed"
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, str(exc)
    return True, "ok"


def terminal() -> str:
    """Whether run -t and exec -t can work here: a container's pty comes from its own devpts (root and rootless
    alike: a user namespace may mount one), and the user's side needs only the console socket."""
    try:
        master, slave = os.openpty()
    except OSError as exc:
        return f"no (cannot open a pty: {exc.strerror})"
    os.close(master)
    os.close(slave)
    return "yes, as root and rootless (run -it, exec -it; not with run -d)"


def _home() -> str:
    """The lab home, or why it is refused: the doctor reports a bad WASMLAB_HOME instead of failing on it."""
    from wasmlab.runtime.errors import WasmlabError
    from wasmlab.runtime.store.home import lab_home

    try:
        return str(lab_home())
    except WasmlabError as exc:
        return f"refused: {exc.one_line()}"


def diagnose() -> dict[str, Any]:
    from wasmlab.runtime.handlers import registry
    from wasmlab.runtime.linux import cgroups, seccomp

    lay = cgroups.layout()
    userns_ok, userns_why = user_namespaces()
    handlers = [f"{h['name']}: {'available ' + str(h['version']) if h['available'] else h['reason']}"
                for h in registry.describe()]
    tools = [f"{t}: {'yes' if shutil.which(t) or os.path.exists('/usr/sbin/' + t) else 'no'}"
             for t in ("podman", "buildah", "skopeo", "umoci", "runc", "crun", "containerd", "ctr")]
    return {
        "mode": "root" if os.geteuid() == 0 else "rootless",
        "user namespaces": "yes" if userns_ok else f"no ({userns_why})",
        "cgroups": lay.mode,
        "cgroup controllers": ", ".join(lay.controllers) or "none",
        "seccomp": "libseccomp found" if seccomp.library() is not None else "libseccomp missing",
        "lab home": _home(),
        "container roots": _roots(),
        "terminal (-t, -i)": terminal(),
        "handlers": handlers,
        "tools": tools,
        "run flags rootless": rootless_flags(),
        "rootless": rootless_support(),
    }


def _roots() -> str:
    """How `wasmlab run` makes a container's root here, and why."""
    import tempfile

    from wasmlab.runtime.errors import WasmlabError
    from wasmlab.runtime.linux.overlay import root_mode
    from wasmlab.runtime.store.home import lab_home

    try:
        probe = lab_home() / "snapshots"
    except WasmlabError:
        probe = Path(tempfile.gettempdir()) / "wasmlab-overlay-probe"
    try:
        mode, why = root_mode(probe)
    except WasmlabError as exc:
        return f"refused: {exc.one_line()}"
    return f"{mode} ({why})"


def rootless_flags() -> list[str]:
    """Which of `wasmlab run`'s flags work rootless, and why the others are refused."""
    from wasmlab.runtime.options import NOT_YET, ROOTLESS_REFUSED, RunOptions

    out = []
    for f in fields(RunOptions):
        if f.name in NOT_YET:
            continue
        why = ROOTLESS_REFUSED.get(f.name)
        if f.name == "user":
            out.append(f"user: only 0 (root) works: {why}")
        else:
            out.append(f"{f.name}: refused: {why}" if why else f"{f.name}: works")
    return out


def rootless_support() -> list[str]:
    """podman's flags and verbs as they fare without root: works, or refused in one line (and why)."""
    return [
        "-p/--publish: refused (the forwarder joins the container's network namespace; rootless needs a "
        "user-namespace dialer, not implemented)",
        "logs --tail/--since/-t/-f and the log size cap: work (files in the lab home)",
        "ps --format, -q on ps/images/run/rm/rmi/pull/build: work",
        "system df: works; system reset: works on the user's own lab home",
        "build with RUN steps: works (each RUN in a user namespace mapping your user to root); a RUN after a "
        "USER line other than root is refused (only your own user is mapped)",
        "another user's lab home (root's at a workshop): refused in one line; each user keeps their own",
        "the containerd demonstration (notebook 04, Lab.containerd_demo): refused in one line (containerd's CRI "
        "runs pods as root)",
        "kube play (pods, and so their restarts by the pod keeper): refused in one line (bringing the pod's "
        "loopback up joins its network namespace, which needs root here); as root each pod with restartPolicy "
        "Always/OnFailure gets a pod keeper; pod exists/stop/start/restart/kill/prune: refused in the same line",
    ]
