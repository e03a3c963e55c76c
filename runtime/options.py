"""What `podman run` flags ask of a container, as one typed value every face fills in and the Lab applies."""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from wasmlab.runtime.errors import UsageError


@dataclass
class RunOptions:
    """podman run's options beyond image, command, name, --rm, -d, -e, --annotation and --engine.

    Strings are as the user typed them (the Lab parses and checks them, so every face gets the same errors).
    """

    volumes: list[str] = field(default_factory=list)     # -v HOST:CTR[:ro]
    mounts: list[str] = field(default_factory=list)      # --mount type=bind|tmpfs,...
    memory: str | None = None                            # -m 32m
    cpus: float | None = None                            # --cpus 0.5
    workdir: str | None = None                           # -w /data
    env_files: list[str] = field(default_factory=list)   # --env-file FILE
    user: str | None = None                              # -u UID[:GID]
    read_only: bool = False                              # --read-only
    hostname: str | None = None                          # --hostname
    network: str | None = None                           # --network none|host
    platform: str | None = None                          # --platform OS/ARCH (wasi/wasm runs as Wasm)
    pull: str | None = None                              # --pull never|missing|always
    init: bool = False                                   # --init (native containers)
    tty: bool = False                                    # -t
    interactive: bool = False                            # -i
    publish: list[str] = field(default_factory=list)     # -p [IP:]HOST:CTR
    tls_verify: bool = True                              # --tls-verify=false: --pull from a registry without TLS

    def given(self) -> list[str]:
        """The options set to something other than their default."""
        default = RunOptions()
        return [f.name for f in fields(self) if getattr(self, f.name) != getattr(default, f.name)]


# Options the Lab does not apply yet; each is refused in one line rather than silently ignored.
NOT_YET: set[str] = {f.name for f in fields(RunOptions)} - {
    "volumes", "mounts", "memory", "cpus", "workdir", "env_files", "user", "read_only", "hostname", "network",
    "platform", "pull", "init", "tls_verify",
    "tty", "interactive", "publish"}  # the terminal: Lab.run gives a pty over the console socket

# What rootless wasmlab refuses, and why (`wasmlab doctor` lists it); options not named here work rootless.
ROOTLESS_REFUSED: dict[str, str] = {
    "memory": "limits need a cgroup, and rootless wasmlab has no delegated one",
    "cpus": "limits need a cgroup, and rootless wasmlab has no delegated one",
    "user": "only your own user is mapped into the container, as root (UID 0)",
}


def refuse_unsupported(options: RunOptions) -> None:
    missing = [name for name in options.given() if name in NOT_YET]
    if missing:
        flags = ", ".join(missing)
        raise UsageError(f"this wasmlab does not support {flags} yet", "run without it")
