"""A real browser on the notebooks: JupyterLab served on 127.0.0.1, Debian's headless chromium driven by Playwright
opens notebook 02, runs it, clicks the ImageBuilder's Build button, and sees the image's digest appear."""

from __future__ import annotations

import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT, need, need_root

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


@pytest.fixture
def jupyterlab(tmp_path: Path) -> Iterator[str]:
    """JupyterLab on 127.0.0.1 serving a copy of the notebooks (a browser run saves into the files it opens),
    with a fresh lab home and its own config, settings and runtime folders; yields the URL with the token."""
    need_root()
    need(os.path.exists(CHROMIUM), "Debian's chromium (apt-get install chromium)")
    served = tmp_path / "notebooks"
    shutil.copytree(ROOT / "notebooks", served, ignore=shutil.ignore_patterns("instructor", "*.py"))
    home = tmp_path / "home"
    home.mkdir()
    config = tmp_path / "jupyter-config"
    (config / "labconfig").mkdir(parents=True)
    # No news or update checks (no network here, and no pop-ups over the notebook).
    (config / "labconfig" / "page_config.json").write_text(json.dumps(
        {"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}}))
    env = {**os.environ, "WASMLAB_HOME": str(home), "JUPYTER_CONFIG_DIR": str(config),
           "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"), "PYTHONUNBUFFERED": "1"}
    argv = [str(Path(sys.executable).with_name("jupyter")), "lab", "--ip", "127.0.0.1", "--port", "0",
            "--no-browser", "--allow-root", f"--ServerApp.root_dir={served}",
            f"--LabApp.user_settings_dir={tmp_path / 'settings'}", f"--LabApp.workspaces_dir={tmp_path / 'ws'}",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    server = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, start_new_session=True)
    assert server.stderr is not None
    try:
        url = _served_url(server, timeout=90)
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        server.stderr.close()


def _served_url(server: subprocess.Popen[bytes], timeout: float) -> str:
    """The URL JupyterLab prints once it listens (a handshake on its log, not a wait)."""
    assert server.stderr is not None
    fd = server.stderr.fileno()
    seen = b""
    deadline = time.monotonic() + timeout
    while True:
        match = re.search(rb"(http://127\.0\.0\.1:(\d+))/lab[^?\s]*\?token=([0-9a-f]+)", seen)
        if match:
            _accepting(int(match.group(2)), deadline)
            return f"{match.group(1).decode()}/lab?token={match.group(3).decode()}"
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise AssertionError(f"JupyterLab did not start within {timeout} s:\n{seen.decode(errors='replace')}")
        chunk = os.read(fd, 65536)
        if not chunk:
            raise AssertionError(f"JupyterLab exited:\n{seen.decode(errors='replace')}")
        seen += chunk


def _accepting(port: int, deadline: float) -> None:
    """Return once 127.0.0.1:PORT accepts a connection: with --port 0 JupyterLab prints its URL a moment before
    it listens there."""
    import socket

    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise AssertionError(f"nothing listens on 127.0.0.1:{port}") from None
            time.sleep(0.05)


def test_notebook_02_in_a_real_browser_builds_the_image_and_shows_its_digest(jupyterlab: str,
                                                                              tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    base, token = jupyterlab.split("/lab?token=")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"{base}/lab/tree/02-build-compat-image.ipynb?token={token}")
            notebook = page.locator(".jp-NotebookPanel")
            expect(notebook).to_be_visible(timeout=60_000)
            expect(page.get_by_text(re.compile(r"Python 3.*\| Idle"))).to_be_visible(timeout=60_000)
            dialog = page.locator(".jp-Dialog")
            if dialog.count():  # a kernel chooser, should this JupyterLab ask: take the notebook's own kernel
                dialog.get_by_role("button", name="Select", exact=False).last.click()
            page.get_by_role("menuitem", name="Run", exact=True).click()
            page.get_by_role("menuitem", name=re.compile(r"^Run All Cells")).click()
            build = page.locator(".jupyter-widgets button", has_text="Build")
            expect(build).to_be_visible(timeout=120_000)
            result = page.locator(".jupyter-widgets.widget-html", has_text="digest")
            expect(result).to_have_count(0)  # nothing shown before the click
            build.click()
            expect(result).to_contain_text(re.compile(r"sha256:[0-9a-f]{64}"), timeout=120_000)
            page.screenshot(path=str(tmp_path / "notebook-02.png"))
            shown = re.search(r"sha256:[0-9a-f]{64}", result.inner_text())
        finally:
            browser.close()
    assert shown is not None
    from wasmlab.runtime import Lab

    home = tmp_path / "home"
    with Lab(home) as lab:
        assert lab.image_inspect("mywasm-image").summary.digest == shown.group(0), "the digest of the built image"


def test_make_notebooks_serves_jupyterlab_on_loopback_with_a_token(tmp_path: Path) -> None:
    """What the README promises: `make notebooks` starts JupyterLab on 127.0.0.1 (as root), prints the URL with
    its token, and the server answers there, refusing a request without the token."""
    import urllib.error
    import urllib.request

    need_root()
    home = tmp_path / "home"
    home.mkdir()
    env = {**os.environ, "WASMLAB_HOME": str(home), "JUPYTER_CONFIG_DIR": str(tmp_path / "config"),
           "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"), "PYTHONUNBUFFERED": "1"}
    server = subprocess.Popen(["make", "-s", "notebooks", "NOTEBOOK_PORT=0"], cwd=ROOT, env=env,
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              start_new_session=True)
    try:
        url = _served_url(server, timeout=120)
        base, token = url.split("/lab?token=")
        with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=30) as answer:
            assert answer.status == 200
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{base}/api/contents", timeout=30)
        assert refused.value.code == 403
        with urllib.request.urlopen(f"{base}/api/contents/00-index.ipynb?token={token}&content=0",
                                    timeout=30) as answer:
            assert json.loads(answer.read())["name"] == "00-index.ipynb", "the notebooks folder is served"
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        assert server.stderr is not None
        server.stderr.close()
