"""`wasmlab` in a real terminal: tmux runs it at 80x24, keys go in with send-keys, and the screen is read back
with capture-pane (each wait polls the pane until the text shows, with a deadline)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from wasmlab.runtime import Lab

from tests.conftest import busybox, need, need_root

WASMLAB = Path(sys.executable).with_name("wasmlab")


def tmux(*args: str) -> str:
    return subprocess.run(["tmux", *args], check=True, capture_output=True, text=True, timeout=10).stdout


def screen_shows(session: str, text: str, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    pane = ""
    while time.monotonic() < deadline:
        pane = tmux("capture-pane", "-p", "-t", session)
        if text in pane:
            return pane
        time.sleep(0.1)
    raise AssertionError(f"the screen never showed {text!r}; it shows:\n{pane}")


def start_wasmlab(home: Path) -> str:
    """`wasmlab` on HOME in a new detached 80x24 tmux session; the session's name."""
    session = f"wasmlab-{uuid.uuid4().hex[:8]}"
    env = f"WASMLAB_HOME={home} TERM=xterm-256color"
    tmux("new-session", "-d", "-s", session, "-x", "80", "-y", "24", f"env {env} {WASMLAB}; sleep 60")
    return session


def test_wasmlab_in_tmux(tmp_path: Path) -> None:
    need(shutil.which("tmux") is not None, "tmux is not installed (scripts/setup.sh installs it)")
    home = tmp_path / "home"
    session = start_wasmlab(home)
    try:
        # First start on an empty lab: the offer to build the samples.
        screen_shows(session, "Build samples (y)")
        tmux("send-keys", "-t", session, "y")
        screen_shows(session, "localhost/wasmlab/hello:compat")
        # The footer is redrawn for the table once it takes the focus, just after the list shows: wait for it.
        pane = screen_shows(session, "q Quit")
        assert "1 Images" in pane and "6 History" in pane
        assert "? Help" in pane and "q Quit" in pane  # the footer fits 80 columns
        tmux("send-keys", "-t", session, "3")
        screen_shows(session, "press p to play a preset")
        tmux("send-keys", "-t", session, "?")
        screen_shows(session, "this help")
        tmux("send-keys", "-t", session, "Escape")
        screen_shows(session, "1 Images")
        tmux("send-keys", "-t", session, ":")
        screen_shows(session, ":pods :images")
        tmux("send-keys", "-t", session, "history", "Enter")
        screen_shows(session, "no runs yet")
        tmux("send-keys", "-t", session, "q")
        deadline = time.monotonic() + 30
        while "wasmlab —" in tmux("capture-pane", "-p", "-t", session) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "wasmlab —" not in tmux("capture-pane", "-p", "-t", session), "q did not quit"
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True, timeout=10)
    assert os.path.isdir(home / "images") or any(home.iterdir())


def test_shell_key_opens_sh_in_the_linux_container(tmp_path: Path) -> None:
    """`s` on a running Linux container: the TUI steps aside and `exec -it sh` in that container has the
    terminal (it sees the container's processes and root); `exit` brings the screen back, told the exit code."""
    need_root()
    need(shutil.which("tmux") is not None, "tmux is not installed (scripts/setup.sh installs it)")
    home = tmp_path / "home"
    ctx = tmp_path / "bb"
    (ctx / "bin").mkdir(parents=True)
    shutil.copy2(busybox(), ctx / "bin" / "busybox")
    (ctx / "Containerfile").write_text('FROM scratch\nCOPY bin/ /bin/\nRUN ["/bin/busybox", "--install", "-s", '
                                       '"/bin"]\nRUN echo in-the-container > /marker\nCMD ["/bin/sh"]\n')
    with Lab(home) as lab:
        lab.build(ctx, tag="localhost/bb:latest")
        lab.run("localhost/bb:latest", ["/bin/sleep", "300"], name="box", detach=True)
    session = start_wasmlab(home)
    try:
        screen_shows(session, "localhost/bb:latest")
        tmux("send-keys", "-t", session, "2")
        screen_shows(session, "running")
        tmux("send-keys", "-t", session, "s")
        screen_shows(session, "/ #")  # the TUI is suspended: the shell's prompt has the terminal
        assert "1 Images" not in tmux("capture-pane", "-p", "-t", session)
        tmux("send-keys", "-t", session, "echo seen-$(cat /marker) pid1=$(cat /proc/1/cmdline | tr '\\0' ' ')",
             "Enter")
        screen_shows(session, "seen-in-the-container pid1=/bin/sleep 300")
        tmux("send-keys", "-t", session, "exit 3", "Enter")
        pane = screen_shows(session, "exited with code 3")  # back in the TUI, with the shell's exit code
        assert "2 Containers" in pane
        tmux("send-keys", "-t", session, "q")
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True, timeout=10)
        with Lab(home) as lab:
            for c in lab.ps(all=True):
                lab.rm(c.id, force=True)


if __name__ == "__main__":
    pytest.main([__file__])
