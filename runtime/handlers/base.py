"""The Handler protocol and the context a handler gets inside the sandbox."""

from __future__ import annotations

import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

# Exit statuses a Wasm container reports when the guest does not exit by itself (docs/handlers.md).
EXIT_INVALID_MODULE = 121  # not a valid module: truncated, corrupt, or an unsupported version
EXIT_BAD_WAT = 122         # .wat text that does not parse
EXIT_BAD_MODULE = 123      # the module imports functions the host does not provide
EXIT_NO_START = 124        # no _start export: a library, not a WASI command
EXIT_NOT_EXECUTABLE = 126  # the entrypoint cannot be invoked: a directory, or no execute permission (podman's 126)
EXIT_NO_ENTRYPOINT = 127   # the entrypoint does not exist
EXIT_TRAP = 134            # the guest trapped (like SIGABRT): the message is on stderr
EXIT_MEMORY_LIMIT = 135    # the module needs more linear memory than linux.resources.memory.limit
EXIT_KILLED = 137          # SIGKILL, or the memory cgroup killed it
EXIT_TERMINATED = 143      # SIGTERM interrupted the guest
EXIT_CPU_LIMIT = 152       # wasmlab.io/cpu-time-ms ran out (like SIGXCPU)
# How a stop signal ends a container's init before its workload runs, and a Wasm guest while it runs:
# a shell's 128 + signal, and EXIT_CPU_LIMIT for the CPU-time timer.
STOP_STATUS: dict[int, int] = {signal.SIGTERM: EXIT_TERMINATED, signal.SIGINT: 128 + signal.SIGINT,
                               signal.SIGHUP: 128 + signal.SIGHUP, signal.SIGVTALRM: EXIT_CPU_LIMIT}


@dataclass(frozen=True)
class Preopen:
    """A directory of the container that the guest sees under ``guest`` (inside the sandbox, after pivot_root)."""

    path: str
    guest: str
    readonly: bool


@dataclass
class Workload:
    """Everything a handler needs to run the entrypoint, as seen from inside the container.

    Stdio is the process's own fds 0, 1 and 2, which are the container's.
    """

    path: str                    # the resolved entrypoint, inside the container
    args: list[str]              # the full process.args (argv[0] included)
    env: list[str]               # process.env only, KEY=VALUE
    cwd: str
    head: bytes                  # the first bytes of the entrypoint (for detection)
    preopens: list[Preopen] = field(default_factory=list)
    memory_limit: int | None = None     # bytes, from linux.resources.memory.limit
    cpu_time_ms: int | None = None      # from the wasmlab.io/cpu-time-ms annotation
    annotations: dict[str, str] = field(default_factory=dict)
    report: Callable[[str, Any], None] = lambda key, value: None  # timings and cache facts, to the runtime
    cache_dir_fd: int | None = None     # the compiled-module cache, opened before pivot_root


@runtime_checkable
class Handler(Protocol):
    """A way to run a workload inside the sandbox. Like crun's custom handlers and youki's executors."""

    name: str
    aliases: tuple[str, ...]
    wasm: bool

    def available(self) -> str | None:
        """None when usable here, or a one-line reason why not."""

    def version(self) -> str:
        """The engine's version, for the cache key and `features`."""

    def prepare(self) -> None:
        """Import and warm the engine; called once in the long-lived process, before any fork."""

    def can_handle(self, workload: Workload) -> bool:
        """Whether this handler recognises the entrypoint."""

    def run(self, workload: Workload) -> int:
        """Run inside the sandbox and return the exit status (native handlers never return)."""
