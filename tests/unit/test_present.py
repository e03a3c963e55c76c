"""The faces' shared presentation (lab/present.py) and the CLI's progress line: a bar on a terminal, quiet in a pipe."""

from __future__ import annotations

import io
import os
import select
import sys
import time
from datetime import UTC, datetime

import pytest
from wasmlab.lab import present
from wasmlab.lab.cli.common import ProgressLine
from wasmlab.runtime import Progress


def test_sizes_plurals_and_progress_lines() -> None:
    assert (present.size(512), present.size(1500), present.size(27_300_000)) == ("512 B", "1.5 kB", "27.3 MB")
    assert (present.plural(1, "image"), present.plural(2, "image")) == ("1 image", "2 images")
    assert present.progress_line(Progress("pull", "blob sha256:ab", 500, 1000, "bytes"), width=10) == (
        "[#####.....] 500 B/1 kB blob sha256:ab")
    assert present.progress_line(Progress("build", "STEP 2/4: RUN make", 2, 4, "steps"), width=4) == (
        "[##..] 2/4 STEP 2/4: RUN make")
    assert present.progress_line(Progress("load", "copying blob sha256:ab")) == "copying blob sha256:ab"


def test_ages_and_counts_say_one_without_an_s() -> None:
    now = time.time()
    assert [present.ago(now - secs) for secs in (1, 61, 3601, 86401, 2 * 86401)] == [
        "1 second ago", "1 minute ago", "1 hour ago", "1 day ago", "2 days ago"]
    assert [present.ago(now - secs, short=True) for secs in (0, 61, 7300)] == ["0s ago", "1m ago", "2h ago"]
    assert present.ago(datetime.fromtimestamp(now - 120, UTC).isoformat()) == "2 minutes ago"
    assert (present.plural(1, "container"), present.plural(0, "container")) == ("1 container", "0 containers")


def test_progress_line_draws_on_a_terminal_only(monkeypatch: pytest.MonkeyPatch) -> None:
    pipe = io.StringIO()
    monkeypatch.setattr(sys, "stderr", pipe)
    line = ProgressLine("push")
    line(Progress("push", "blob sha256:ab", 1, 2, "bytes"))
    line(Progress("build", "output of RUN", output="said-by-run"))
    line.close()
    assert pipe.getvalue() == "said-by-run\n"  # a RUN's own output is always shown, progress never in a pipe

    main, other = os.openpty()
    with os.fdopen(other, "w") as tty:
        monkeypatch.setattr(sys, "stderr", tty)
        line = ProgressLine("push")
        line(Progress("push", "blob sha256:ab", 1, 2, "bytes"))
        line.close()
    # A pty hands over what was written in pieces (the line, then its newline): read until the newline.
    raw = b""
    while not raw.endswith(b"\n") and select.select([main], [], [], 5)[0]:
        raw += os.read(main, 4096)
    drawn = raw.decode().replace("\r\n", "\n")
    os.close(main)
    assert "push: [" in drawn and "blob sha256:ab" in drawn and drawn.endswith("\n")


def test_memory_is_shown_in_the_bench_unit_family_and_fits_eight_cells() -> None:
    """History said 76.4 MB for memgrow 64 where the bench and docs say MiB: memory is powers of 1024 everywhere."""
    mib = 1 << 20
    assert present.memory(int(76.4 * mib)) == "76.4 MiB"
    assert present.memory(256 * mib) == "256 MiB" and present.memory(596 * 1024) == "596 KiB"
    assert present.memory(12 * 1024) == "12.0 KiB" and present.memory(512) == "512 B"
    assert present.memory(3 * 1024 * mib) == "3.0 GiB" and present.memory(None) == "-"
    assert all(len(present.memory(n)) <= 8 for n in (1023, 1023 * 1024, 1023 * mib, 99.96 * mib))
