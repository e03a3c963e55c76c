"""A bad WASMLAB_HOME is one line: a relative home is made absolute (and said), kernel and non-folder homes refused."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest
from wasmlab.runtime.errors import HomeError, UsageError
from wasmlab.runtime.images.service import Images
from wasmlab.runtime.service import Lab
from wasmlab.runtime.store.home import checked_home, lab_home

from tests.conftest import ROOT, hello_wasm, need_root

WASMLAB = str(ROOT / ".venv" / "bin" / "wasmlab")


def wl(home: str, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, WASMLAB_HOME=home)
    return subprocess.run([WASMLAB, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL)


def digest(path: str) -> tuple[str, float]:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest(), os.stat(path).st_mtime


def bad_homes(tmp_path: Path) -> dict[str, tuple[str, str]]:
    """Name -> (home, what the one line must say)."""
    to_proc = tmp_path / "to-proc"
    to_proc.symlink_to("/proc/self")
    dangling = tmp_path / "dangling"
    dangling.symlink_to(tmp_path / "missing")
    return {
        "file": ("/etc/passwd", "/etc/passwd exists and is not a folder"),
        "inside-file": ("/etc/passwd/lab", "is inside /etc/passwd, which is not a folder"),
        "proc": ("/proc/wasmlab", "is under /proc"),
        "proc-through-cwd": ("/proc/self/cwd/lab", "is under /proc"),
        "sys": ("/sys/fs/wasmlab", "is under /sys"),
        "symlink-to-proc": (str(to_proc / "lab"), "is under /proc"),
        "dangling-symlink": (str(dangling), "is a symbolic link to nothing"),
    }


BAD = ("file", "inside-file", "proc", "proc-through-cwd", "sys", "symlink-to-proc", "dangling-symlink")


@pytest.mark.parametrize("name", BAD)
def test_bad_home_is_a_typed_one_line_error_for_every_entry_point(name: str, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    home, says = bad_homes(tmp_path)[name]
    monkeypatch.setenv("WASMLAB_HOME", home)
    for call in (lab_home, Lab, Images, lambda: Lab(home), lambda: Images(home)):
        with pytest.raises(HomeError, match=r"WASMLAB_HOME|lab home") as info:
            call()
        assert says in info.value.message
        assert isinstance(info.value, UsageError) and info.value.exit_code == 2
        assert "\n" not in info.value.one_line() and "WASMLAB_HOME" in info.value.hint


@pytest.mark.parametrize("verb", [["run", "--rm", "hello"], ["history"], ["images"], ["ps", "-a"]])
@pytest.mark.parametrize("name", ["file", "proc", "sys"])
def test_cli_refuses_a_bad_home_in_one_line(name: str, verb: list[str], tmp_path: Path) -> None:
    home, says = bad_homes(tmp_path)[name]
    before = digest("/etc/passwd")
    r = wl(home, *verb, cwd=tmp_path)
    assert r.returncode == 125, r.stderr
    assert "Traceback" not in r.stderr
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and says in lines[0], r.stderr
    assert "hint: " in lines[0]
    assert digest("/etc/passwd") == before
    assert not Path("/proc/wasmlab").exists() and not Path("/sys/fs/wasmlab").exists()


def test_doctor_reports_a_bad_home_instead_of_failing(tmp_path: Path) -> None:
    r = wl("/etc/passwd", "doctor", "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["lab home"].startswith("refused: WASMLAB_HOME /etc/passwd exists and is not a folder")


def test_relative_home_is_made_absolute_and_said_once_per_command(tmp_path: Path) -> None:
    need_root()  # `run` starts a real container
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "hello.wasm").write_bytes(hello_wasm())
    (ctx / "Containerfile").write_text('FROM scratch\nCOPY hello.wasm /hello.wasm\nCMD ["/hello.wasm"]\n')
    work = tmp_path / "work"
    work.mkdir()
    note = f"wasmlab: WASMLAB_HOME is relative; using {work / 'labhome'}"
    r = wl("labhome", "build", "-q", "--annotation", "module.wasm.image/variant=compat", "-t", "hello", str(ctx),
           cwd=work)
    assert r.returncode == 0, r.stderr
    assert r.stderr.splitlines() == [note]
    r = wl("labhome", "run", "--rm", "hello", cwd=work)
    assert (r.returncode, r.stdout) == (0, "hello from wasm\n"), r.stderr
    assert r.stderr.splitlines() == [note]
    r = wl("labhome", "history", "--json", cwd=work)
    assert r.returncode == 0 and r.stderr.splitlines() == [note]
    assert [h["exit_code"] for h in json.loads(r.stdout)] == [0]  # the run was recorded in the same home
    # Everything landed in the one absolute home, from the CLI and from the zygote alike.
    assert sorted(p.name for p in work.iterdir()) == ["labhome"]
    assert (work / "labhome" / "images").is_dir() and (work / "labhome" / "history.db").is_file()
    assert not (ctx / "labhome").exists() and not (ROOT / "labhome").exists()


def test_api_takes_a_relative_home_as_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert checked_home("rel") == tmp_path / "rel"
    with Lab("rel") as lab:
        assert lab.home == tmp_path / "rel" and lab.home.is_absolute()
    monkeypatch.setenv("WASMLAB_HOME", "rel2")
    assert lab_home() == tmp_path / "rel2"
