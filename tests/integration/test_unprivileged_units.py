"""The unit tests of the container side's pure parts pass as an unprivileged user too (run here as nobody)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.conftest import ROOT, need, need_root, package_links

# The venv's interpreter lives under /root, which other users cannot enter: Debian's python3 (the same 3.11)
# runs the tests from the checkout, through the build/mypy package links `make lint` creates, with the venv's
# site-packages for pytest and hypothesis.
SITE = ROOT / ".venv" / "lib" / "python3.11" / "site-packages"
UNITS = ["test_container_plan.py", "test_container_status.py", "test_signals_and_wait_status.py",
         "test_zygote_protocol.py", "test_history_store.py"]
LAUNCHER = ("import sys; sys.path[:0] = [{pkg!r}, {site!r}, {root!r}]; import pytest; "
            "sys.exit(pytest.main(sys.argv[1:]))")


@pytest.mark.root
def test_the_pure_unit_tests_pass_as_nobody() -> None:
    need_root()
    need(Path("/usr/bin/python3").exists(), "Debian's python3 is needed to run the tests as another user")
    pkg = package_links()
    work = Path(tempfile.mkdtemp(prefix="wasmlab-units-"))
    try:
        work.chmod(0o777)
        code = LAUNCHER.format(pkg=str(pkg), site=str(SITE), root=str(ROOT))
        cmd = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--reset-env",
               "/usr/bin/python3", "-c", code, "-q", "-p", "no:cacheprovider", "--rootdir", str(ROOT),
               "-c", os.devnull, "--basetemp", str(work / "tmp"), *(str(ROOT / "tests" / "unit" / f) for f in UNITS)]
        r = subprocess.run(cmd, cwd=work, capture_output=True, text=True, timeout=240,
                           env={"PATH": "/usr/bin:/bin", "HOME": str(work)})
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
        summary = r.stdout.strip().splitlines()[-1]
        assert re.match(r"\d{2,} passed in", summary), summary  # all of them ran: nothing skipped or deselected
    finally:
        shutil.rmtree(work, ignore_errors=True)
