"""OCI hooks: run each hook program with the container state on stdin, honouring its timeout."""

from __future__ import annotations

import json
import os
import subprocess
from typing import Any

from wasmlab.runtime.errors import SetupError


def run_hooks(kind: str, hooks: list[dict[str, Any]], state: dict[str, Any], *, strict: bool = True) -> None:
    """Run the hooks of one kind in order. A failing hook raises SetupError unless strict is False."""
    payload = json.dumps(state).encode()
    for i, hook in enumerate(hooks):
        args = list(hook.get("args") or [hook["path"]])
        env = dict(e.split("=", 1) for e in hook.get("env") or [])
        try:
            res = subprocess.run(args, executable=hook["path"], input=payload, env=env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                 timeout=hook.get("timeout") or None, close_fds=True)
        except subprocess.TimeoutExpired:
            err = f"{kind} hook {i} ({hook['path']}) timed out after {hook.get('timeout')} s"
        except OSError as exc:
            err = f"{kind} hook {i} ({hook['path']}) cannot run: {exc.strerror}"
        else:
            if res.returncode == 0:
                continue
            detail = res.stderr.decode(errors="replace").strip().splitlines()
            err = f"{kind} hook {i} ({hook['path']}) exited {res.returncode}" + (f": {detail[-1]}" if detail else "")
        if strict:
            raise SetupError(err, "fix or remove the hook in config.json")
        os.write(2, f"wasmlab: {err}\n".encode())
