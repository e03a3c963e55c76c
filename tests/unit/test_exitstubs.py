"""The native stop-signal stubs: each signal ends the process at once with its status."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest
from wasmlab.runtime.handlers.base import STOP_STATUS
from wasmlab.runtime.linux import exitstubs

PROGRAM = """
import os, signal, sys, time
from wasmlab.runtime.handlers.base import STOP_STATUS
from wasmlab.runtime.linux import exitstubs
made = exitstubs.stubs(STOP_STATUS)
assert made is not None
made.install()
made.install()  # a second install in the same process is a no-op
sys.stdout.write("armed\\n"); sys.stdout.flush()
os.kill(os.getpid(), int(sys.argv[1]))
time.sleep(5)
sys.exit(99)  # never reached when the stub works
"""


@pytest.mark.skipif(not exitstubs.supported(), reason="the stubs are x86-64 code; elsewhere the thread fallback runs")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGVTALRM])
def test_each_stop_signal_exits_with_its_status(sig: signal.Signals) -> None:
    r = subprocess.run([sys.executable, "-c", PROGRAM, str(int(sig))], capture_output=True, text=True, timeout=20)
    assert r.stdout == "armed\n", r.stderr
    assert r.returncode == STOP_STATUS[sig] == {signal.SIGVTALRM: 152}.get(sig, 128 + sig)

