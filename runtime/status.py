"""A container's status as one enum (creating, created, running, paused, stopped) and what each allows."""

from __future__ import annotations

from enum import StrEnum


class ContainerStatus(StrEnum):
    """The runtime-spec statuses plus paused, as youki's ContainerStatus. A str: JSON and `== "running"` work."""

    CREATING = "creating"
    CREATED = "created"
    RUNNING = "running"
    PAUSED = "paused"
    STOPPED = "stopped"

    @classmethod
    def parse(cls, value: str) -> ContainerStatus:
        """The status a state file or the runtime reports; anything unknown (such as "exited") is stopped."""
        try:
            return cls(value)
        except ValueError:
            return cls.STOPPED

    @property
    def alive(self) -> bool:
        """Has a process (or is about to have one): it can still produce output and exit."""
        return self in (ContainerStatus.CREATING, ContainerStatus.CREATED, ContainerStatus.RUNNING,
                        ContainerStatus.PAUSED)

    def can_start(self) -> bool:
        return self is ContainerStatus.CREATED

    def can_kill(self) -> bool:
        return self in (ContainerStatus.CREATED, ContainerStatus.RUNNING, ContainerStatus.PAUSED)

    def can_pause(self) -> bool:
        return self is ContainerStatus.RUNNING

    def can_resume(self) -> bool:
        return self is ContainerStatus.PAUSED

    def can_exec(self) -> bool:
        return self is ContainerStatus.RUNNING

    def can_delete(self) -> bool:
        """Without force: a stopped container, or one that never ran."""
        return self in (ContainerStatus.STOPPED, ContainerStatus.CREATED, ContainerStatus.CREATING)
