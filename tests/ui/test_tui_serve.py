"""`wasmlab serve` end to end: the page and its websocket refuse a request without the token, and in Debian's
headless chromium (driven by Playwright with executablePath) the TUI answers a key: `y` on the first-start offer
builds the samples into the lab home."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from tests.conftest import need

WASMLAB = Path(sys.executable).with_name("wasmlab")
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def test_serve_in_headless_chromium(tmp_path: Path) -> None:
    need(os.path.exists(CHROMIUM), "Debian's chromium is not installed (scripts/setup.sh installs it)")
    from playwright.sync_api import sync_playwright
    from wasmlab.runtime import Lab

    home = tmp_path / "home"
    port = free_port()
    env = {**os.environ, "WASMLAB_HOME": str(home)}
    server = subprocess.Popen([str(WASMLAB), "serve", "--port", str(port)], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert server.stdout is not None
        line = server.stdout.readline()  # the handshake: the address is printed before the server listens
        assert line.startswith("wasmlab serve: open http://127.0.0.1:"), line
        url = line.split("open ", 1)[1].strip()
        base = url.split("?", 1)[0]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        assert status(base) == 403 and status(base + "ws") == 403 and status(base + "?token=wrong") == 403

        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            try:
                page = browser.new_page(viewport={"width": 1200, "height": 800})
                page.goto(url)
                page.wait_for_selector("canvas, .xterm, #terminal", timeout=30000)
                deadline = time.monotonic() + 60
                found: list[str] = []
                while time.monotonic() < deadline and "localhost/wasmlab/hello:compat" not in found:
                    page.mouse.click(600, 60)  # the terminal takes the keys once it has the focus
                    page.keyboard.press("y")  # the offer to build the samples, once the TUI is up
                    page.wait_for_timeout(500)
                    if (home / "images").exists() or home.exists():
                        with Lab(home) as lab:
                            found = [i.name or "" for i in lab.images()]
                assert "localhost/wasmlab/hello:compat" in found
            finally:
                browser.close()
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        shutil.rmtree(home, ignore_errors=True)
