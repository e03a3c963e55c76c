"""The container log's size cap holds after every write, however much one write brings (store/ctrlog.py)."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from wasmlab.runtime.store import ctrlog

CAP = 16 * 1024


def size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:  # between a rotation's two renames
        return 0


def generations(folder: Path, names: tuple[str, str] = ("ctr.log", "ctr.log.1")) -> list[int]:
    """The two files' sizes, read one after the other (in that order)."""
    return [size(folder / name) for name in names]


def test_one_write_bigger_than_half_the_cap_still_keeps_each_generation_under_half(tmp_path: Path) -> None:
    # What the zygote reads from a fast writer's pipe in one go under load: 8 KiB of short lines, about 30 KiB
    # as records, more than the whole cap. Before: it landed whole in the new ctr.log (ctr.log.1 + it > cap).
    writer = ctrlog.LogWriter(tmp_path, CAP)
    n = 0
    try:
        for _ in range(6):
            chunk = b"".join(b"tick %d\n" % i for i in range(n, n + 1000))
            n += 1000
            writer.write(b"stdout", chunk)
            sizes = generations(tmp_path)
            assert max(sizes) <= CAP // 2 and sum(sizes) <= CAP, sizes
    finally:
        writer.close()
    entries, _ = ctrlog.read(tmp_path)
    got = [int(e.data.split()[1]) for e in entries]
    assert got == list(range(got[0], n)) and got[0] > 0  # the newest kept, no hole


def test_a_line_longer_than_half_the_cap_goes_as_pieces_and_reads_back_whole(tmp_path: Path) -> None:
    writer = ctrlog.LogWriter(tmp_path, CAP)
    long_line = os.urandom(5000).hex().encode() + b"\n"  # 10 KB: more than a generation (8 KiB) holds
    try:
        writer.write(b"stdout", b"before\n")
        writer.write(b"stdout", long_line)
        writer.write(b"stderr", b"after\n")
        assert max(generations(tmp_path)) <= CAP // 2
    finally:
        writer.close()
    entries, _ = ctrlog.read(tmp_path)
    assert [e.data for e in ctrlog.lines(entries)][-2:] == [long_line, b"after\n"]
    assert all(len(e.data) < CAP // 2 for e in entries)


def test_a_reader_never_sees_the_two_generations_over_the_cap(tmp_path: Path) -> None:
    # A writer thread and a reader that stats the two files in both orders: with the cap held per write and
    # each generation at most half of it, no order of reads can add up to more than the cap.
    writer = ctrlog.LogWriter(tmp_path, CAP)
    stop = threading.Event()
    over: list[list[int]] = []

    def look() -> None:
        while not stop.is_set():
            for names in (("ctr.log", "ctr.log.1"), ("ctr.log.1", "ctr.log")):
                sizes = generations(tmp_path, names)
                if sum(sizes) > CAP:
                    over.append(sizes)

    reader = threading.Thread(target=look)
    reader.start()
    try:
        for i in range(200):
            writer.write(b"stdout", b"".join(b"tick %d\n" % j for j in range(i * 300, i * 300 + 300)))
    finally:
        stop.set()
        reader.join()
        writer.close()
    assert not over, over[:3]
